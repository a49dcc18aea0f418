// The admin panel: dashboard figures with small charts, rooms (live on
// the membership event stream) with members, nodes and how they reach
// each other, users (roles, ban, mute), relays, chat moderation and the
// audit log. A client of the REST API and the chat protocol.
import { call, session, signOut, el, $, showError } from './api.js';
import { ChatClient } from './chat.js';
import { ChatView } from './chatview.js';

const errBox = () => $('#error');
const fail = (x) => showError(errBox(), x);
const when = (t) => (t ? new Date(t).toLocaleString() : '—');
let selectedRoom = null;
let chat = null;
let view = null;

async function main() {
  const user = await session();
  if (!user || user.role !== 'admin') { location.replace('/admin'); return; }
  $('#whoami').textContent = user.username;
  $('#signout').onclick = async () => { await signOut().catch(() => {}); location.replace('/admin'); };
  window.addEventListener('hashchange', route);
  route();
  for (const id of ['#room-q', '#room-game', '#room-state']) $(id).oninput = () => loadRooms();
  $('#user-q').oninput = () => loadUsers();
  $('#room-filters').onsubmit = (e) => e.preventDefault();
  $('#user-filters').onsubmit = (e) => e.preventDefault();
  $('#room-close').onclick = closeRoom;
  $('#announce').onsubmit = announce;
  $('#mute').onsubmit = (e) => { e.preventDefault(); mute($('#mute-user').value.trim(), Number($('#mute-for').value)); };
  $('#watch').onclick = () => { chat.join($('#watch-conv').value.trim()); view.open($('#watch-conv').value.trim()); };
  $('#audit-more').onclick = () => loadAudit(true);
  $('#rooms-more').onclick = () => loadRooms(true);
  $('#users-more').onclick = () => loadUsers(true);
  listen();
  refreshAll();
  setInterval(loadFigures, 5000);
  setInterval(loadRelays, 5000);
  startChat();
}

function route() {
  const tab = (location.hash || '#dashboard').slice(1);
  for (const t of document.querySelectorAll('.tab')) t.hidden = t.id !== 'tab-' + tab;
  for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.dataset.tab === tab);
  if (tab === 'audit') loadAudit();
  if (tab === 'users') loadUsers();
}

function refreshAll() {
  loadFigures(); loadRooms(); loadRelays();
}

// listen follows membership events; every event re-reads what it touches
// (the stream is at most once; the lists are the truth).
function listen() {
  const es = new EventSource('/api/v1/admin/events');
  let timer = 0;
  es.onopen = () => { $('#live').textContent = 'live'; $('#live').className = 'status online'; refreshAll(); };
  es.onerror = () => { $('#live').textContent = 'live: reconnecting'; $('#live').className = 'status offline'; };
  es.addEventListener('membership', (e) => {
    const ev = JSON.parse(e.data);
    clearTimeout(timer);
    timer = setTimeout(() => {
      loadRooms();
      loadFigures();
      if (selectedRoom && ev.room_id === selectedRoom) loadMembers();
    }, 100);
  });
}

// ---- dashboard

const FIGURES = [
  ['rooms_open', 'Rooms open'], ['players_online', 'Players online'], ['members_active', 'Players in rooms'],
  ['relays_up', 'Relays up'], ['messages_per_sec', 'Messages / s'], ['joins_per_min', 'Joins / min'],
];

function spark(values) {
  const w = 200, h = 44;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  if (values.length < 2) return svg; // a chart needs two samples
  const hi = Math.max(...values, 1);
  const pts = values.map((v, i) => `${(i * w / (values.length - 1)).toFixed(1)},${(h - 2 - (v / hi) * (h - 6)).toFixed(1)}`);
  const area = document.createElementNS(ns, 'polygon');
  area.setAttribute('points', `0,${h} ${pts.join(' ')} ${w},${h}`);
  const line = document.createElementNS(ns, 'polyline');
  line.setAttribute('points', pts.join(' '));
  svg.append(area, line);
  return svg;
}

async function loadFigures() {
  try {
    const ov = await call('GET', '/admin/overview');
    $('#figures').replaceChildren(...FIGURES.map(([k, label]) => {
      const v = ov.now[k];
      return el('div', { class: 'figure', dataset: { figure: k } },
        el('div', { class: 'label' }, label), el('div', { class: 'value' }, Number.isInteger(v) ? v : v.toFixed(1)),
        spark(ov.series.map((f) => f[k]).concat([v])));
    }));
  } catch (x) { fail(x); }
}

// ---- rooms

let roomsNext = '';

async function loadRooms(more = false) {
  const q = new URLSearchParams({ q: $('#room-q').value.trim(), game: $('#room-game').value.trim(), state: $('#room-state').value });
  if (more && roomsNext) q.set('before', roomsNext);
  try {
    const list = await call('GET', '/admin/rooms?' + q);
    roomsNext = list.next || '';
    $('#rooms-more').hidden = !roomsNext;
    const rows = list.rooms.map((r) => el('tr', { class: 'clickable', dataset: { room: r.id }, onclick: () => selectRoom(r.id) },
      el('td', {}, r.name, el('div', { class: 'muted' }, r.id)), el('td', {}, r.game || '—'), el('td', {}, r.host),
      el('td', {}, `${r.members}/${r.max_players}`),
      el('td', {}, r.public ? 'public' : 'private', r.has_password ? ' · password' : '', r.closed_at ? el('span', { class: 'pill bad' }, ' closed') : ''),
      el('td', {}, when(r.created_at))));
    if (more) $('#rooms tbody').append(...rows); else $('#rooms tbody').replaceChildren(...rows);
  } catch (x) { fail(x); }
}

async function selectRoom(id) {
  selectedRoom = id;
  $('#room-detail').hidden = false;
  try {
    const r = await call('GET', `/rooms/${id}`);
    $('#room-title').textContent = `${r.name} · ${r.game || 'no game'} · host ${r.host}`;
    $('#room-invite').textContent = r.invite_code || '';
    $('#room-close').disabled = !!r.closed_at;
  } catch (x) { fail(x); }
  loadMembers();
}

async function loadMembers() {
  const id = selectedRoom;
  try {
    const list = await call('GET', `/rooms/${id}/members`);
    if (id !== selectedRoom) return;
    $('#members tbody').replaceChildren(...list.members.map((m) => {
      const ips = m.nodes.flatMap((n) => n.ips);
      const online = m.nodes.some((n) => n.online);
      const links = (m.links || []).map((l) => el('div', {},
        `${l.peer}: `, el('span', { class: 'pill ' + (l.direct ? 'ok' : 'warn') }, l.direct ? 'direct' : `relayed ${l.relay || ''}`),
        l.rtt_ms ? ` ${l.rtt_ms.toFixed(1)} ms` : ''));
      return el('tr', { dataset: { member: m.username } },
        el('td', {}, m.username, m.host ? el('span', { class: 'pill' }, ' host') : ''),
        el('td', { class: 'code-list' }, ips.length ? ips.join(', ') : el('span', { class: 'muted' }, 'no node')),
        el('td', {}, el('span', { class: 'pill ' + (online ? 'ok' : 'bad') }, online ? 'online' : 'offline')),
        el('td', {}, links.length ? links : el('span', { class: 'muted' }, 'no report')),
        el('td', {}, m.host ? '' : el('button', { type: 'button', class: 'danger kick', onclick: () => kick(id, m.username) }, 'Kick')));
    }));
  } catch (x) { fail(x); }
}

async function kick(room, username) {
  try { await call('POST', `/rooms/${room}/kick`, { username }); loadMembers(); loadRooms(); } catch (x) { fail(x); }
}

async function closeRoom() {
  if (!selectedRoom || !confirm('Close this room for everyone?')) return;
  try { await call('DELETE', `/rooms/${selectedRoom}`); selectRoom(selectedRoom); loadRooms(); } catch (x) { fail(x); }
}

// ---- users

let usersNext = 0;

async function loadUsers(more = false) {
  const q = new URLSearchParams({ q: $('#user-q').value.trim() });
  if (more && usersNext) q.set('after', usersNext);
  try {
    const list = await call('GET', '/users?' + q);
    usersNext = list.next || 0;
    $('#users-more').hidden = !usersNext;
    const rows = list.users.map((u) => {
      const role = el('select', { onchange: (e) => setRole(u.username, e.target.value) },
        el('option', { value: 'player', selected: u.role === 'player' }, 'player'), el('option', { value: 'admin', selected: u.role === 'admin' }, 'admin'));
      const muted = u.muted_until && new Date(u.muted_until) > new Date();
      return el('tr', { dataset: { user: u.username } }, el('td', {}, u.username), el('td', {}, role),
        el('td', {}, u.banned ? el('span', { class: 'pill bad' }, 'banned') : el('span', { class: 'pill ok' }, 'active'),
          muted ? el('span', { class: 'pill warn' }, ` muted until ${when(u.muted_until)}`) : ''),
        el('td', {}, when(u.created_at)),
        el('td', { class: 'row' },
          u.banned ? el('button', { type: 'button', class: 'secondary', onclick: () => ban(u.username, false) }, 'Unban')
            : el('button', { type: 'button', class: 'danger', onclick: () => ban(u.username, true) }, 'Ban'),
          muted ? el('button', { type: 'button', class: 'secondary', onclick: () => unmute(u.username) }, 'Unmute')
            : el('button', { type: 'button', class: 'secondary', onclick: () => mute(u.username, 3600) }, 'Mute 1h')));
    });
    if (more) $('#users tbody').append(...rows); else $('#users tbody').replaceChildren(...rows);
  } catch (x) { fail(x); }
}

async function setRole(username, role) {
  try { await call('POST', `/admin/users/${encodeURIComponent(username)}/role`, { role }); } catch (x) { fail(x); }
  loadUsers();
}

async function ban(username, on) {
  if (on && !confirm(`Ban ${username}? Their nodes and chat are cut at once.`)) return;
  try { await call('POST', `/users/${encodeURIComponent(username)}/${on ? 'ban' : 'unban'}`); } catch (x) { fail(x); }
  loadUsers();
}

async function mute(username, seconds) {
  if (!username) return;
  try {
    const st = await call('POST', `/admin/users/${encodeURIComponent(username)}/mute`, { seconds });
    $('#mod-result').textContent = `${st.username} muted until ${when(st.until)}`;
  } catch (x) { fail(x); }
  loadUsers();
}

async function unmute(username) {
  try { await call('DELETE', `/admin/users/${encodeURIComponent(username)}/mute`); } catch (x) { fail(x); }
  loadUsers();
}

// ---- relays

const lastBytes = new Map();

async function loadRelays() {
  try {
    const list = await call('GET', '/relays');
    const now = Date.now();
    $('#relays tbody').replaceChildren(...list.relays.map((r) => {
      const st = r.stats || {};
      const bytes = (st.bytes_received || 0) + (st.bytes_sent || 0);
      let rate = r.bytes_per_sec;
      const prev = lastBytes.get(r.node.name);
      if (rate === undefined && prev) rate = Math.max(bytes - prev.bytes, 0) / ((now - prev.at) / 1000);
      lastBytes.set(r.node.name, { bytes, at: now });
      return el('tr', { dataset: { relay: r.node.name } },
        el('td', {}, `${r.region_name || r.region_code} (${r.region_id})`), el('td', {}, r.node.name, r.embedded ? el('span', { class: 'pill' }, ' embedded') : ''),
        el('td', {}, `${r.node.hostname}:${r.node.derp_port}`),
        el('td', {}, el('span', { class: 'pill ' + (r.healthy ? 'ok' : 'warn') }, r.healthy ? 'healthy' : 'late')),
        el('td', {}, st.clients ?? '—'), el('td', {}, rate === undefined ? '—' : `${(rate / 1024).toFixed(1)} KiB/s`),
        el('td', {}, when(r.last_seen)));
    }));
  } catch (x) { fail(x); }
}

// ---- chat moderation

function startChat() {
  chat = new ChatClient({ lobbies: ['lobby:main'] });
  view = new ChatView($('#chat'), chat, {
    names: { 'lobby:main': 'Lobby' },
    moderate: {
      delete: async (m) => {
        try { await call('POST', '/admin/chat/delete', { conv: m.conv, seq: m.seq }); } catch (x) { fail(x); }
      },
      mute: (username) => mute(username, 600),
    },
  });
  view.open('lobby:main');
  chat.start();
  window.roomnetChat = chat;
}

async function announce(e) {
  e.preventDefault();
  try {
    await call('POST', '/admin/chat/announce', { conv: $('#announce-conv').value.trim(), text: $('#announce-text').value });
    $('#announce-text').value = '';
    $('#mod-result').textContent = 'announced';
  } catch (x) { fail(x); }
}

// ---- audit

let auditNext = 0;

async function loadAudit(more = false) {
  try {
    const list = await call('GET', '/admin/audit' + (more && auditNext ? `?before=${auditNext}` : ''));
    auditNext = list.next || 0;
    $('#audit-more').hidden = !auditNext;
    const rows = list.entries.map((a) => el('tr', { dataset: { action: a.action } }, el('td', {}, when(a.at)), el('td', {}, a.actor),
      el('td', {}, a.action), el('td', {}, a.target || ''), el('td', {}, a.detail || '')));
    if (more) $('#audit tbody').append(...rows); else $('#audit tbody').replaceChildren(...rows);
  } catch (x) { fail(x); }
}

main().catch(fail);
