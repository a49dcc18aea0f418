import { signIn, signOut, $, showError, takeEndedReason } from './api.js';

const reason = takeEndedReason();
if (reason) { $('#signin-reason').textContent = reason; $('#signin-reason').hidden = false; }

$('#signin-form').onsubmit = async (e) => {
  e.preventDefault();
  const err = $('#signin-error');
  try {
    const user = await signIn($('#username').value.trim().toLowerCase(), $('#password').value);
    if (user.role !== 'admin' && user.role !== 'moderator') {
      await signOut();
      return showError(err, new Error('This account is not a moderator or an admin. Players use the lobby at /.'));
    }
    location.replace('/admin');
  } catch (x) { showError(err, x, 'signin'); }
};
