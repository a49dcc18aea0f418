// A launcher's view of roomnet, in plain Node.js (20+, no dependencies),
// written from docs/api.md and docs/protocol.md alone: two players
// register, one creates a private room, the other joins it by invite,
// both connect to chat, send with client_msg_id, receive acks and each
// other's messages in order, and read the history back by cursor.
//
//   node --experimental-websocket client.mjs http://127.0.0.1:8080
//
// (Node 22+ has WebSocket without the flag.) It prints what it does and
// exits 0 when every step behaved as documented, 1 otherwise.

import { randomUUID } from "node:crypto";

const base = (process.argv[2] || process.env.ROOMNET_URL || "http://127.0.0.1:8080").replace(/\/$/, "");
const api = base + "/api/v1";
const TIMEOUT_MS = Number(process.env.ROOMNET_TIMEOUT_MS || 30_000);

function log(...args) {
  console.log(...args);
}

function check(ok, what) {
  if (!ok) throw new Error("check failed: " + what);
}

// --- REST (docs/api.md) ---------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super(`HTTP ${status} ${body?.error?.code}: ${body?.error?.message}`);
    this.status = status;
    this.code = body?.error?.code; // branch on the code, not the message
  }
}

async function call(method, path, { token, body } = {}) {
  const headers = {};
  if (token) headers["Authorization"] = "Bearer " + token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(api + path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (err) {
    throw new Error(`${method} ${path}: ${err.message}`);
  }
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

async function player(name) {
  const password = "password-" + name;
  await call("POST", "/auth/register", { body: { username: name, password } });
  const { token, user } = await call("POST", "/auth/login", { body: { username: name, password } });
  log(`${name}: registered and logged in as user ${user.id}`);
  return { name, token };
}

// --- Chat (docs/protocol.md) ----------------------------------------------

// Chat is one WebSocket session. Frames that arrive are kept in order in
// an inbox until a caller takes them with next().
class Chat {
  static async connect(name, token) {
    const ws = new WebSocket(base.replace(/^http/, "ws") + "/ws");
    const chat = new Chat(name, ws);
    await new Promise((resolve, reject) => {
      ws.addEventListener("open", resolve, { once: true });
      ws.addEventListener("error", () => reject(new Error(name + ": WebSocket failed")), { once: true });
    });
    // A browser-style WebSocket cannot set headers: authenticate with the
    // first frame, within 5 s.
    chat.send({ type: "auth", token });
    const { hello } = await chat.next((f) => f.type === "hello");
    log(`${name}: chat session for ${hello.user}, ${hello.convs.length} conversation(s)`);
    chat.hello = hello;
    return chat;
  }

  constructor(name, ws) {
    this.name = name;
    this.ws = ws;
    this.inbox = [];
    this.waiters = [];
    this.closed = null;
    ws.addEventListener("message", (ev) => {
      if (typeof ev.data !== "string") return; // binary pages only come to pulls that ask for a codec
      this.inbox.push(JSON.parse(ev.data));
      this.wake();
    });
    ws.addEventListener("close", (ev) => {
      this.closed = ev.code;
      this.wake();
    });
  }

  wake() {
    for (const w of this.waiters.splice(0)) w();
  }

  send(frame) {
    this.ws.send(JSON.stringify({ v: 1, ...frame }));
  }

  // next takes the first frame in the inbox that matches, waiting for it.
  // An error frame answering the same ref fails the wait.
  async next(match, ref) {
    const deadline = Date.now() + TIMEOUT_MS;
    for (;;) {
      const i = this.inbox.findIndex((f) => match(f) || (ref !== undefined && f.type === "error" && f.ref === ref));
      if (i >= 0) {
        const [f] = this.inbox.splice(i, 1);
        if (f.type === "error" && !match(f)) throw new Error(`${this.name}: ${f.error.code}: ${f.error.message}`);
        return f;
      }
      if (this.closed !== null) throw new Error(`${this.name}: connection closed with ${this.closed}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.name}: timed out waiting for a frame`);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  // say sends a text and waits for its ack (`sent`, ref = client_msg_id).
  // Retrying with the same client_msg_id is safe: the server answers the
  // same seq and stores nothing new.
  async say(conv, body, clientMsgId = randomUUID()) {
    this.send({ type: "send", conv, client_msg_id: clientMsgId, body });
    const ack = await this.next((f) => f.type === "sent" && f.ref === clientMsgId, clientMsgId);
    return { seq: ack.seq, clientMsgId };
  }

  // history reads a whole conversation backwards by seq cursor (never by
  // offset), `limit` at a time, and returns it oldest first.
  async history(conv, limit) {
    const all = [];
    let before = 0; // 0: from the newest
    for (let n = 1; ; n++) {
      const ref = "h" + n;
      this.send({ type: "history", ref, conv, before, limit });
      const page = await this.next((f) => f.type === "page" && f.ref === ref, ref);
      all.unshift(...page.messages);
      if (!page.has_more || page.messages.length === 0) return all;
      before = page.messages[0].seq;
    }
  }

  close() {
    this.ws.close(1000);
  }
}

// --- The scenario -----------------------------------------------------------

async function main() {
  const tag = randomUUID().slice(0, 6);
  const alice = await player("alice-" + tag);
  const bob = await player("bob-" + tag);

  const room = await call("POST", "/rooms", {
    token: alice.token,
    body: { name: "Node example", game: "demo", max_players: 4, public: false },
  });
  check(room.invite_link === "roomnet://join/" + room.invite_code, "the invite link carries the code");
  check(room.join.room_id === room.id && room.join.auth_key, "the host gets a join grant");
  log(`alice: created private room ${room.id}, invite ${room.invite_code}`);

  const preview = await call("GET", "/invites/" + room.invite_code.toLowerCase(), { token: bob.token });
  check(preview.id === room.id && preview.invite_code === undefined, "an invite preview shows the room, not its invite");
  const grant = await call("POST", `/invites/${room.invite_code}/join`, { token: bob.token });
  check(grant.room_id === room.id && grant.login_server && grant.auth_key, "bob gets a join grant");
  log(`bob: joined by invite; node would run: tailscale up --login-server ${grant.login_server} --authkey <key>`);
  // Join is idempotent: a retry (say, after a lost answer) by a member
  // whose node is not online yet gets a fresh grant, not an error.
  const again = await call("POST", `/invites/${room.invite_code}/join`, { token: bob.token });
  check(again.room_id === room.id && again.auth_key && again.auth_key !== grant.auth_key, "a retried join gets a fresh key");

  const conv = "room:" + room.id;
  const a = await Chat.connect(alice.name, alice.token);
  const b = await Chat.connect(bob.name, bob.token);
  for (const chat of [a, b]) {
    check(chat.hello.convs.some((c) => c.conv === conv), `${chat.name}'s hello lists the room`);
  }

  // Sync: the positions we hold (none yet); the answer lists every conversation.
  a.send({ type: "sync", positions: {} });
  const synced = await a.next((f) => f.type === "synced");
  check(synced.convs.some((c) => c.conv === conv), "synced lists the room");

  // Alice sends three lines, each acked with its seq; a retry of the
  // first (same client_msg_id) answers the same seq.
  const sent = [];
  for (const text of ["hello bob", "ready?", "starting in 3"]) {
    sent.push(await a.say(conv, text));
  }
  for (let i = 1; i < sent.length; i++) check(sent[i].seq > sent[i - 1].seq, "acks carry increasing seqs");
  const retry = await a.say(conv, "hello bob", sent[0].clientMsgId);
  check(retry.seq === sent[0].seq, "a retried send keeps its seq");
  log(`alice: sent seqs ${sent.map((s) => s.seq).join(", ")}; retry answered ${retry.seq} again`);

  // Bob receives them pushed, in order, once each.
  const got = [];
  while (got.length < sent.length) {
    const { msg } = await b.next((f) => f.type === "msg" && f.msg.conv === conv && f.msg.kind === "text");
    got.push(msg);
  }
  check(JSON.stringify(got.map((m) => m.seq)) === JSON.stringify(sent.map((s) => s.seq)), "bob receives alice's seqs in order");
  check(got.every((m) => m.from === alice.name), "the sender is alice");
  log(`bob: received ${got.map((m) => `#${m.seq} "${m.body}"`).join(", ")}`);

  // Bob answers; alice receives it (whatever else is pushed to her first).
  const reply = await b.say(conv, "ready!");
  const echoed = await a.next((f) => f.type === "msg" && f.msg.seq === reply.seq);
  check(echoed.msg.from === bob.name && echoed.msg.body === "ready!", "alice receives bob's reply");
  log(`alice: received #${echoed.msg.seq} "${echoed.msg.body}" from ${echoed.msg.from}`);

  // Receipt and read position: no answer expected.
  b.send({ type: "ack", conv, seq: reply.seq });
  b.send({ type: "read", conv, seq: reply.seq });

  // History by cursor, two at a time, oldest first.
  const hist = await b.history(conv, 2);
  const seqs = hist.map((m) => m.seq);
  for (let i = 1; i < seqs.length; i++) check(seqs[i] === seqs[i - 1] + 1, "history has no gaps or repeats: " + seqs);
  const texts = hist.filter((m) => m.kind === "text").map((m) => m.body);
  check(JSON.stringify(texts) === JSON.stringify(["hello bob", "ready?", "starting in 3", "ready!"]), "history holds the texts once, in order: " + texts);
  log(`bob: history by cursor: ${hist.map((m) => `#${m.seq} ${m.kind}`).join(", ")}`);

  // Errors answer with the frame's ref.
  b.send({ type: "history", ref: "bad", conv: "room:not-mine", before: 0, limit: 10 });
  const refused = await b.next((f) => f.type === "error" && f.ref === "bad");
  log(`bob: history of a foreign room refused: ${refused.error.code}`);

  a.close();
  b.close();
  log("ok");
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error("FAIL:", err.message);
    process.exit(1);
  },
);
