// The player lobby: public rooms with filters, join by invite code, create
// a room, my rooms (open, leave; kick, new invite and close for the host),
// the roomnet:// hand-over to the CLI, lobby and room chat. Lists update
// in place every 5 s, so focus and typing survive a refresh.
import { call, session, signIn, signOut, register, el, $, showError, onSessionEnd, endSession, takeEndedReason, copyButton, SESSION_ENDED } from './api.js';
import { ChatClient } from './chat.js';
import { ChatView } from './chatview.js';

const LOBBY = 'lobby:main';
const TITLE = 'roomnet lobby';
let me = null;
let rooms = [];
let roomsFailed = false; // the rooms error box shows a failed load (not an action's error)
let mine = new Map(); // room id → room (with invite), the rooms I am in
let chat = null;
let view = null;
const rows = new Map(); // room id → row of the public list
const mineRows = new Map(); // room id → item of my rooms
const stats = { renders: 0 };
let leaving = false; // signing out here: not "ended elsewhere"

async function main() {
  const user = await session();
  if (!user) return showSignIn(takeEndedReason());
  start(user);
}

function showSignIn(reason) {
  $('#signin').hidden = false;
  $('#app').hidden = true;
  $('#signin-reason').textContent = reason || '';
  $('#signin-reason').hidden = !reason;
  const err = $('#signin-error');
  const creds = () => [$('#username').value.trim().toLowerCase(), $('#password').value];
  $('#signin-form').onsubmit = async (e) => {
    e.preventDefault();
    try { start(await signIn(...creds())); } catch (x) { showError(err, x, 'signin'); }
  };
  $('#register-button').onclick = async () => {
    try { await register(...creds()); start(await signIn(...creds())); } catch (x) { showError(err, x, 'signin'); }
  };
}

// ended leaves a page whose session is gone for the sign-in form.
function ended(reason) {
  if (leaving) return;
  if (chat) chat.close();
  chat = null;
  endSession(reason, '/');
}

function start(user) {
  me = user;
  $('#signin').hidden = true;
  $('#app').hidden = false;
  $('#whoami').textContent = `signed in as ${user.username}`;
  $('#signout').hidden = false;
  $('#signout').onclick = async () => { leaving = true; if (chat) chat.close(); await signOut().catch(() => {}); location.reload(); };
  onSessionEnd(ended);
  for (const id of ['#filter-text', '#filter-game', '#filter-open', '#filter-nopass']) $(id).oninput = render;
  $('#filters').onsubmit = (e) => e.preventDefault();
  $('#create').onsubmit = (e) => { e.preventDefault(); create(); };
  $('#invite-form').onsubmit = (e) => { e.preventDefault(); joinInvite(); };
  $('#handover-dismiss').onclick = () => { $('#handover').hidden = true; };
  chat = new ChatClient({ lobbies: [LOBBY] });
  view = new ChatView($('#chat'), chat, { names: { [LOBBY]: 'Lobby' }, title: TITLE });
  view.open(LOBBY);
  chat.addEventListener('disconnected', (e) => {
    if (e.detail.code === 4012 || e.detail.code === 4001) ended(SESSION_ENDED);
  });
  chat.start();
  window.roomnetChat = chat; // for the curious, and the browser tests
  window.roomnetLobby = stats;
  refresh();
  setInterval(refresh, 5000);
}

async function refresh() {
  await loadMine();
  await loadRooms();
}

async function loadRooms() {
  try {
    rooms = (await call('GET', '/rooms')).rooms;
    if (roomsFailed) showError($('#rooms-error'), null);
    roomsFailed = false;
  } catch (x) { showError($('#rooms-error'), x); roomsFailed = true; }
  const games = [...new Set(rooms.map((r) => r.game).filter(Boolean))].sort();
  const sel = $('#filter-game');
  const have = [...sel.options].slice(1).map((o) => o.value);
  if (have.join('\n') !== games.join('\n')) {
    const cur = sel.value;
    sel.replaceChildren(el('option', { value: '' }, 'All games'), ...games.map((g) => el('option', { value: g }, g)));
    sel.value = games.includes(cur) ? cur : '';
  }
  render();
}

function setText(node, text) { if (node.textContent !== text) node.textContent = text; }

function render() {
  stats.renders++;
  const text = $('#filter-text').value.trim().toLowerCase();
  const game = $('#filter-game').value;
  const space = $('#filter-open').checked;
  const nopass = $('#filter-nopass').checked;
  const shown = rooms.filter((r) => (!text || r.name.toLowerCase().includes(text) || r.host.toLowerCase().includes(text)) &&
    (!game || r.game === game) && (!space || r.members < r.max_players) && (!nopass || !r.has_password));
  const tbody = $('#rooms tbody');
  const keep = new Set();
  let prev = null;
  for (const r of shown) {
    let row = rows.get(r.id);
    if (!row) { row = makeRow(r); rows.set(r.id, row); }
    updateRow(row, r);
    keep.add(r.id);
    const want = prev ? prev.nextSibling : tbody.firstChild;
    if (want !== row.tr) tbody.insertBefore(row.tr, want);
    prev = row.tr;
  }
  for (const [id, row] of rows) if (!keep.has(id)) { row.tr.remove(); rows.delete(id); }
  $('#rooms-empty').hidden = shown.length > 0;
}

function makeRow(r) {
  const row = {
    name: el('span'), lock: el('span', { class: 'muted small' }), game: el('td', { 'data-label': 'Game' }),
    host: el('td', { 'data-label': 'Host' }), players: el('td', { 'data-label': 'Players' }), actions: el('td'), state: '',
  };
  row.tr = el('tr', { dataset: { room: r.id } }, el('td', {}, row.name, row.lock), row.game, row.host, row.players, row.actions);
  return row;
}

function updateRow(row, r) {
  row.room = r;
  setText(row.name, r.name);
  setText(row.lock, r.has_password ? ' · password' : '');
  setText(row.game, r.game || '—');
  setText(row.host, r.host);
  setText(row.players, `${r.members}/${r.max_players}`);
  const member = mine.has(r.id);
  const full = r.members >= r.max_players;
  const state = `${member}/${full}/${r.has_password}/${r.name}`;
  if (state === row.state) return;
  row.state = state;
  if (member) {
    row.actions.replaceChildren(el('div', { class: 'actions' },
      el('button', { type: 'button', class: 'open', 'aria-label': `Open ${r.name}`, onclick: () => openRoom(r.id) }, 'Open'),
      el('button', { type: 'button', class: 'secondary leave', 'aria-label': `Leave ${r.name}`, onclick: () => leave(r.id, r.name) }, 'Leave')));
    return;
  }
  const join = el('button', { type: 'button', class: 'join', disabled: full, 'aria-label': full ? `Full: ${r.name}` : `Join ${r.name}` }, full ? 'Full' : 'Join');
  row.actions.replaceChildren(join);
  if (!r.has_password) { join.onclick = () => joinRoom(r); return; }
  // A password room asks for it right here, in a password field.
  const pid = `pass-${r.id}`;
  const input = el('input', { id: pid, type: 'password', maxlength: 72, autocomplete: 'off', required: true, placeholder: 'Room password' });
  const form = el('form', { class: 'room-pass', hidden: true, dataset: { room: r.id } },
    el('label', { for: pid, class: 'sr-only' }, `Password for ${r.name}`), input,
    el('button', { type: 'submit', 'aria-label': `Join ${r.name} with this password` }, 'Join'),
    el('button', { type: 'button', class: 'secondary', onclick: () => { form.hidden = true; join.hidden = false; join.focus(); } }, 'Cancel'));
  form.onsubmit = (e) => { e.preventDefault(); joinRoom(row.room, input.value); };
  join.setAttribute('aria-label', `Join ${r.name} (needs a password)`);
  join.onclick = () => { join.hidden = true; form.hidden = false; input.focus(); };
  row.actions.append(form);
}

// joinRoom becomes a member through the API, then hands over to roomnet,
// which brings the node up (roomnet join renews the key of a member).
async function joinRoom(r, password) {
  const err = $('#rooms-error');
  try {
    await call('POST', `/rooms/${r.id}/join`, password ? { password } : {});
  } catch (x) {
    if (x.code !== 'already_member') return showError(err, x);
  }
  showError(err, null);
  await openRoom(r.id);
}

async function joinInvite() {
  const err = $('#invite-error');
  const code = $('#invite-code').value.trim().toUpperCase().replace(/\s+/g, '');
  if (!code) return;
  let id = '';
  try {
    id = (await call('POST', `/invites/${encodeURIComponent(code)}/join`, {})).room_id;
  } catch (x) {
    if (x.code !== 'already_member') return showError(err, x.code === 'not_found' ? new Error('No room has this invite code: check it, or ask the host for a new one.') : x);
    try { id = (await call('GET', `/invites/${encodeURIComponent(code)}`)).id; } catch (y) { return showError(err, y); }
  }
  showError(err, null);
  $('#invite-code').value = '';
  await openRoom(id);
}

// openRoom reads a room I am in and hands over to roomnet.
async function openRoom(id) {
  try {
    const room = await call('GET', `/rooms/${id}`);
    handOver(room, room.host === me.username);
  } catch (x) { showError($('#rooms-error'), x); }
}

function handOver(room, host) {
  $('#handover').hidden = false;
  $('#handover-title').textContent = host ? `You host ${room.name}` : `You're in ${room.name}`;
  $('#handover-text').textContent = host
    ? 'roomnet is opening to start hosting: your computer hosts the room while roomnet runs, and players connect to you. If nothing happens, run this in a terminal to start hosting:'
    : 'roomnet is opening to connect you to the room. If nothing happens, run this in a terminal:';
  const cmd = `roomnet join ${room.invite_code}`;
  $('#handover-command').textContent = cmd;
  $('#handover-link').href = room.invite_link;
  $('#copy-feedback').hidden = true;
  copyButton($('#copy-command'), $('#copy-feedback'), () => cmd);
  mine.set(room.id, room);
  view.setName(`room:${room.id}`, room.name);
  view.list(`room:${room.id}`);
  chat.resync();
  // The scheme handler (docs/cli.md) starts roomnet; without one the
  // browser stays here and the command above does the same. A browser
  // launches a scheme only within a few seconds of the click (transient
  // activation): after a slow answer the "Open in roomnet" link is the
  // way, rather than a launch the browser refuses.
  if (!navigator.userActivation || navigator.userActivation.isActive) {
    const a = el('a', { href: room.invite_link, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
  }
  $('#handover-title').scrollIntoView({ block: 'nearest' });
  refresh();
}

async function create() {
  const err = $('#create-error');
  const ports = $('#create-ports').value.split(/[\s,]+/).filter(Boolean);
  const body = {
    name: $('#create-name').value.trim(), game: $('#create-game').value.trim(),
    max_players: Number($('#create-max').value), public: $('#create-public').checked,
  };
  if ($('#create-password').value) body.password = $('#create-password').value;
  if (ports.length) body.ports = ports;
  try {
    const room = await call('POST', '/rooms', body);
    showError(err, null);
    $('#create').reset();
    handOver(room, true);
  } catch (x) { showError(err, x); }
}

// ---- my rooms

async function loadMine() {
  let list;
  try {
    list = (await call('GET', '/me/rooms')).rooms;
    showError($('#mine-error'), null);
  } catch (x) { showError($('#mine-error'), x); return; }
  mine = new Map(list.map((r) => [r.id, r]));
  for (const r of list) view.setName(`room:${r.id}`, r.name);
  const ul = $('#mine');
  let prev = null;
  for (const r of list) {
    let item = mineRows.get(r.id);
    if (!item) { item = makeMine(r); mineRows.set(r.id, item); }
    updateMine(item, r);
    const want = prev ? prev.nextSibling : ul.firstChild;
    if (want !== item.li) ul.insertBefore(item.li, want);
    prev = item.li;
  }
  for (const [id, item] of mineRows) if (!mine.has(id)) { item.li.remove(); mineRows.delete(id); }
  $('#mine-empty').hidden = list.length > 0;
}

function makeMine(r) {
  const item = { title: el('strong'), detail: el('span', { class: 'muted small' }), code: el('span', { class: 'code small' }), actions: el('div', { class: 'actions' }), members: el('ul', { class: 'members' }), state: '', memberKey: '' };
  item.li = el('li', { dataset: { room: r.id } }, el('div', { class: 'row spread' }, el('div', {}, item.title, ' ', item.detail), item.actions),
    el('div', { class: 'row small' }, el('span', { class: 'muted' }, 'Invite code'), item.code), item.members);
  return item;
}

function updateMine(item, r) {
  const host = r.host === me.username;
  setText(item.title, r.name);
  setText(item.detail, `${r.game || 'no game'} · ${r.members}/${r.max_players} · ${host ? 'you host' : 'host ' + r.host}`);
  setText(item.code, r.invite_code || '');
  const state = `${host}/${r.name}`;
  if (state !== item.state) {
    item.state = state;
    const buttons = [
      el('button', { type: 'button', class: 'open', 'aria-label': `Open ${r.name}`, onclick: () => openRoom(r.id) }, 'Open'),
      el('button', { type: 'button', class: 'secondary leave', 'aria-label': `Leave ${r.name}`, onclick: () => leave(r.id, r.name) }, 'Leave'),
    ];
    if (host) {
      buttons.push(
        el('button', { type: 'button', class: 'secondary rotate', 'aria-label': `New invite code for ${r.name}`, onclick: () => rotate(r.id, r.name) }, 'New invite'),
        el('button', { type: 'button', class: 'danger close', 'aria-label': `Close ${r.name}`, onclick: () => closeRoom(r.id, r.name) }, 'Close'));
    }
    item.actions.replaceChildren(...buttons);
  }
  if (!host) { item.members.replaceChildren(); item.memberKey = ''; return; }
  loadMembers(item, r);
}

async function loadMembers(item, r) {
  let members;
  try { members = (await call('GET', `/rooms/${r.id}/members`)).members; } catch (x) { return; }
  const key = members.map((m) => m.username + (m.host ? '*' : '')).join(',');
  if (key === item.memberKey) return;
  item.memberKey = key;
  item.members.replaceChildren(...members.filter((m) => !m.host).map((m) => el('li', { dataset: { member: m.username } },
    el('span', {}, m.username),
    el('button', { type: 'button', class: 'danger kick', 'aria-label': `Kick ${m.username} from ${r.name}`, onclick: () => kick(r, m.username) }, 'Kick'))));
}

function status(text) { $('#mine-status').textContent = text; }

async function leave(id, name) {
  try {
    await call('POST', `/rooms/${id}/leave`);
    mine.delete(id);
    status(`You left ${name}.`);
    showError($('#mine-error'), null);
  } catch (x) { showError($('#mine-error'), x); }
  refresh();
}

async function kick(r, username) {
  if (!confirm(`Kick ${username} from ${r.name}? They cannot rejoin.`)) return;
  try {
    await call('POST', `/rooms/${r.id}/kick`, { username });
    status(`${username} was kicked from ${r.name}.`);
    showError($('#mine-error'), null);
  } catch (x) { showError($('#mine-error'), x); }
  refresh();
}

async function rotate(id, name) {
  try {
    const inv = await call('POST', `/rooms/${id}/invite`);
    status(`${name} has a new invite code: ${inv.invite_code}. The old one no longer works.`);
    showError($('#mine-error'), null);
  } catch (x) { showError($('#mine-error'), x); }
  refresh();
}

async function closeRoom(id, name) {
  if (!confirm(`Close ${name} for everyone?`)) return;
  try {
    await call('DELETE', `/rooms/${id}`);
    mine.delete(id);
    status(`${name} is closed.`);
    showError($('#mine-error'), null);
  } catch (x) { showError($('#mine-error'), x); }
  refresh();
}

main().catch((x) => { document.body.prepend(el('p', { class: 'error', role: 'alert' }, String(x))); });
