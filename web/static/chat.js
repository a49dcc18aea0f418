// roomnet chat protocol v1 for browsers (docs/protocol.md): the same
// guarantees as the Go SDK (chat/chatclient). Sends carry a client message
// id, are kept (in localStorage, so a reload or a server restart loses
// nothing) until the server's `sent` ack, and are retried with jittered
// exponential backoff. Flow control as in the Go SDK: sends leave in
// order, at most `window` (32) unacknowledged at a time, paced by token
// buckets within the frame budget and send rate the server announces in
// hello (80 % of the rate, half the burst; every frame counts against the
// frame budget); a `rate_limited` answer pauses sending for its
// `retry_after_ms` and is not a failure; after a reconnect the queue
// resumes at the paced rate. A message fails only on an error the user can
// act on (too_large, muted, forbidden…) or after `sendTimeout` (2 min) of
// waiting unacknowledged in the window while connected (code `timeout`),
// never after a count of attempts. Received messages are deduplicated and released in
// seq order per conversation, with gaps filled by a pull; unread counts
// come from sync; the heartbeat interval adapts to the measured RTT; a
// lobby in storm mode is followed by coalesced, compressed pulls.
//
// Events (CustomEvent detail): connected, disconnected {code, retry},
// message {msg}, sent {conv, seq, id}, failed {conv, id, body, code, message},
// deleted {conv, seq}, removed {conv, reason}, unread {conv, unread}, synced.

const V = 1;
const NO_RETRY = new Set([4001, 4002, 4012]);
const CODEC_DEFLATE = 2;
const MAX_PAGE_BYTES = 4 << 20;

export const Backoff = { initial: 500, factor: 2, max: 8000, jitter: 0.2 };

// Pacing margins below the announced budgets (the Go SDK's).
const PACE_RATE = 0.8;
const PACE_BURST = 0.5;
const ACK_EVERY = 200; // ms between acks: they are cumulative

// Bucket is a token bucket: rate tokens a second, at most burst.
export class Bucket {
  constructor(rate, burst) {
    this.rate = rate;
    this.burst = Math.max(1, burst);
    this.tokens = this.burst;
    this.last = Date.now();
  }

  refill(now) {
    this.tokens = Math.min(this.burst, this.tokens + (now - this.last) * this.rate / 1000);
    this.last = now;
  }

  // has reports whether a token is there now.
  has(now) { this.refill(now); return this.tokens >= 1; }

  // take takes a token even when there is none: the frames after it wait.
  take(now) { this.refill(now); this.tokens--; }

  // wait is how long until a token is there (ms).
  wait(now) { this.refill(now); return this.tokens >= 1 ? 0 : (1 - this.tokens) * 1000 / this.rate; }
}

// budgets returns the frame and send buckets for a hello (the protocol's
// defaults where it says nothing).
function budgets(h = {}) {
  const fps = h.frames_per_sec > 0 ? h.frames_per_sec : 50;
  const fburst = h.frames_per_sec > 0 ? (h.frames_burst || 1) : 100;
  const sps = h.send_per_sec > 0 ? h.send_per_sec : 10;
  const sburst = h.send_per_sec > 0 ? (h.send_burst || 1) : 20;
  return {
    frames: new Bucket(fps * PACE_RATE, Math.floor(fburst * PACE_BURST)),
    sends: new Bucket(sps * PACE_RATE, Math.floor(sburst * PACE_BURST)),
  };
}

// delay is the wait before attempt n+1 (n ≥ 1): min(initial·factor^(n−1), max)·(1 ± jitter).
export function delay(n, b = Backoff, rand = Math.random) {
  const base = Math.min(b.initial * Math.pow(b.factor, Math.max(n - 1, 0)), b.max);
  return base * (1 + b.jitter * (2 * rand() - 1));
}

// interval is the heartbeat interval for a smoothed RTT and its variance (ms).
export function interval(srtt, rttvar) {
  const v = 30000 / (1 + (srtt + 4 * rttvar) / 250);
  return Math.min(Math.max(v, 5000), 30000);
}

const hidden = (kind) => kind === 'tombstone' || kind === 'deleted';

// Conv is one conversation's ordering state: pos is the highest seq
// released with nothing missing below (null: not known yet; only the
// server sets it), buf holds later seqs until the gap closes.
class Conv {
  constructor(id) {
    this.id = id;
    this.pos = null;
    this.buf = new Map();
    this.gapSince = 0;
    this.fetching = 0;
    this.maxSeq = 0;
    this.readSeq = 0;
    this.unread = 0;
    this.acked = 0;
    this.deleted = new Set();
    this.removed = false;
    this.duplicates = 0;
    this.urgent = false; // a critical message arrived past a gap
  }
}

export class ChatClient extends EventTarget {
  constructor(opts = {}) {
    super();
    this.url = opts.url || `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    this.backoff = { ...Backoff, ...(opts.backoff || {}) };
    this.gapTimeout = opts.gapTimeout ?? 300;
    this.backfill = opts.backfill ?? 50;
    this.pullLimit = opts.pullLimit ?? 1000;
    this.storage = opts.storage ?? window.localStorage;
    this.convs = new Map();
    this.lobbies = new Set(opts.lobbies || []);
    this.pending = new Map(); // client_msg_id → {conv, id, body, tries, due, sent, waited}, in send order
    this.window = opts.window ?? 32;
    this.sendTimeout = opts.sendTimeout ?? 120000;
    ({ frames: this.frames, sends: this.sends } = budgets());
    this.hold = 0; // no sends before (ms), after rate_limited
    this.holds = 0; // rate_limited answers in a row
    this.lastTick = Date.now();
    this.waiters = new Map(); // ref → resolve
    this.ws = null;
    this.user = null;
    this.userId = 0;
    this.srtt = 0;
    this.rttvar = 0;
    this.interval = 30000;
    this.lastPing = 0;
    this.reconnects = 0;
    this.closed = false;
    this.syncing = 0; // when the last sync went out, until its answer
    this.resyncTimer = 0;
    this.ackTimer = 0;
    this.saveTimer = 0;
    this.pumpTimer = 0;
    this.stats = { duplicates: 0, pulls: 0, notifies: 0, resends: 0, binaryPages: 0, rateLimited: 0 };
    this.ticker = setInterval(() => this.tick(), 50);
  }

  emit(type, detail = {}) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  conv(id) {
    let c = this.convs.get(id);
    if (!c) { c = new Conv(id); this.convs.set(id, c); }
    return c;
  }

  get connected() { return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.user !== null; }

  start() { this.connect(); return this; }

  close() {
    this.closed = true;
    clearInterval(this.ticker);
    clearTimeout(this.resyncTimer);
    clearTimeout(this.pumpTimer);
    this.save();
    if (this.ws) this.ws.close(1000);
  }

  connect() {
    if (this.closed) return;
    const ws = new WebSocket(this.url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onmessage = (ev) => this.onData(ev.data);
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.user = null;
      for (const c of this.convs.values()) c.fetching = 0;
      const retry = !NO_RETRY.has(ev.code);
      this.emit('disconnected', { code: ev.code, retry });
      if (retry && !this.closed) {
        this.reconnects++;
        setTimeout(() => this.connect(), delay(Math.min(this.reconnects, 5), this.backoff));
      }
    };
  }

  // write sends a frame now, counted in the frame budget (the sends
  // after it wait for the token it took).
  write(frame) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.frames.take(Date.now());
    this.ws.send(JSON.stringify({ v: V, ...frame }));
    return true;
  }

  async onData(data) {
    let text = data;
    if (data instanceof ArrayBuffer) {
      try { text = await inflate(data); } catch (e) { return; }
      this.stats.binaryPages++;
    }
    let f;
    try { f = JSON.parse(text); } catch (e) { return; }
    this.handle(f);
  }

  handle(f) {
    switch (f.type) {
      case 'hello': return this.onHello(f.hello);
      case 'synced': return this.onSynced(f);
      case 'msg': return this.push([f.msg]);
      case 'page': return this.onPage(f);
      case 'sent': return this.onSent(f);
      case 'notify': return this.onNotify(f);
      case 'deleted': return this.onDeleted(f);
      case 'joined': return this.onJoined(f);
      case 'removed': {
        const c = this.conv(f.conv);
        c.removed = true;
        this.answer(f);
        return this.emit('removed', { conv: f.conv, reason: f.reason });
      }
      case 'pong': return this.onPong(f);
      case 'error': return this.onError(f);
    }
  }

  answer(f) {
    const w = f.ref && this.waiters.get(f.ref);
    if (w) { this.waiters.delete(f.ref); w(f); return true; }
    return false;
  }

  request(frame) {
    const ref = frame.ref || ('r' + Math.random().toString(36).slice(2));
    return new Promise((resolve) => {
      this.waiters.set(ref, resolve);
      if (!this.write({ ...frame, ref })) { this.waiters.delete(ref); resolve(null); }
    });
  }

  storeKey() { return `roomnet.chat.v1.${this.userId}`; }

  load() {
    try {
      const s = JSON.parse(this.storage.getItem(this.storeKey()) || '{}');
      for (const [conv, pos] of Object.entries(s.positions || {})) {
        const c = this.conv(conv);
        if (c.pos === null || pos > c.pos) c.pos = pos;
      }
      for (const p of s.pending || []) {
        if (!this.pending.has(p.id)) this.pending.set(p.id, { conv: p.conv, id: p.id, body: p.body, tries: p.tries || 0, due: 0, sent: false, waited: 0 });
      }
      for (const l of s.lobbies || []) this.lobbies.add(l);
    } catch (e) { /* a corrupt entry is dropped */ }
  }

  save() {
    if (!this.userId) return;
    const positions = {};
    for (const c of this.convs.values()) if (c.pos !== null && !c.removed) positions[c.id] = c.pos;
    const pending = [...this.pending.values()].map(({ conv, id, body, tries }) => ({ conv, id, body, tries }));
    try {
      this.storage.setItem(this.storeKey(), JSON.stringify({ positions, pending, lobbies: [...this.lobbies] }));
    } catch (e) { /* storage full: the server still has everything */ }
  }

  saveSoon() {
    if (!this.saveTimer) this.saveTimer = setTimeout(() => { this.saveTimer = 0; this.save(); }, 200);
  }

  onHello(h) {
    const first = this.userId === 0;
    this.user = h.user;
    this.userId = h.user_id;
    this.reconnects = 0;
    if (first) this.load();
    // A new session: its own frame budget; every unanswered message is
    // sent again, in order, at the paced rate.
    const b = budgets(h);
    this.frames = b.frames;
    if (first) this.sends = b.sends; // the user's send rate outlives a session: kept after
    else { this.sends.rate = b.sends.rate; this.sends.burst = b.sends.burst; }
    this.hold = 0;
    this.holds = 0;
    for (const p of this.pending.values()) p.sent = false;
    for (const cs of h.convs || []) {
      const c = this.conv(cs.conv);
      c.removed = false;
      c.maxSeq = Math.max(c.maxSeq, cs.max_seq);
      if (c.pos === null) c.pos = Math.max(0, cs.max_seq - this.backfill);
    }
    this.emit('connected', { user: h.user });
    // The server handles a connection's frames in order: lobbies first,
    // then the sync, then the resends that need them.
    for (const l of this.lobbies) this.write({ type: 'join', conv: l, ref: 'join:' + l });
    const positions = {};
    for (const c of this.convs.values()) if (c.pos !== null && !c.removed) positions[c.id] = c.pos;
    this.write({ type: 'sync', positions });
    this.syncing = Date.now();
    this.pump();
  }

  // resync asks the server for the user's conversations again: a room
  // joined through the API mid-session is subscribed without a word, so
  // its position (and what was said before) comes from a sync.
  resync() {
    if (!this.connected) return;
    const positions = {};
    for (const c of this.convs.values()) if (c.pos !== null && !c.removed) positions[c.id] = c.pos;
    if (this.write({ type: 'sync', positions })) this.syncing = Date.now();
  }

  // resyncSoon syncs once for a burst of messages without a position:
  // at once, or half a second after a sync still unanswered (it may have
  // crossed the subscription).
  resyncSoon() {
    if (this.resyncTimer) return;
    this.resyncTimer = setTimeout(() => { this.resyncTimer = 0; this.resync(); }, this.syncing ? 500 : 0);
  }

  onSynced(f) {
    this.syncing = 0;
    for (const cs of f.convs || []) {
      const c = this.conv(cs.conv);
      c.removed = false;
      c.maxSeq = Math.max(c.maxSeq, cs.max_seq);
      c.readSeq = Math.max(c.readSeq, cs.read_seq);
      if (c.pos === null) c.pos = Math.max(0, cs.max_seq - this.backfill);
      c.unread = Math.max(0, c.maxSeq - Math.max(c.readSeq, 0));
      this.emit('unread', { conv: c.id, unread: c.unread });
      this.push(cs.messages || [], true);
      if (c.maxSeq > c.pos) this.pull(c.id);
    }
    for (const c of this.convs.values()) if (c.pos === null && c.buf.size > 0) { this.resyncSoon(); break; }
    this.emit('synced');
  }

  onJoined(f) {
    this.answer(f);
    const c = this.conv(f.conv);
    c.removed = false;
    c.maxSeq = Math.max(c.maxSeq, f.seq || 0);
    if (c.pos === null) c.pos = Math.max(0, (f.seq || 0) - this.backfill);
    if (c.maxSeq > c.pos) this.pull(c.id);
  }

  // push takes messages in any order and releases them in seq order, once.
  push(msgs, fromSync = false) {
    const now = Date.now();
    const touched = new Set();
    for (const m of msgs) {
      if (!m) continue;
      const c = this.conv(m.conv);
      c.maxSeq = Math.max(c.maxSeq, m.seq);
      if (c.pos === null) { c.buf.set(m.seq, m); this.resyncSoon(); continue; } // position comes from the server
      if (m.seq <= c.pos || c.buf.has(m.seq)) { c.duplicates++; this.stats.duplicates++; continue; }
      c.buf.set(m.seq, m);
      touched.add(c);
      if (m.critical) c.urgent = true;
    }
    for (const c of touched) {
      this.release(c, now, fromSync);
      // A critical message pushed past a gap (a storm's messages are
      // pulled) is shown in order: fill the gap now, not after the timeout.
      if (c.urgent && c.buf.size > 0) this.pull(c.id);
      c.urgent = false;
    }
  }

  release(c, now, fromSync) {
    let advanced = false;
    while (c.buf.has(c.pos + 1)) {
      const m = c.buf.get(c.pos + 1);
      c.buf.delete(c.pos + 1);
      c.pos++;
      advanced = true;
      if (c.deleted.has(m.seq)) { c.deleted.delete(m.seq); continue; }
      if (hidden(m.kind)) continue;
      if (!fromSync && m.seq > c.readSeq && m.from !== this.user) {
        c.unread++;
        this.emit('unread', { conv: c.id, unread: c.unread });
      }
      this.emit('message', { msg: m });
    }
    c.gapSince = c.buf.size === 0 ? 0 : (c.gapSince || now);
    if (advanced) { this.ackSoon(); this.saveSoon(); }
  }

  onPage(f) {
    if (this.answer(f)) return;
    const c = this.conv(f.conv);
    c.fetching = 0;
    const before = c.pos;
    this.push(f.messages || []);
    // Pages start at a block boundary and may hold only what we have:
    // ask again straight away only while asking gets us further.
    if (c.pos > before && (f.has_more || c.maxSeq > c.pos)) this.pull(c.id);
  }

  // pull fetches what follows the contiguous position; one pull per
  // conversation is in flight, so notifies coalesce into it.
  pull(conv) {
    const c = this.conv(conv);
    if (c.pos === null || c.removed) return;
    if (c.fetching && Date.now() - c.fetching < 5000) return;
    if (!this.write({ type: 'pull', conv, after: c.pos, limit: this.pullLimit, codec: 'deflate' })) return;
    c.fetching = Date.now();
    this.stats.pulls++;
  }

  onNotify(f) {
    this.stats.notifies++;
    const c = this.conv(f.conv);
    c.maxSeq = Math.max(c.maxSeq, f.seq);
    if (c.pos !== null && f.seq > c.pos) this.pull(f.conv);
  }

  onDeleted(f) {
    const c = this.conv(f.conv);
    if (c.pos !== null && f.seq <= c.pos) this.emit('deleted', { conv: f.conv, seq: f.seq });
    else c.deleted.add(f.seq); // overtook its message on the priority lane
  }

  onSent(f) {
    const p = this.pending.get(f.ref);
    if (!p) return;
    this.pending.delete(f.ref);
    this.holds = 0;
    this.saveSoon();
    this.pump(); // the window moved
    const c = this.conv(f.conv);
    c.maxSeq = Math.max(c.maxSeq, f.seq);
    this.emit('sent', { conv: f.conv, seq: f.seq, id: f.ref, ts: f.ts });
  }

  onError(f) {
    const code = f.error && f.error.code;
    const after = (f.error && f.error.retry_after_ms) || 0;
    const now = Date.now();
    if (code === 'rate_limited' && (after > 0 || (f.ref && this.pending.has(f.ref)))) {
      // A frame refused over a budget (those answers carry a hint; the cap
      // on pull answers waiting does not) pauses sending: for the hint, or
      // the backoff of the refusals in a row without one.
      this.stats.rateLimited++;
      this.holds++;
      this.hold = Math.max(this.hold, now + (after || delay(this.holds, this.backoff)));
    }
    if (this.answer(f)) return;
    const p = f.ref && this.pending.get(f.ref);
    if (!p) return;
    if (code === 'rate_limited' || code === 'unavailable') {
      // Not a failed attempt: sent again once the hint or backoff is over.
      p.sent = true;
      p.due = now + (after || delay(Math.max(p.tries, 1), this.backoff));
      return;
    }
    this.pending.delete(p.id);
    this.saveSoon();
    this.emit('failed', { conv: p.conv, id: p.id, body: p.body, code, message: f.error && f.error.message, until: f.until });
  }

  onPong(f) {
    if (!f.ts) return;
    const sample = Math.max(Date.now() - f.ts, 0);
    if (this.srtt === 0) { this.srtt = sample; this.rttvar = sample / 2; }
    else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - sample);
      this.srtt = 0.875 * this.srtt + 0.125 * sample;
    }
    this.interval = interval(this.srtt, this.rttvar);
  }

  // send queues a message and returns its client message id; it leaves
  // in order within the window and budgets, and is retried until
  // acknowledged or failed (see the top of this file).
  send(conv, body) {
    const id = (crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random().toString(36).slice(2));
    const p = { conv, id, body, tries: 0, due: 0, sent: false, waited: 0 };
    this.pending.set(id, p);
    this.save(); // before the first byte leaves: a reload must not lose it
    this.pump();
    return id;
  }

  // queued is how many messages are neither acknowledged nor failed.
  get queued() { return this.pending.size; }

  // pump sends what may leave now: the first `window` unanswered
  // messages that are unsent on this session or due for a resend, in
  // order, while both buckets hold a token.
  pump() {
    if (!this.connected) return;
    const now = Date.now();
    if (now < this.hold) return;
    let n = 0;
    for (const p of this.pending.values()) {
      if (++n > this.window) break;
      if (p.sent && now < p.due) continue;
      if (!this.frames.has(now) || !this.sends.has(now)) {
        clearTimeout(this.pumpTimer);
        this.pumpTimer = setTimeout(() => this.pump(), Math.max(this.frames.wait(now), this.sends.wait(now), 1));
        break;
      }
      this.sends.take(now);
      if (!this.write({ type: 'send', conv: p.conv, client_msg_id: p.id, body: p.body })) break;
      p.tries++;
      if (p.tries > 1) this.stats.resends++;
      p.sent = true;
      p.due = now + delay(p.tries, this.backoff);
    }
  }

  join(lobby) {
    this.lobbies.add(lobby);
    this.save();
    if (this.connected) this.write({ type: 'join', conv: lobby, ref: 'join:' + lobby });
  }

  leave(lobby) {
    this.lobbies.delete(lobby);
    this.save();
    this.write({ type: 'leave', conv: lobby, ref: 'leave:' + lobby });
  }

  markRead(conv) {
    const c = this.conv(conv);
    if (c.pos === null) return;
    if (c.pos > c.readSeq) {
      c.readSeq = c.pos;
      this.write({ type: 'read', conv, seq: c.pos });
    }
    if (c.unread !== 0) { c.unread = 0; this.emit('unread', { conv, unread: 0 }); }
  }

  // history pages backwards from before (0: the newest); not ordered
  // delivery, for "load older".
  async history(conv, before, limit = 50) {
    const f = await this.request({ type: 'history', conv, before, limit });
    return f && f.type === 'page' ? f : null;
  }

  // ackSoon acknowledges positions at most every ACK_EVERY, and only
  // with a frame token to spare (acks are cumulative: a later one says it).
  ackSoon() {
    if (this.ackTimer) return;
    this.ackTimer = setTimeout(() => {
      this.ackTimer = 0;
      let again = false;
      for (const c of this.convs.values()) {
        if (c.pos === null || c.pos <= c.acked) continue;
        if (!this.frames.has(Date.now())) { again = true; continue; }
        if (this.write({ type: 'ack', conv: c.id, seq: c.pos })) c.acked = c.pos;
      }
      if (again) this.ackSoon();
    }, ACK_EVERY);
  }

  tick() {
    const now = Date.now();
    const dt = now - this.lastTick;
    this.lastTick = now;
    if (!this.connected) return;
    // The sendTimeout clock runs for messages in the window, sent and
    // unanswered, while connected and not paused.
    let n = 0;
    for (const p of [...this.pending.values()]) {
      if (++n > this.window) break;
      if (!p.sent || now < this.hold) continue;
      p.waited += dt;
      if (p.waited >= this.sendTimeout) {
        this.pending.delete(p.id);
        this.saveSoon();
        this.emit('failed', { conv: p.conv, id: p.id, body: p.body, code: 'timeout', message: 'not acknowledged' });
      }
    }
    this.pump();
    for (const c of this.convs.values()) {
      if (c.gapSince && now - c.gapSince > this.gapTimeout) this.pull(c.id);
    }
    if (now - this.lastPing >= this.interval) {
      this.lastPing = now;
      this.write({ type: 'ping', ts: now, rtt_ms: Math.round(this.srtt), interval_ms: Math.round(this.interval) });
    }
  }
}

// inflate decodes a binary page: one codec byte, then raw deflate.
async function inflate(buf) {
  const bytes = new Uint8Array(buf);
  if (bytes[0] !== CODEC_DEFLATE) throw new Error('unknown codec ' + bytes[0]);
  const stream = new Blob([bytes.subarray(1)]).stream().pipeThrough(new DecompressionStream('deflate-raw'));
  const reader = stream.getReader();
  const chunks = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > MAX_PAGE_BYTES) { reader.cancel(); throw new Error('page too large'); }
    chunks.push(value);
  }
  return new TextDecoder().decode(await new Blob(chunks).arrayBuffer());
}
