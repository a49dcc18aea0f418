// A chat panel over a ChatClient: tabs per conversation (named by the
// room, not its id) with unread badges and the total in the page title,
// the messages of the open one in seq order (each once), pending sends
// shown until acknowledged. Each conversation loads the messages before
// the first one it shows with history once the client has synced (after
// a reload the client resumes from its stored position, so nothing else
// brings them back), and "Load older" pages further back. New messages
// are announced to screen readers (aria-live). With moderate, each
// message gets delete and mute buttons.
import { el, fmtTime } from './api.js';

const shown = (kind) => kind === 'text' || kind === 'system';

export class ChatView {
  constructor(root, client, { moderate = null, names = {}, title = document.title, onError = null } = {}) {
    this.root = root;
    this.client = client;
    this.moderate = moderate;
    this.names = names; // conv → label
    this.title = title;
    this.onError = onError;
    this.lists = new Map(); // conv → <ol>
    this.tabs = new Map();
    this.loaded = new Set(); // convs whose history was asked for since the last sync
    this.synced = false;
    this.active = null;
    this.tabBar = el('div', { class: 'tabs', role: 'group', 'aria-label': 'Conversations' });
    this.listBox = el('div', { class: 'chat-lists' });
    this.input = el('input', { id: 'chat-input', placeholder: 'Say something…', maxlength: 4000, autocomplete: 'off', 'aria-label': 'Message' });
    this.form = el('form', { id: 'chat-form', onsubmit: (e) => { e.preventDefault(); this.sendInput(); } },
      this.input, el('button', { type: 'submit' }, 'Send'));
    this.status = el('span', { class: 'status offline', id: 'chat-status', role: 'status' }, 'connecting…');
    root.append(el('div', { class: 'row chat-head' }, this.tabBar, this.status), this.listBox, this.form);
    client.addEventListener('connected', () => { this.status.textContent = 'online'; this.status.className = 'status online'; });
    client.addEventListener('disconnected', (e) => {
      this.synced = false;
      this.loaded.clear();
      this.status.textContent = e.detail.retry ? 'reconnecting…' : 'signed out'; this.status.className = 'status offline';
    });
    client.addEventListener('synced', () => {
      this.synced = true;
      for (const conv of this.lists.keys()) this.loadHistory(conv);
    });
    client.addEventListener('message', (e) => this.onMessage(e.detail.msg));
    client.addEventListener('sent', (e) => this.onSent(e.detail));
    client.addEventListener('failed', (e) => this.onFailed(e.detail));
    client.addEventListener('deleted', (e) => this.onDeleted(e.detail));
    client.addEventListener('unread', (e) => this.onUnread(e.detail));
    client.addEventListener('removed', (e) => this.onRemoved(e.detail));
    client.addEventListener('connected', () => { for (const p of client.pending.values()) this.showPending(p.conv, p.id, p.body); }, { once: true });
    document.addEventListener('visibilitychange', () => this.readActive());
  }

  label(conv) { return this.names[conv] || (conv.startsWith('room:') ? 'Room' : conv); }

  list(conv) {
    let ol = this.lists.get(conv);
    if (ol) return ol;
    ol = el('ol', { class: 'messages', dataset: { conv }, hidden: true, 'aria-live': 'polite', 'aria-label': `Messages in ${this.label(conv)}`, tabindex: '0' });
    this.lists.set(conv, ol);
    this.listBox.append(ol);
    const badge = el('span', { class: 'badge', hidden: true });
    const name = el('span', { class: 'name' }, this.label(conv));
    const tab = el('button', { type: 'button', dataset: { conv }, 'aria-pressed': 'false', onclick: () => this.open(conv) }, name, ' ', badge);
    tab.badge = badge;
    tab.nameEl = name;
    this.tabs.set(conv, tab);
    this.tabBar.append(tab);
    if (!this.active) this.open(conv);
    if (this.synced) this.loadHistory(conv);
    return ol;
  }

  // setName names a conversation's tab (a room's name for room:<id>).
  setName(conv, name) {
    this.names[conv] = name;
    const tab = this.tabs.get(conv);
    if (tab && tab.nameEl.textContent !== name) tab.nameEl.textContent = name;
    const ol = this.lists.get(conv);
    if (ol) ol.setAttribute('aria-label', `Messages in ${name}`);
  }

  open(conv) {
    this.list(conv);
    this.active = conv;
    for (const [c, ol] of this.lists) ol.hidden = c !== conv;
    for (const [c, t] of this.tabs) { t.classList.toggle('active', c === conv); t.setAttribute('aria-pressed', String(c === conv)); }
    this.readActive();
  }

  readActive() {
    if (this.active && document.visibilityState === 'visible') this.client.markRead(this.active);
  }

  // loadHistory fetches, once per sync, the page before the first
  // message shown (the newest page when none is).
  loadHistory(conv) {
    if (this.loaded.has(conv) || conv.startsWith('room:') && this.client.convs.get(conv)?.removed) return;
    this.loaded.add(conv);
    this.older(conv);
  }

  async older(conv) {
    const ol = this.list(conv);
    const first = ol.querySelector('li.msg');
    const before = first ? Number(first.dataset.seq) : 0;
    if (first && before <= 1) { this.moreButton(ol, conv, false); return; }
    const page = await this.client.history(conv, before, 50);
    if (!page) { this.loaded.delete(conv); return; } // not (yet) allowed: again after the next sync
    const atBottom = ol.scrollHeight - ol.scrollTop - ol.clientHeight < 40;
    for (const m of page.messages || []) if (shown(m.kind)) this.place(ol, m);
    this.moreButton(ol, conv, !!page.has_more);
    if (atBottom) ol.scrollTop = ol.scrollHeight;
  }

  moreButton(ol, conv, more) {
    let li = ol.querySelector('li.older');
    if (!more) { if (li) li.remove(); return; }
    if (!li) {
      li = el('li', { class: 'older' }, el('button', { type: 'button', class: 'link', onclick: () => this.older(conv) }, 'Load older messages'));
      ol.prepend(li);
    }
  }

  row(m) {
    const li = el('li', { class: 'msg' + (m.kind === 'system' ? ' system' : ''), dataset: { conv: m.conv, seq: m.seq, id: m.client_msg_id || '', from: m.from || '', body: m.body } },
      m.from ? el('span', { class: 'from' }, m.from) : null, el('span', { class: 'body' }, m.body), el('span', { class: 'ts' }, fmtTime(m.ts)));
    if (this.moderate && m.kind === 'text') {
      li.append(el('button', { type: 'button', class: 'danger', title: 'delete for everyone', 'aria-label': `Delete ${m.from || 'this'}'s message`, dataset: { action: 'delete' }, onclick: () => this.moderate.delete(m) }, 'delete'));
      if (m.from && m.from !== this.moderate.self) li.append(el('button', { type: 'button', class: 'secondary', title: 'mute the sender', 'aria-label': `Mute ${m.from}`, dataset: { action: 'mute' }, onclick: () => this.moderate.mute(m.from) }, 'mute'));
    }
    return li;
  }

  // place puts a message in seq order among those shown, once; sends
  // still waiting stay last.
  place(ol, m) {
    if (ol.querySelector(`li.msg[data-seq="${m.seq}"]`)) return false;
    const li = this.row(m);
    const msgs = ol.querySelectorAll('li.msg');
    const last = msgs[msgs.length - 1];
    if (!last || Number(last.dataset.seq) < m.seq) {
      ol.insertBefore(li, ol.querySelector('li.pending, li.failed'));
      return true;
    }
    for (const x of msgs) {
      if (Number(x.dataset.seq) > m.seq) { ol.insertBefore(li, x); return true; }
    }
    return true;
  }

  onMessage(m) {
    const ol = this.list(m.conv);
    const mine = m.client_msg_id && ol.querySelector(`li.pending[data-id="${CSS.escape(m.client_msg_id)}"]`);
    if (mine) mine.remove();
    this.place(ol, m);
    if (m.conv === this.active) { ol.scrollTop = ol.scrollHeight; this.readActive(); }
  }

  showPending(conv, id, body) {
    const ol = this.list(conv);
    if (ol.querySelector(`li[data-id="${CSS.escape(id)}"]`)) return;
    ol.append(el('li', { class: 'pending', dataset: { conv, id, body } }, el('span', { class: 'from' }, this.client.user || 'me'), el('span', { class: 'body' }, body), el('span', { class: 'ts' }, 'sending…')));
    ol.scrollTop = ol.scrollHeight;
  }

  onSent(d) {
    const li = this.list(d.conv).querySelector(`li.pending[data-id="${CSS.escape(d.id)}"]`);
    if (li) { li.querySelector('.ts').textContent = 'sent'; li.dataset.seq = d.seq; }
  }

  onFailed(d) {
    const li = this.list(d.conv).querySelector(`li.pending[data-id="${CSS.escape(d.id)}"]`);
    if (!li) return;
    li.className = 'failed';
    li.querySelector('.ts').textContent = d.code === 'muted' ? 'not sent: you are muted' : 'not sent';
  }

  onDeleted(d) {
    const li = this.list(d.conv).querySelector(`li.msg[data-seq="${d.seq}"]`);
    if (li) li.remove();
  }

  onUnread(d) {
    this.list(d.conv);
    const tab = this.tabs.get(d.conv);
    const n = d.conv === this.active && document.visibilityState === 'visible' ? 0 : d.unread;
    tab.badge.replaceChildren(String(n), el('span', { class: 'sr-only' }, ' unread'));
    tab.badge.hidden = n === 0;
    tab.dataset.unread = n;
    let total = 0;
    for (const t of this.tabs.values()) total += Number(t.dataset.unread || 0);
    document.title = total ? `(${total}) ${this.title}` : this.title;
  }

  onRemoved(d) {
    if (!d.conv.startsWith('room:')) return;
    const ol = this.lists.get(d.conv);
    if (ol) ol.append(el('li', { class: 'system' }, `you left this room (${d.reason})`));
  }

  sendInput() {
    const body = this.input.value.trim();
    if (!body || !this.active) return;
    this.input.value = '';
    const id = this.client.send(this.active, body);
    this.showPending(this.active, id, body);
  }
}
