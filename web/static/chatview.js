// A chat panel over a ChatClient: tabs per conversation with unread
// badges, the messages of the open one in seq order (each once), pending
// sends shown until acknowledged. With moderate, each message gets
// delete and mute buttons.
import { el, fmtTime } from './api.js';

export class ChatView {
  constructor(root, client, { moderate = null, names = {} } = {}) {
    this.root = root;
    this.client = client;
    this.moderate = moderate;
    this.names = names; // conv → label
    this.lists = new Map(); // conv → <ol>
    this.tabs = new Map();
    this.active = null;
    this.tabBar = el('div', { class: 'tabs' });
    this.listBox = el('div', { style: 'flex:1; display:flex; min-height:0' });
    this.input = el('input', { id: 'chat-input', placeholder: 'Say something…', maxlength: 4000, autocomplete: 'off' });
    this.form = el('form', { id: 'chat-form', onsubmit: (e) => { e.preventDefault(); this.sendInput(); } },
      this.input, el('button', { type: 'submit' }, 'Send'));
    this.status = el('span', { class: 'status offline', id: 'chat-status' }, 'connecting…');
    root.append(el('div', { class: 'row', style: 'justify-content:space-between' }, this.tabBar, this.status), this.listBox, this.form);
    client.addEventListener('connected', () => { this.status.textContent = 'online'; this.status.className = 'status online'; });
    client.addEventListener('disconnected', (e) => {
      this.status.textContent = e.detail.retry ? 'reconnecting…' : 'signed out'; this.status.className = 'status offline';
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

  list(conv) {
    let ol = this.lists.get(conv);
    if (ol) return ol;
    ol = el('ol', { class: 'messages', dataset: { conv }, hidden: true });
    this.lists.set(conv, ol);
    this.listBox.append(ol);
    const badge = el('span', { class: 'badge', hidden: true });
    const tab = el('button', { type: 'button', dataset: { conv }, onclick: () => this.open(conv) }, this.names[conv] || conv, ' ', badge);
    tab.badge = badge;
    this.tabs.set(conv, tab);
    this.tabBar.append(tab);
    if (!this.active) this.open(conv);
    return ol;
  }

  open(conv) {
    this.list(conv);
    this.active = conv;
    for (const [c, ol] of this.lists) ol.hidden = c !== conv;
    for (const [c, t] of this.tabs) t.classList.toggle('active', c === conv);
    this.readActive();
  }

  readActive() {
    if (this.active && document.visibilityState === 'visible') this.client.markRead(this.active);
  }

  row(m) {
    const li = el('li', { class: 'msg' + (m.kind === 'system' ? ' system' : ''), dataset: { conv: m.conv, seq: m.seq, id: m.client_msg_id || '', from: m.from || '', body: m.body } },
      m.from ? el('span', { class: 'from' }, m.from) : null, el('span', { class: 'body' }, m.body), el('span', { class: 'ts' }, fmtTime(m.ts)));
    if (this.moderate && m.kind === 'text') {
      li.append(el('button', { type: 'button', class: 'danger', title: 'delete for everyone', dataset: { action: 'delete' }, onclick: () => this.moderate.delete(m) }, 'delete'));
      if (m.from) li.append(el('button', { type: 'button', class: 'secondary', title: 'mute the sender', dataset: { action: 'mute' }, onclick: () => this.moderate.mute(m.from) }, 'mute'));
    }
    return li;
  }

  onMessage(m) {
    const ol = this.list(m.conv);
    const mine = m.client_msg_id && ol.querySelector(`li.pending[data-id="${CSS.escape(m.client_msg_id)}"]`);
    if (mine) mine.remove();
    // Released in seq order: it goes after the last acknowledged one,
    // before the sends still waiting.
    const firstPending = ol.querySelector('li.pending, li.failed');
    ol.insertBefore(this.row(m), firstPending);
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
    tab.badge.textContent = n;
    tab.badge.hidden = n === 0;
    tab.dataset.unread = n;
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
