import { signIn, signOut, $, showError } from './api.js';

$('#signin-form').onsubmit = async (e) => {
  e.preventDefault();
  const err = $('#signin-error');
  try {
    const user = await signIn($('#username').value.trim().toLowerCase(), $('#password').value);
    if (user.role !== 'admin') {
      await signOut();
      return showError(err, new Error('This account is not an admin. Players use the lobby at /.'));
    }
    location.replace('/admin');
  } catch (x) { showError(err, x); }
};
