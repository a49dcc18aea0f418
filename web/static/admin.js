// The admin panel: dashboard figures with small charts, rooms (live on
// the membership event stream) with members, nodes and how they reach
// each other, users (roles, ban, mute), relays and Headscale shards, chat moderation and the
// audit log. A client of the REST API and the chat protocol.
import { call, session, signOut, el, $, showError, readable, onSessionEnd, endSession, SESSION_ENDED } from './api.js';
import { ChatClient } from './chat.js';
import { ChatView } from './chatview.js';

// fail shows an error in the banner until the next action that works,
// a change of tab or Dismiss.
const fail = (x) => { showError($('#error'), x); $('#error-banner').hidden = false; };
const ok = () => { $('#error-banner').hidden = true; };
const when = (t) => (t ? new Date(t).toLocaleString() : '—');
let selectedRoom = null;
let chat = null;
let view = null;
let me = null;
let leaving = false; // signing out here: not "ended elsewhere"
const ended = (reason) => { if (leaving) return; if (chat) chat.close(); endSession(reason, '/admin'); };

// Tabs only admins see: moderators keep order among players and run
// nothing else (the API refuses them the rest; this only hides it).
const ADMIN_TABS = new Set(['dashboard', 'relays', 'nodes']);
let isAdmin = false;

async function main() {
  const user = await session();
  if (!user || (user.role !== 'admin' && user.role !== 'moderator')) { location.replace('/admin'); return; }
  me = user;
  isAdmin = user.role === 'admin';
  document.body.dataset.role = user.role;
  for (const a of document.querySelectorAll('header nav a')) if (!isAdmin && ADMIN_TABS.has(a.dataset.tab)) a.remove();
  if (!isAdmin) $('#tab-dashboard').remove();
  if (!isAdmin) $('#tab-relays').remove();
  if (!isAdmin) $('#tab-nodes').remove();
  onSessionEnd(ended);
  $('#whoami').textContent = user.username;
  $('#error-dismiss').onclick = ok;
  if (isAdmin) $('#figures-range').oninput = loadFigures;
  $('#signout').onclick = async () => { leaving = true; if (chat) chat.close(); await signOut().catch(() => {}); location.replace('/admin'); };
  window.addEventListener('hashchange', route);
  route();
  for (const id of ['#room-q', '#room-game', '#room-state']) $(id).oninput = () => loadRooms();
  $('#user-q').oninput = () => loadUsers();
  $('#room-filters').onsubmit = (e) => e.preventDefault();
  $('#user-filters').onsubmit = (e) => e.preventDefault();
  $('#room-close').onclick = closeRoom;
  $('#announce').onsubmit = announce;
  $('#mute').onsubmit = (e) => { e.preventDefault(); mute($('#mute-user').value.trim(), Number($('#mute-for').value)); };
  $('#watch-form').onsubmit = (e) => { e.preventDefault(); watch($('#watch-conv').value.trim()); };
  $('#audit-more').onclick = () => loadAudit(true);
  $('#rooms-more').onclick = () => loadRooms(true);
  $('#users-more').onclick = () => loadUsers(true);
  $('#profile-ban').onclick = () => ban(profiled, true, () => loadProfile(profiled));
  $('#profile-unban').onclick = () => ban(profiled, false, () => loadProfile(profiled));
  $('#profile-unmute').onclick = async () => { await unmute(profiled, false); loadProfile(profiled); };
  $('#profile-mute').onsubmit = async (e) => {
    e.preventDefault();
    await mute(profiled, Number($('#profile-mute-for').value), $('#profile-mute-reason').value.trim(), false);
    loadProfile(profiled);
  };
  $('#profile-purge').onclick = purge;
  $('#room-chat').onclick = () => { if (selectedRoom) { $('#watch-conv').value = `room:${selectedRoom}`; location.hash = '#chat'; watch(`room:${selectedRoom}`); } };
  $('#room-log-close').onclick = () => { stopRoomLog(); $('#watch-conv').value = 'lobby:main'; $('#watch-result').textContent = ''; };
  if (isAdmin) {
    $('#node-filters').onsubmit = (e) => e.preventDefault();
    $('#node-q').oninput = renderNodes;
    $('#node-state').oninput = renderNodes;
    setInterval(() => { if (!$('#tab-nodes').hidden) loadNodes(); }, 5000);
  }
  listen();
  refreshAll();
  if (isAdmin) {
    // A day of minute points changes once a minute: fetch it no more often.
    setInterval(() => { if ($('#figures-range').value !== '24h' || Date.now() - figuresAt > 60e3) loadFigures(); }, 5000);
    setInterval(loadRelays, 5000);
    setInterval(loadShards, 5000);
  }
  startChat();
}

function route() {
  ok();
  let tab = (location.hash || '').slice(1);
  if (!tab || (!isAdmin && ADMIN_TABS.has(tab))) tab = isAdmin ? 'dashboard' : 'rooms';
  let profileOf = '';
  if (tab.startsWith('user/')) { profileOf = decodeURIComponent(tab.slice(5)); tab = 'profile'; }
  for (const t of document.querySelectorAll('.tab')) t.hidden = t.id !== 'tab-' + tab;
  for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.dataset.tab === (tab === 'profile' ? 'users' : tab));
  if (profileOf) loadProfile(profileOf);
  if (tab === 'audit') loadAudit();
  if (tab === 'users') loadUsers();
  if (tab === 'nodes') loadNodes();
}

function refreshAll() {
  if (isAdmin) { loadFigures(); loadRelays(); loadShards(); }
  loadRooms();
}

// listen follows membership events; every event re-reads what it touches
// (the stream is at most once; the lists are the truth).
function listen() {
  const es = new EventSource('/api/v1/admin/events');
  let timer = 0;
  es.onopen = () => { $('#live').textContent = 'live'; $('#live').className = 'status online'; refreshAll(); };
  es.onerror = () => {
    $('#live').textContent = 'live: reconnecting'; $('#live').className = 'status offline';
    // The stream ends when the session does (sign-out, ban, expiry):
    // ask whether it still stands.
    session().then((u) => { if (!u) { es.close(); ended(SESSION_ENDED); } }).catch(() => {});
  };
  es.addEventListener('membership', (e) => {
    const ev = JSON.parse(e.data);
    clearTimeout(timer);
    timer = setTimeout(() => {
      loadRooms();
      if (isAdmin) loadFigures();
      if (selectedRoom && ev.room_id === selectedRoom) loadMembers();
    }, 100);
  });
}

// ---- dashboard

const FIGURES = [
  ['rooms_open', 'Rooms open'], ['players_online', 'Players online'], ['members_active', 'Players in rooms'],
  ['relays_up', 'Relays up'], ['messages_per_sec', 'Messages / s'], ['joins_per_min', 'Joins / min'],
];

const RANGES = { '15m': 15 * 60e3, '1h': 3600e3, '24h': 86400e3 };

// niceMax rounds a chart's top up to 1, 2 or 5 times a power of ten.
function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 5, 10].map((m) => m * p).find((m) => m >= v);
}

const clock = (t, long) => new Date(t).toLocaleTimeString([], long ? { hour: '2-digit', minute: '2-digit' } : { hour: '2-digit', minute: '2-digit', second: undefined });
const fmtValue = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(v < 10 ? 1 : 0));

// chart draws a series over the selected time range with a y axis (0 and
// a rounded top, a middle grid line) and an x axis (the range's start,
// middle and end, as clock times). Gaps (failed samples) stay gaps.
function chart(points, label, span, now) {
  const w = 240, h = 80;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('aria-hidden', 'true');
  const from = now - span;
  const hi = niceMax(Math.max(0, ...points.map((p) => p.v)));
  for (const y of [0, h / 2, h]) {
    const g = document.createElementNS(ns, 'line');
    g.setAttribute('x1', 0); g.setAttribute('x2', w); g.setAttribute('y1', y); g.setAttribute('y2', y);
    g.setAttribute('class', 'grid-line');
    svg.append(g);
  }
  const xy = (p) => `${(((p.t - from) / span) * w).toFixed(1)},${(h - (p.v / hi) * h).toFixed(1)}`;
  const inRange = points.filter((p) => p.t >= from);
  if (inRange.length >= 2) {
    const pts = inRange.map(xy);
    const first = pts[0].split(',')[0], last = pts[pts.length - 1].split(',')[0];
    const area = document.createElementNS(ns, 'polygon');
    area.setAttribute('points', `${first},${h} ${pts.join(' ')} ${last},${h}`);
    const line = document.createElementNS(ns, 'polyline');
    line.setAttribute('points', pts.join(' '));
    svg.append(area, line);
  }
  const long = span > 3600e3;
  return el('figure', { class: 'chart' },
    el('div', { class: 'y-axis', 'aria-hidden': 'true' }, el('span', {}, fmtValue(hi)), el('span', {}, fmtValue(hi / 2)), el('span', {}, '0')),
    svg,
    el('div', { class: 'x-axis', 'aria-hidden': 'true' }, el('span', {}, clock(from, long)), el('span', {}, clock(from + span / 2, long)), el('span', {}, 'now')),
    el('figcaption', { class: 'sr-only' }, inRange.length >= 2
      ? `${label} over the last ${$('#figures-range').selectedOptions[0].textContent.replace('the last ', '')}: from ${fmtValue(inRange[0].v)} to ${fmtValue(inRange[inRange.length - 1].v)}, at most ${fmtValue(Math.max(...inRange.map((p) => p.v)))}.`
      : `${label}: not enough samples yet.`));
}

let figuresAt = 0;

async function loadFigures() {
  figuresAt = Date.now();
  try {
    const range = $('#figures-range').value;
    const ov = await call('GET', `/admin/overview?range=${range}`);
    const now = Date.now();
    $('#figures').dataset.step = ov.step_seconds;
    $('#figures').replaceChildren(...FIGURES.map(([k, label]) => {
      const v = ov.now[k];
      const points = ov.series.map((f) => ({ t: Date.parse(f.at), v: f[k] })).concat([{ t: now, v }]);
      return el('div', { class: 'figure', dataset: { figure: k, points: points.length } },
        el('div', { class: 'label' }, label), el('div', { class: 'value' }, Number.isInteger(v) ? v : v.toFixed(1)),
        chart(points, label, RANGES[range], now));
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
    const rows = list.rooms.map((r) => el('tr', { class: 'clickable' + (r.id === selectedRoom ? ' selected' : ''), dataset: { room: r.id }, onclick: () => selectRoom(r.id) },
      el('td', {}, el('button', { type: 'button', class: 'link open-room', 'aria-label': `Open room ${r.name}`, onclick: (e) => { e.stopPropagation(); selectRoom(r.id); } }, r.name),
        el('div', { class: 'muted' }, r.id)), el('td', {}, r.game || '—'), el('td', {}, r.host),
      el('td', {}, `${r.members}/${r.max_players}`),
      el('td', {}, r.public ? 'public' : 'private', r.has_password ? ' · password' : '', r.closed_at ? [' ', el('span', { class: 'pill bad' }, 'closed')] : ''),
      el('td', {}, when(r.created_at))));
    if (more) $('#rooms tbody').append(...rows); else $('#rooms tbody').replaceChildren(...rows);
  } catch (x) { fail(x); }
}

let selectedClosed = false;

async function selectRoom(id) {
  selectedRoom = id;
  $('#room-detail').hidden = false;
  for (const tr of document.querySelectorAll('#rooms tbody tr')) tr.classList.toggle('selected', tr.dataset.room === id);
  try {
    const r = await call('GET', `/rooms/${id}`);
    // A closed room has no members and no invite any more.
    selectedClosed = !!r.closed_at;
    $('#room-title').textContent = `${r.name} · ${r.game || 'no game'} · ${selectedClosed ? 'closed' : 'host ' + r.host}`;
    $('#room-invite').textContent = selectedClosed ? '' : r.invite_code || '';
    $('#room-invite').hidden = selectedClosed || !r.invite_code;
    $('#room-close').hidden = selectedClosed;
    $('#room-closed').textContent = selectedClosed ? `Closed ${when(r.closed_at)}.` : '';
    $('#room-closed').hidden = !selectedClosed;
    $('#members').hidden = selectedClosed;
  } catch (x) { fail(x); }
  if (!selectedClosed) loadMembers();
  $('#room-detail').scrollIntoView({ block: 'nearest' });
}

async function loadMembers() {
  const id = selectedRoom;
  try {
    const list = await call('GET', `/rooms/${id}/members`);
    if (id !== selectedRoom) return;
    $('#members tbody').replaceChildren(...list.members.map((m) => {
      const ips = m.nodes.flatMap((n) => n.ips);
      const online = m.nodes.some((n) => n.online);
      // One row per path, named by the peer's address: a member with two
      // nodes is reached twice.
      // path_source "server": the control plane's inference for a member
      // whose client sends no report (the official Tailscale client).
      const links = (m.links || []).map((l) => el('div', { class: 'path', dataset: { peer: l.peer, ip: l.ip || '', source: m.path_source || '' } },
        `${l.peer}${l.ip ? ' (' + l.ip + ')' : ''}: `, el('span', { class: 'pill ' + (l.direct ? 'ok' : 'warn') }, l.direct ? (l.inferred ? 'direct (inferred)' : 'direct') : l.peer_relay ? 'peer relay' : `relayed ${l.relay || ''}`),
        l.rtt_ms ? ` ${l.rtt_ms.toFixed(1)} ms` : ''));
      if (links.length && m.path_source === 'server') links.push(el('div', { class: 'muted path-source' }, 'seen by the server'));
      const noLinks = m.path_source === 'server' ? 'no peer online' : 'no report';
      return el('tr', { dataset: { member: m.username } },
        el('td', {}, m.username, m.host ? el('span', { class: 'pill' }, ' host') : ''),
        el('td', { class: 'code-list' }, ips.length ? ips.join(', ') : el('span', { class: 'muted' }, 'no node')),
        el('td', {}, el('span', { class: 'pill ' + (online ? 'ok' : 'bad') }, online ? 'online' : 'offline')),
        el('td', {}, links.length ? links : el('span', { class: 'muted' }, noLinks)),
        el('td', {}, m.host ? '' : el('button', { type: 'button', class: 'danger kick', 'aria-label': `Kick ${m.username}`, onclick: () => kick(id, m.username) }, 'Kick')));
    }));
  } catch (x) { fail(x); }
}

async function kick(room, username) {
  if (!confirm(`Kick ${username} from this room? They cannot rejoin it.`)) return;
  try { await call('POST', `/rooms/${room}/kick`, { username }); ok(); loadMembers(); loadRooms(); } catch (x) { fail(x); }
}

async function closeRoom() {
  if (!selectedRoom || !confirm('Close this room for everyone?')) return;
  try { await call('DELETE', `/rooms/${selectedRoom}`); ok(); selectRoom(selectedRoom); loadRooms(); } catch (x) { fail(x); }
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
      const muted = u.muted_until && new Date(u.muted_until) > new Date();
      const self = me && u.username === me.username;
      const status = el('td', {}, u.banned ? el('span', { class: 'pill bad', title: u.ban_reason || '' }, u.ban_until ? `banned until ${when(u.ban_until)}` : 'banned') : el('span', { class: 'pill ok' }, 'active'),
        muted ? [' ', el('span', { class: 'pill warn' }, `muted until ${when(u.muted_until)}`)] : '');
      if (self) {
        // Nobody bans, mutes or demotes themselves.
        return el('tr', { dataset: { user: u.username } }, el('td', {}, u.username, ' ', el('span', { class: 'muted small' }, '(you)')),
          el('td', {}, u.role), status, el('td', {}, when(u.created_at)), el('td', {}));
      }
      // Roles are the admins'; a role change takes effect on Save, not
      // on picking it.
      let roleCell = u.role;
      if (isAdmin) {
        const save = el('button', { type: 'button', class: 'secondary save-role', hidden: true, 'aria-label': `Save role of ${u.username}` }, 'Save');
        const role = el('select', { 'aria-label': `Role of ${u.username}`, onchange: (e) => { save.hidden = e.target.value === u.role; } },
          ...['player', 'moderator', 'admin'].map((r) => el('option', { value: r, selected: u.role === r }, r)));
        save.onclick = () => setRole(u.username, role.value);
        roleCell = el('div', { class: 'row' }, role, save);
      }
      const name = el('td', {}, el('a', { href: `#user/${encodeURIComponent(u.username)}`, class: 'profile-link', 'aria-label': `Profile of ${u.username}` }, u.username));
      // Moderators act on players only.
      if (!isAdmin && u.role !== 'player') {
        return el('tr', { dataset: { user: u.username } }, name, el('td', {}, roleCell), status, el('td', {}, when(u.created_at)), el('td', {}));
      }
      return el('tr', { dataset: { user: u.username } }, name, el('td', {}, roleCell),
        status, el('td', {}, when(u.created_at)),
        el('td', {}, el('div', { class: 'actions' },
          u.banned ? el('button', { type: 'button', class: 'secondary', 'aria-label': `Unban ${u.username}`, onclick: () => ban(u.username, false) }, 'Unban')
            : el('button', { type: 'button', class: 'danger ban', 'aria-label': `Ban ${u.username}`, onclick: () => ban(u.username, true) }, 'Ban'),
          muted ? el('button', { type: 'button', class: 'secondary', 'aria-label': `Unmute ${u.username}`, onclick: () => unmute(u.username) }, 'Unmute')
            : el('button', { type: 'button', class: 'secondary mute', 'aria-label': `Mute 1h ${u.username}`, onclick: () => mute(u.username, 3600) }, 'Mute 1h'))));
    });
    if (more) $('#users tbody').append(...rows); else $('#users tbody').replaceChildren(...rows);
  } catch (x) { fail(x); }
}

async function setRole(username, role) {
  try { await call('POST', `/admin/users/${encodeURIComponent(username)}/role`, { role }); ok(); } catch (x) { fail(x); }
  loadUsers();
}

// ban asks for how long and why in a dialog (a ban without either is
// permanent and says nothing to the player); unban asks nothing.
async function ban(username, on, after = loadUsers) {
  if (on) {
    const choice = await askBan(username);
    if (!choice) return;
    const body = choice.reason ? { reason: choice.reason } : {};
    if (choice.seconds > 0) body.seconds = choice.seconds;
    try {
      await call('POST', `/users/${encodeURIComponent(username)}/ban`, body);
      $('#mod-result').textContent = `${username} banned`;
      ok();
    } catch (x) { fail(x); }
  } else {
    try { await call('POST', `/users/${encodeURIComponent(username)}/unban`); ok(); } catch (x) { fail(x); }
  }
  after();
}

// askBan shows the ban dialog and resolves to {seconds, reason}, or null
// when cancelled.
function askBan(username) {
  const d = $('#ban-dialog');
  $('#ban-title').textContent = `Ban ${username}`;
  $('#ban-confirm').setAttribute('aria-label', `Ban ${username}`);
  $('#ban-reason').value = '';
  return new Promise((resolve) => {
    const done = (v) => { d.onclose = null; if (d.open) d.close(); resolve(v); };
    $('#ban-cancel').onclick = () => done(null);
    d.onclose = () => done(null);
    $('#ban-form').onsubmit = (e) => { e.preventDefault(); done({ seconds: Number($('#ban-for').value), reason: $('#ban-reason').value.trim() }); };
    d.showModal();
    $('#ban-reason').focus();
  });
}

async function mute(username, seconds, reason = '', reload = true) {
  if (!username) return;
  try {
    const st = await call('POST', `/admin/users/${encodeURIComponent(username)}/mute`, reason ? { seconds, reason } : { seconds });
    $('#mod-result').textContent = `${st.username} muted until ${when(st.until)}`;
    ok();
  } catch (x) { fail(x.code === 'not_found' ? new Error(`There is no user ${username}.`) : x); }
  if (reload) loadUsers();
}

async function unmute(username, reload = true) {
  try { await call('DELETE', `/admin/users/${encodeURIComponent(username)}/mute`); ok(); } catch (x) { fail(x); }
  if (reload) loadUsers();
}

// ---- profile

let profiled = '';

// because words a reason for a sentence: " because …", or nothing.
const because = (reason) => (reason ? ` because ${reason}` : '');

async function loadProfile(username) {
  profiled = username;
  $('#profile-result').textContent = '';
  try {
    const p = await call('GET', `/admin/users/${encodeURIComponent(username)}`);
    if (username !== profiled) return;
    const u = p.user;
    $('#profile-title').textContent = u.username;
    $('#profile-meta').textContent = `${u.role} · joined ${when(u.created_at)}`;
    const state = [];
    if (p.ban) state.push(el('span', { class: 'pill bad' }, p.ban.until ? `Banned until ${when(p.ban.until)}${because(p.ban.reason)}` : `Banned permanently${because(p.ban.reason)}`));
    else state.push(el('span', { class: 'pill ok' }, 'Not banned'));
    if (p.mute) state.push(' ', el('span', { class: 'pill warn' }, `Muted until ${when(p.mute.until)}${because(p.mute.reason)}`));
    $('#profile-state').replaceChildren(...state);
    // Moderators act on players only; nobody on themselves.
    const self = me && u.username === me.username;
    const may = !self && (isAdmin || u.role === 'player');
    $('#profile-actions').hidden = !may;
    $('#profile-ban').hidden = !!p.ban;
    $('#profile-unban').hidden = !p.ban;
    $('#profile-unmute').hidden = !p.mute;
    $('#profile-mute').hidden = !!p.mute;
    for (const [id, what] of [['#profile-ban', 'Ban'], ['#profile-unban', 'Unban'], ['#profile-unmute', 'Unmute'], ['#profile-purge', 'Delete all messages of']]) $(id).setAttribute('aria-label', `${what} ${u.username}`);
    $('#profile-rooms tbody').replaceChildren(...p.rooms.map((r) => el('tr', { dataset: { room: r.id } },
      el('td', {}, r.name, el('div', { class: 'muted small' }, r.id)), el('td', { 'data-label': 'Host' }, r.host || '—'),
      el('td', { 'data-label': 'Here' }, r.current ? el('span', { class: 'pill ok' }, 'in it now') : r.state === 'kicked' ? el('span', { class: 'pill bad' }, 'kicked') : el('span', { class: 'pill' }, 'left'),
        r.closed_at ? [' ', el('span', { class: 'pill' }, 'closed')] : ''),
      el('td', { 'data-label': 'Joined' }, r.joined_at ? when(r.joined_at) : '—'), el('td', { 'data-label': 'Created' }, when(r.created_at)))));
    $('#profile-no-rooms').hidden = p.rooms.length > 0;
    $('#profile-history tbody').replaceChildren(...p.history.map(auditRow));
    $('#profile-no-history').hidden = p.history.length > 0;
    nameRooms('#profile-history');
  } catch (x) { fail(x.code === 'not_found' ? new Error(`There is no user ${username}.`) : x); }
}

async function purge() {
  const username = profiled;
  if (!confirm(`Delete every chat message ${username} ever wrote? Everyone's clients drop them at once.`)) return;
  let said = '';
  try {
    const r = await call('POST', `/admin/users/${encodeURIComponent(username)}/purge-messages`);
    said = `${r.purged} ${r.purged === 1 ? 'message' : 'messages'} of ${username} deleted.`;
    ok();
  } catch (x) { fail(x); }
  await loadProfile(username);
  $('#profile-result').textContent = said;
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
        // The embedded relay sends no heartbeat: it is this process.
        el('td', { class: 'last-heartbeat' }, r.embedded ? 'none needed (in this process)' : when(r.last_seen)));
    }));
  } catch (x) { fail(x); }
}

// ---- Headscale shards

async function loadShards() {
  try {
    const list = await call('GET', '/admin/shards');
    $('#shards tbody').replaceChildren(...list.shards.map((s) => {
      const p = s.process;
      return el('tr', { dataset: { shard: s.name } },
        el('td', {}, s.name, ' ', el('span', { class: 'pill' }, s.kind)),
        el('td', { class: 'health' }, shardState(s),
          s.down_since ? el('div', { class: 'muted small' }, `down since ${when(s.down_since)}`) : null,
          s.last_error ? el('div', { class: 'muted' }, s.last_error) : null),
        el('td', { class: 'rooms' }, s.rooms),
        el('td', { class: 'nodes' }, `${s.nodes + s.grants} / ${s.node_cap}`, el('div', { class: 'muted' }, `${s.online} online`)),
        el('td', {}, s.version || '—'),
        el('td', { class: 'process' }, p ? `pid ${p.pid} · ${p.cpu_seconds.toFixed(1)} s CPU · ${Math.round(p.rss_bytes / 1048576)} MiB` : '—'),
        el('td', {}, when(s.checked_at)));
    }));
  } catch (x) { fail(x); }
}

// shardState names what a shard is going through: lost (down past the
// grace period: its rooms move away), quarantined (back, not yet
// reconciled: no new rooms), or its last health check.
function shardState(s) {
  if (s.lost) return el('span', { class: 'pill bad state' }, 'lost: rooms moving');
  if (s.quarantined) return el('span', { class: 'pill warn state' }, 'quarantined: reconciling');
  return el('span', { class: 'pill state ' + (s.healthy ? 'ok' : 'bad') }, s.healthy ? 'healthy' : 'not answering');
}

// ---- nodes (admins): every node of every shard

let nodes = [];

async function loadNodes() {
  try {
    const list = await call('GET', '/admin/nodes');
    nodes = list.nodes;
    const down = list.unavailable || [];
    $('#nodes-unavailable').hidden = !down.length;
    $('#nodes-unavailable').textContent = down.map((u) => `Shard ${u.shard} did not answer: ${u.error}`).join(' ');
    renderNodes();
  } catch (x) { fail(x); }
}

const ago = (t) => {
  if (!t) return '—';
  const s = Math.max(0, Math.round((Date.now() - new Date(t)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return when(t);
};

function renderNodes() {
  const q = $('#node-q').value.trim().toLowerCase();
  const state = $('#node-state').value;
  const shown = nodes.filter((n) => {
    if (state === 'online' && !n.online) return false;
    if (state === 'offline' && n.online) return false;
    if (state === 'expired' && !n.expired) return false;
    if (!q) return true;
    return [n.name, n.hostname, n.room_id, n.room_name, n.username, n.shard, ...n.ips, ...n.endpoints, n.relay_source]
      .some((v) => v && String(v).toLowerCase().includes(q));
  });
  // Focus stays on the row's action across redraws (every 5 s).
  const focused = document.activeElement && document.activeElement.closest('#nodes tr') ? document.activeElement : null;
  const focusKey = focused ? [focused.closest('tr').dataset.node, focused.className] : null;
  $('#nodes tbody').replaceChildren(...shown.map((n) => {
    const key = `${n.shard}/${n.id}`;
    const label = n.username ? `${n.username}'s node ${n.name}` : `node ${n.name}`;
    const endpoints = [...n.endpoints.map((e) => el('div', { class: 'endpoint' }, e, el('span', { class: 'muted small' }, ' direct'))),
      n.relay_source ? el('div', { class: 'endpoint' }, n.relay_source, el('span', { class: 'muted small' }, ` via relay, ${ago(n.relay_source_at)}`)) : null].filter(Boolean);
    const status = n.expired ? el('span', { class: 'pill bad' }, 'expired') : el('span', { class: 'pill ' + (n.online ? 'ok' : 'warn') }, n.online ? 'online' : 'offline');
    return el('tr', { dataset: { node: key, shard: n.shard } },
      el('td', {}, n.name, el('div', { class: 'muted small' }, `#${n.id} on ${n.shard}${n.hostname && n.hostname !== n.name ? ' · ' + n.hostname : ''}`)),
      el('td', { class: 'room', 'data-label': 'Room' }, n.room_id ? [n.room_name, el('div', { class: 'muted small' }, n.room_id + (n.room_open ? '' : ' · closed'))] : el('span', { class: 'muted' }, n.headscale_user)),
      el('td', { class: 'user', 'data-label': 'User' }, n.username ? el('a', { href: `#user/${encodeURIComponent(n.username)}` }, n.username) : el('span', { class: 'muted' }, 'unknown')),
      el('td', { class: 'code-list ips', 'data-label': 'Addresses' }, n.ips.join(', ')),
      el('td', { class: 'endpoints', 'data-label': 'Endpoints' }, endpoints.length ? endpoints : el('span', { class: 'muted' }, 'none seen')),
      el('td', { class: 'status', 'data-label': 'Status' }, status, el('div', { class: 'muted small last-seen' }, n.online ? '' : `seen ${ago(n.last_seen)}`)),
      el('td', { class: 'client', 'data-label': 'Client' }, n.client_version || el('span', { class: 'muted', title: "Headscale's API does not report it" }, 'unknown')),
      el('td', { class: 'expiry', 'data-label': 'Key expiry' }, n.expiry ? when(n.expiry) : 'never'),
      el('td', {}, el('div', { class: 'actions' },
        el('button', { type: 'button', class: 'secondary expire', 'aria-label': `Expire ${label}`, disabled: n.expired, onclick: () => actOnNode(n, 'expire') }, 'Expire'),
        el('button', { type: 'button', class: 'danger delete', 'aria-label': `Delete ${label}`, onclick: () => actOnNode(n, 'delete') }, 'Delete'))));
  }));
  $('#nodes-none').hidden = shown.length > 0;
  $('#nodes-count').textContent = `${shown.length} of ${nodes.length} nodes · ${nodes.filter((n) => n.online).length} online`;
  if (focusKey) {
    const b = document.querySelector(`#nodes tr[data-node="${CSS.escape(focusKey[0])}"] button.${focusKey[1].split(' ').pop()}`);
    if (b) b.focus();
  }
}

async function actOnNode(n, action) {
  const who = `${n.name}${n.username ? ` (${n.username}` + (n.room_name ? ` in ${n.room_name})` : ')') : ''}`;
  const question = action === 'expire'
    ? `Expire node ${who}? It stops at once and its roommates drop it; the player may join again.`
    : `Delete node ${who}? It stops at once and is removed from Headscale; the player may join again.`;
  if (!confirm(question)) return;
  try {
    const path = `/admin/nodes/${encodeURIComponent(n.shard)}/${n.id}`;
    if (action === 'expire') await call('POST', path + '/expire'); else await call('DELETE', path);
    ok();
    $('#nodes-count').textContent = `${action === 'expire' ? 'Expired' : 'Deleted'} ${n.name}.`;
    loadNodes();
  } catch (x) { fail(x); }
}

// ---- chat moderation

function startChat() {
  chat = new ChatClient({ lobbies: ['lobby:main'] });
  view = new ChatView($('#chat'), chat, {
    names: { 'lobby:main': 'Lobby' },
    title: document.title,
    moderate: {
      self: me.username,
      delete: async (m) => {
        try { await call('POST', '/admin/chat/delete', { conv: m.conv, seq: m.seq }); ok(); } catch (x) { fail(x); }
      },
      mute: (username) => mute(username, 600),
    },
  });
  view.open('lobby:main');
  chat.addEventListener('disconnected', (e) => { if (e.detail.code === 4012 || e.detail.code === 4001) ended(SESSION_ENDED); });
  chat.start();
  window.roomnetChat = chat;
}

// watch follows a lobby over the chat connection, or a room by reading
// its history over REST (the chat server lets only members join a room):
// the newest page first, then new messages by polling with the cursor.
async function watch(conv) {
  if (!conv) return;
  const res = $('#watch-result');
  stopRoomLog();
  if (conv.startsWith('room:')) { await startRoomLog(conv); return; }
  if (!conv.startsWith('lobby:')) { res.textContent = `Cannot watch ${conv}: enter lobby:<name> or room:<id>.`; return; }
  chat.join(conv);
  res.textContent = `Watching ${conv}.`;
  view.open(conv);
}

const roomLog = { conv: '', after: 0, before: 0, timer: 0, busy: false };

function stopRoomLog() {
  clearInterval(roomLog.timer);
  Object.assign(roomLog, { conv: '', after: 0, before: 0, timer: 0 });
  $('#room-log').hidden = true;
  $('#chat').hidden = false;
}

function logItem(m) {
  const kind = m.kind;
  const body = kind === 'deleted' ? el('span', { class: 'body muted' }, 'message deleted by a moderator')
    : kind === 'tombstone' ? el('span', { class: 'body muted' }, 'never written')
    : el('span', { class: 'body' }, m.body || '');
  return el('li', { class: kind === 'system' ? 'system' : kind, dataset: { seq: m.seq, kind } },
    kind === 'text' || kind === 'deleted' ? el('span', { class: 'from' }, m.sender || `#${m.sender_id}`) : null, body,
    el('span', { class: 'ts' }, when(m.at)),
    kind === 'text' ? el('button', { type: 'button', class: 'secondary delete', 'aria-label': `Delete message ${m.seq} by ${m.sender}`, onclick: () => deleteLogged(m) }, 'Delete') : null);
}

async function deleteLogged(m) {
  try {
    await call('POST', '/admin/chat/delete', { conv: roomLog.conv, seq: m.seq });
    ok();
    const li = document.querySelector(`#room-log-list li[data-seq="${m.seq}"]`);
    if (li) li.replaceWith(logItem({ ...m, kind: 'deleted', body: '' }));
  } catch (x) { fail(x); }
}

function olderButton() {
  return el('li', { class: 'older' }, el('button', { type: 'button', class: 'link', onclick: loadOlderLog }, 'Load older messages'));
}

async function startRoomLog(conv) {
  const res = $('#watch-result');
  try {
    const page = await call('GET', `/admin/chat/history?conv=${encodeURIComponent(conv)}`);
    roomLog.conv = conv;
    roomLog.before = page.next;
    roomLog.after = page.messages.length ? page.messages[0].seq : 0;
    const items = page.messages.slice().reverse().map(logItem);
    $('#room-log-list').replaceChildren(...(page.next ? [olderButton()] : []), ...items);
    $('#room-log-title').textContent = `${page.room_name || conv} (${conv})`;
    $('#chat').hidden = true;
    $('#room-log').hidden = false;
    const list = $('#room-log-list');
    list.scrollTop = list.scrollHeight;
    res.textContent = `Reading ${page.room_name ? `"${page.room_name}"` : conv}: ${page.messages.length ? '' : 'no messages yet; '}new messages appear as they are sent.`;
    roomLog.timer = setInterval(followRoomLog, 2000);
    ok();
  } catch (x) {
    res.textContent = `Cannot read ${conv}: ${readable(x)}`;
  }
}

async function followRoomLog() {
  if (roomLog.busy || !roomLog.conv) return;
  roomLog.busy = true;
  const conv = roomLog.conv;
  try {
    const page = await call('GET', `/admin/chat/history?conv=${encodeURIComponent(conv)}&after=${roomLog.after}`);
    if (conv !== roomLog.conv) return;
    roomLog.after = page.next;
    if (!page.messages.length) return;
    const list = $('#room-log-list');
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
    list.append(...page.messages.map(logItem));
    if (atBottom) list.scrollTop = list.scrollHeight;
  } catch (x) {
    fail(x); // the next poll tries again; a 401 ends the session (call)
  } finally { roomLog.busy = false; }
}

async function loadOlderLog() {
  if (!roomLog.before) return;
  try {
    const page = await call('GET', `/admin/chat/history?conv=${encodeURIComponent(roomLog.conv)}&before=${roomLog.before}`);
    roomLog.before = page.next;
    const list = $('#room-log-list');
    list.querySelector('li.older').remove();
    list.prepend(...(page.next ? [olderButton()] : []), ...page.messages.slice().reverse().map(logItem));
  } catch (x) { fail(x); }
}

async function announce(e) {
  e.preventDefault();
  try {
    await call('POST', '/admin/chat/announce', { conv: $('#announce-conv').value.trim(), text: $('#announce-text').value });
    $('#announce-text').value = '';
    $('#mod-result').textContent = 'announced';
    ok();
  } catch (x) { fail(x); }
}

// ---- audit

let auditNext = 0;

async function loadAudit(more = false) {
  try {
    const list = await call('GET', '/admin/audit' + (more && auditNext ? `?before=${auditNext}` : ''));
    auditNext = list.next || 0;
    $('#audit-more').hidden = !auditNext;
    const rows = list.entries.map(auditRow);
    if (more) $('#audit tbody').append(...rows); else $('#audit tbody').replaceChildren(...rows);
    nameRooms('#audit');
  } catch (x) { fail(x); }
}

// Audit entries about a room name it by its id; the table shows the
// room's name beside it, read once per room (closed rooms too).
const ROOM_ACTIONS = new Set(['kick', 'close_room', 'read_chat', 'join_private']);
const roomNames = new Map(); // room id → name, or a promise of it

// auditRow is one audit entry as a table row.
function auditRow(a) {
  const room = ROOM_ACTIONS.has(a.action) && a.target;
  return el('tr', { dataset: { action: a.action } }, el('td', {}, when(a.at)), el('td', { 'data-label': 'By' }, a.actor),
    el('td', { 'data-label': 'Action' }, a.action), el('td', { class: 'target', 'data-label': 'Target', dataset: room ? { room } : {} }, a.target || ''),
    el('td', { class: 'detail', 'data-label': 'Detail' }, a.detail || ''));
}

async function nameRooms(table) {
  const cells = [...document.querySelectorAll(`${table} td.target[data-room]`)];
  const ids = [...new Set(cells.map((td) => td.dataset.room))].filter((id) => !roomNames.has(id)).slice(0, 50);
  for (const id of ids) roomNames.set(id, call('GET', `/rooms/${encodeURIComponent(id)}`).then((r) => r.name, () => ''));
  for (const td of cells) {
    const name = await roomNames.get(td.dataset.room);
    if (name && td.isConnected) td.textContent = `${name} (${td.dataset.room})`;
  }
}

main().catch(fail);
