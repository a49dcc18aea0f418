// The REST API from a page: the session cookie authenticates (sent by the
// browser, unreadable to script) and every state-changing request carries
// the session's CSRF token. A 401 on an API call means the session ended
// (signed out elsewhere, expired, banned): the page's onSessionEnd hook
// takes the visitor back to sign-in with the reason.

let csrf = '';
let ended = null;

export class APIError extends Error {
  // until and reason: a ban's end (absent: for good) and why.
  constructor(status, code, message, until, reason) { super(message); this.status = status; this.code = code; this.until = until; this.reason = reason; }
}

// onSessionEnd sets what happens when an API call finds the session gone.
export function onSessionEnd(fn) { ended = fn; }

export async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  const res = await fetch('/api/v1' + path, {
    method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const e = (data && data.error) || {};
    const err = new APIError(res.status, e.code || 'http_' + res.status, e.message || res.statusText, e.until, e.reason);
    if (res.status === 401 && ended && !path.startsWith('/auth/')) ended(SESSION_ENDED);
    throw err;
  }
  return data;
}

export const SESSION_ENDED = 'Your session ended: you signed out in another tab, it expired, or an admin ended it. Sign in again to continue.';
const REASON_KEY = 'roomnet.signin.reason';

// endSession remembers why for the sign-in form and goes there.
export function endSession(reason, to) {
  try { sessionStorage.setItem(REASON_KEY, reason); } catch (e) { /* private mode: no reason shown */ }
  location.replace(to);
}

// takeEndedReason returns (once) why the last session ended, or ''.
export function takeEndedReason() {
  try {
    const r = sessionStorage.getItem(REASON_KEY) || '';
    sessionStorage.removeItem(REASON_KEY);
    return r;
  } catch (e) { return ''; }
}

// session returns the signed-in user or null.
export async function session() {
  try {
    const s = await call('GET', '/auth/session');
    csrf = s.csrf_token;
    return s.user;
  } catch (e) {
    if (e.status === 401) return null;
    throw e;
  }
}

export async function signIn(username, password) {
  const s = await call('POST', '/auth/session', { username, password });
  csrf = s.csrf_token;
  return s.user;
}

export async function signOut() {
  await call('DELETE', '/auth/session');
  csrf = '';
}

export const register = (username, password) => call('POST', '/auth/register', { username, password });

// el builds an element: el('td', {class: 'x', onclick: f}, 'text', child…).
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

export const $ = (sel, root = document) => root.querySelector(sel);

export function fmtTime(ms) {
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

const READABLE = {
  wrong_password: 'Wrong room password.',
  kicked: 'The host removed you from this room; you cannot rejoin it.',
  room_full: 'This room is full.',
  room_closed: 'This room has closed.',
  already_member: 'You are already in this room.',
  not_member: 'You are not in this room.',
  username_taken: 'That username is taken; pick another.',
  too_many_rooms: 'You are in too many rooms; leave one first.',
  signup_disabled: 'Creating accounts is turned off on this server.',
  rate_limited: 'Too many tries; wait a moment and try again.',
  csrf_failed: 'This page is out of date; reload it and try again.',
  unavailable: 'The server is busy; try again in a moment.',
  body_too_large: 'That is too long.',
};

// readable turns an API error into a sentence for a person; context
// 'signin' words the account errors for a sign-in form.
export function readable(err, context = '') {
  if (!(err instanceof APIError)) return err.message || String(err);
  if (err.code === 'banned') return bannedText(err.until, err.reason);
  if (context === 'signin') {
    if (err.code === 'unauthorized') return 'Wrong username or password.';
    if (err.code === 'forbidden') return 'This account is banned.';
  }
  if (READABLE[err.code]) return READABLE[err.code];
  if (err.code === 'unauthorized') return 'You are not signed in.';
  if (err.code === 'not_found') return 'Not found: it does not exist, has closed, or is private.';
  if (err.code === 'forbidden') return 'You are not allowed to do that.';
  let m = String(err.message || '').replace(/^invalid (input|JSON): ?/i, '').trim();
  if (!m) return 'Something went wrong (' + err.status + ').';
  m = m.charAt(0).toUpperCase() + m.slice(1);
  return /[.!?]$/.test(m) ? m : m + '.';
}

// bannedText words a ban for its player: until when (none: for good) and
// why.
export function bannedText(until, reason) {
  if (until) {
    const t = new Date(until).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
    return `This account is banned until ${t}` + (reason ? ` because ${reason}` : '') + '.';
  }
  return reason ? `This account is banned: ${reason}` + (/[.!?]$/.test(reason) ? '' : '.') : 'This account is banned.';
}

export function showError(target, err, context) {
  target.textContent = err ? readable(err, context) : '';
  target.hidden = !err;
}

// copyText copies to the clipboard: the async API where the page is a
// secure context, else a selected off-screen textarea and the copy
// command (plain http). It resolves to whether it worked.
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    try { await navigator.clipboard.writeText(text); return true; } catch (e) { /* fall back */ }
  }
  const ta = el('textarea', { class: 'offscreen', readonly: true, 'aria-hidden': 'true', tabindex: '-1' });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  let ok = false;
  try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
  ta.remove();
  return ok;
}

// copyButton wires a button to copy text() and say so in feedback.
export function copyButton(button, feedback, text) {
  button.onclick = async () => {
    const ok = await copyText(text());
    feedback.textContent = ok ? 'Copied.' : 'Could not copy: select the text and press Ctrl+C.';
    feedback.hidden = false;
  };
}
