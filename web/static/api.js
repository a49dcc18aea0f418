// The REST API from a page: the session cookie authenticates (sent by the
// browser, unreadable to script) and every state-changing request carries
// the session's CSRF token.

let csrf = '';

export class APIError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

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
    throw new APIError(res.status, e.code || 'http_' + res.status, e.message || res.statusText);
  }
  return data;
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

export function showError(target, err) {
  target.textContent = err ? (err.message || String(err)) : '';
  target.hidden = !err;
}
