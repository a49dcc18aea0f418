// The player lobby: public rooms with filters, create a room, "join room"
// (the API, then the roomnet:// hand-over to the CLI), lobby and room chat.
import { call, session, signIn, signOut, register, el, $, showError } from './api.js';
import { ChatClient } from './chat.js';
import { ChatView } from './chatview.js';

const LOBBY = 'lobby:main';
let rooms = [];
let chat = null;
let view = null;

async function main() {
  const user = await session();
  if (!user) return showSignIn();
  start(user);
}

function showSignIn() {
  $('#signin').hidden = false;
  $('#app').hidden = true;
  const err = $('#signin-error');
  const creds = () => [$('#username').value.trim().toLowerCase(), $('#password').value];
  $('#signin-form').onsubmit = async (e) => {
    e.preventDefault();
    try { start(await signIn(...creds())); } catch (x) { showError(err, x); }
  };
  $('#register-button').onclick = async () => {
    try { await register(...creds()); start(await signIn(...creds())); } catch (x) { showError(err, x); }
  };
}

function start(user) {
  $('#signin').hidden = true;
  $('#app').hidden = false;
  $('#whoami').textContent = `signed in as ${user.username}`;
  $('#signout').hidden = false;
  $('#signout').onclick = async () => { chat && chat.close(); await signOut().catch(() => {}); location.reload(); };
  for (const id of ['#filter-text', '#filter-game', '#filter-open', '#filter-nopass']) $(id).oninput = render;
  $('#create').onsubmit = (e) => { e.preventDefault(); create(); };
  chat = new ChatClient({ lobbies: [LOBBY] });
  view = new ChatView($('#chat'), chat, { names: { [LOBBY]: 'Lobby' } });
  view.open(LOBBY);
  chat.addEventListener('disconnected', (e) => { if (!e.detail.retry) location.reload(); });
  chat.start();
  window.roomnetChat = chat; // for the curious, and the browser tests
  loadRooms();
  loadMine();
  setInterval(loadRooms, 5000);
}

async function loadRooms() {
  try {
    rooms = (await call('GET', '/rooms')).rooms;
    showError($('#rooms-error'), null);
  } catch (x) { showError($('#rooms-error'), x); }
  const games = [...new Set(rooms.map((r) => r.game).filter(Boolean))].sort();
  const sel = $('#filter-game');
  const cur = sel.value;
  sel.replaceChildren(el('option', { value: '' }, 'All games'), ...games.map((g) => el('option', { value: g }, g)));
  sel.value = games.includes(cur) ? cur : '';
  render();
}

// loadMine names the rooms the player is in, for the chat tabs.
async function loadMine() {
  try {
    for (const r of (await call('GET', '/me/rooms')).rooms) view.names[`room:${r.id}`] = r.name;
  } catch (x) { /* the chat still works without names */ }
}

function render() {
  const text = $('#filter-text').value.trim().toLowerCase();
  const game = $('#filter-game').value;
  const space = $('#filter-open').checked;
  const nopass = $('#filter-nopass').checked;
  const shown = rooms.filter((r) => (!text || r.name.toLowerCase().includes(text) || r.host.toLowerCase().includes(text)) &&
    (!game || r.game === game) && (!space || r.members < r.max_players) && (!nopass || !r.has_password));
  $('#rooms tbody').replaceChildren(...shown.map((r) => el('tr', { dataset: { room: r.id } },
    el('td', {}, r.name, r.has_password ? ' 🔒' : ''), el('td', {}, r.game || '—'), el('td', {}, r.host),
    el('td', {}, `${r.members}/${r.max_players}`),
    el('td', {}, el('button', { type: 'button', class: 'join', disabled: r.members >= r.max_players, onclick: () => join(r) }, 'Join room')))));
  $('#rooms-empty').hidden = shown.length > 0;
}

// join becomes a member through the API, then hands over to roomnet,
// which brings the node up (roomnet join renews the key of a member).
async function join(r) {
  const err = $('#rooms-error');
  let password;
  if (r.has_password) {
    password = prompt(`Password for ${r.name}`);
    if (password === null) return;
  }
  try {
    await call('POST', `/rooms/${r.id}/join`, password ? { password } : {});
  } catch (x) {
    if (x.code !== 'already_member') return showError(err, x);
  }
  try {
    handOver(await call('GET', `/rooms/${r.id}`));
  } catch (x) { showError(err, x); }
}

function handOver(room) {
  $('#handover').hidden = false;
  $('#handover-room').textContent = room.name;
  const cmd = `roomnet join ${room.invite_code}`;
  $('#handover-command').textContent = cmd;
  $('#handover-link').href = room.invite_link;
  $('#copy-command').onclick = () => navigator.clipboard && navigator.clipboard.writeText(cmd);
  view.names[`room:${room.id}`] = room.name;
  view.list(`room:${room.id}`);
  // The scheme handler (docs/cli.md) starts roomnet; without one the
  // browser stays here and the command above does the same.
  const a = el('a', { href: room.invite_link, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  loadRooms();
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
    handOver(room);
  } catch (x) { showError(err, x); }
}

main().catch((x) => { document.body.prepend(el('p', { class: 'error' }, String(x))); });
