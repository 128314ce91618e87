// Drives switchboard-signaling's PeerJS-compatible endpoint (SPEC section 4.1) with raw
// WebSocket clients (the `ws` package: exactly the frames the peerjs client and attackers send)
// and prints one JSON object with what each client saw; tests/tests/peerjs.rs asserts on it.
//
// Usage: node peerjs-driver.mjs SCENARIO URL[,URL...] [ARGS_JSON]
// URL: the base URL of a signaling instance (a comma-separated list for a cluster: clients of
// a scenario name the instance they use by index). ARGS_JSON: {path?, key?, ...scenario keys}.
// Every wait is bounded: each one fails the scenario with what the client saw; a watchdog ends
// the process with {"error": "..."} after 90 s. Scenarios with stages print intermediate JSON
// lines ({"stage": ...}) and wait for a command line on stdin from the test between stages.

import { createInterface } from "node:readline";
import { randomBytes } from "node:crypto";
import { io } from "socket.io-client";
import WebSocket from "ws";

const [, , scenario, urlList, argsJson] = process.argv;
const urls = urlList.split(",").filter((u) => u.length > 0);
const args = argsJson ? JSON.parse(argsJson) : {};
const PATH = args.path ?? "/peerjs";
const KEY = args.key ?? "peerjs";
const WAIT_MS = 10000;

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const watchdog = setTimeout(() => {
  out({ error: `scenario ${scenario} timed out` });
  process.exit(3);
}, 90000);

const rand = () => randomBytes(4).toString("hex");
/** A fresh peer id that the peerjs client would accept too: `name-xxxxxxxx`. */
const uid = (name) => `${name}-${rand()}`;

/** `ws://host:port{P}/peerjs?...` for instance `at` (an index into `urls`). */
function wsUrl(at, query) {
  const base = urls[at].replace(/^http/, "ws").replace(/\/$/, "");
  const p = PATH.endsWith("/") ? PATH : PATH + "/";
  return `${base}${p}peerjs?${new URLSearchParams(query)}`;
}

const all = [];

/** One raw PeerJS client. `msgs`: every frame received (parsed; `{nonJson}` otherwise),
 * `closed`: `{code, reason, at}` once the socket closed, `refused`: `{status, body}` when the
 * upgrade was answered with an HTTP status instead. */
class Client {
  constructor(opts = {}) {
    this.label = opts.label ?? opts.id ?? "client";
    this.id = opts.id;
    this.token = opts.token ?? `tok-${rand()}`;
    this.msgs = [];
    this.closed = null;
    this.refused = null;
    this.upgraded = false;
    this.listeners = new Set();
    const query = opts.query ?? { key: opts.key ?? KEY, id: this.id, token: this.token, version: "1.5.5" };
    this.url = wsUrl(opts.at ?? 0, query);
    this.startedAt = Date.now();
    this.ws = new WebSocket(this.url, {
      headers: opts.headers ?? {},
      localAddress: opts.localAddress,
      maxPayload: 1 << 24,
      handshakeTimeout: WAIT_MS,
      // A "silent" client answers no WebSocket ping either: it sends no frame at all.
      autoPong: opts.autoPong ?? true,
    });
    this.ws.on("open", () => {
      this.upgraded = true;
      this.notify();
    });
    this.ws.on("unexpected-response", (req, res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => {
        this.refused = { status: res.statusCode, body };
        req.destroy();
        this.notify();
      });
      res.on("error", () => {});
    });
    this.ws.on("error", (e) => {
      this.error = String(e.message || e);
      this.notify();
    });
    this.ws.on("message", (data) => {
      const text = data.toString();
      let m;
      try {
        m = JSON.parse(text);
      } catch {
        m = { nonJson: text };
      }
      this.msgs.push(m);
      this.notify();
    });
    this.ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString(), afterMs: Date.now() - this.startedAt, at: Date.now() };
      this.notify();
    });
    all.push(this);
  }

  notify() {
    for (const l of [...this.listeners]) l();
  }

  /** Resolves with the first truthy `cond()`, re-checked on every event of this client;
   * rejects after `ms` with what the client saw. */
  until(cond, what, ms = WAIT_MS) {
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        clearTimeout(timer);
        this.listeners.delete(check);
      };
      const check = () => {
        let v;
        try {
          v = cond();
        } catch (e) {
          cleanup();
          reject(e);
          return;
        }
        if (v) {
          cleanup();
          resolve(v);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`${this.label}: ${what} did not happen within ${ms} ms; ${this.describe()}`));
      }, ms);
      this.listeners.add(check);
      check();
    });
  }

  describe() {
    return `saw ${JSON.stringify(this.msgs).slice(0, 1500)}, closed ${JSON.stringify(this.closed)}, refused ${JSON.stringify(this.refused)}, error ${this.error ?? null}`;
  }

  /** The upgrade's outcome: "upgraded", or `{status, body}` for an HTTP answer. */
  async handshake(ms = WAIT_MS) {
    await this.until(() => this.upgraded || this.refused || this.closed || this.error, "the WebSocket handshake", ms);
    if (this.upgraded) return "upgraded";
    if (this.refused) return this.refused;
    return { failed: this.error ?? "closed before the upgrade" };
  }

  /** The first frame the server sent (waits for it). */
  async first(ms = WAIT_MS) {
    return this.until(() => this.msgs[0], "a first frame", ms);
  }

  /** Waits for a frame matching `pred` (already received or future). */
  async frame(pred, what, ms = WAIT_MS) {
    return this.until(() => this.msgs.find(pred), what, ms);
  }

  async waitClosed(ms = WAIT_MS) {
    return this.until(() => this.closed, "the server closing the socket", ms);
  }

  send(obj) {
    this.ws.send(typeof obj === "string" ? obj : JSON.stringify(obj));
  }

  isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  close() {
    this.ws.close();
    return this.waitClosed();
  }

  /** Every frame but OPEN, reduced to the fields of the wire contract. */
  relayed() {
    return this.msgs.filter((m) => m.type !== "OPEN").map(pick);
  }
}

/** Like `Client.until`, re-checked on every event of any of `clients`. */
function untilAll(clients, cond, what, ms = WAIT_MS) {
  return new Promise((resolve, reject) => {
    const cleanup = () => {
      clearTimeout(timer);
      for (const c of clients) c.listeners.delete(check);
    };
    const check = () => {
      const v = cond();
      if (v) {
        cleanup();
        resolve(v);
      }
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${what} did not happen within ${ms} ms; ${clients.map((c) => `${c.label} ${c.describe()}`).join("; ")}`));
    }, ms);
    for (const c of clients) c.listeners.add(check);
    check();
  });
}

const pick = (m) => ({ type: m.type, src: m.src, dst: m.dst, payload: m.payload });
const hasN = (n) => (m) => m.payload && m.payload.n === n;

/** A client whose first frame must be OPEN. */
async function register(opts = {}) {
  const c = new Client({ ...opts, id: opts.id ?? uid(opts.label ?? "peer") });
  const h = await c.handshake();
  if (h !== "upgraded") throw new Error(`${c.label}: upgrade refused: ${JSON.stringify(h)}`);
  const f = await c.first();
  if (f.type !== "OPEN") throw new Error(`${c.label}: first frame is not OPEN: ${c.describe()}`);
  return c;
}

/** A client that expects to be refused: its handshake, its first frame (if any) and whether
 * the server closed it (bounded). */
async function refusedClient(opts) {
  const c = new Client(opts);
  const handshake = await c.handshake();
  if (handshake !== "upgraded") return { handshake, first: null, closed: null };
  const first = await c.first().catch(() => null);
  const closed = await c.waitClosed().catch(() => null);
  return { handshake, first, closed: closed ? { code: closed.code } : null };
}

/** Retries `register(opts)` every 100 ms until the server answers OPEN (bounded): for a
 * server-side release that has no event the client can wait for. Returns the client and the
 * attempts' first frames. */
async function registerEventually(opts, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  const attempts = [];
  for (;;) {
    const c = new Client(opts);
    const h = await c.handshake();
    const f = h === "upgraded" ? await c.first().catch(() => null) : null;
    if (f && f.type === "OPEN") return { client: c, attempts };
    attempts.push(h === "upgraded" ? f : h);
    c.ws.terminate();
    if (Date.now() > deadline) throw new Error(`${JSON.stringify(opts)} never got OPEN: ${JSON.stringify(attempts.slice(-3))}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

/** Prints a stage line and waits for the test's next command on stdin. */
async function stage(name, data = {}) {
  out({ stage: name, ...data });
  const { value, done } = await stdinLines.next();
  if (done) throw new Error(`stdin closed during stage ${name}`);
  return value.trim();
}

const scenarios = {
  /** Each client message type is forwarded to `dst` as {type, src, dst, payload} with `src`
   * set by the server (a forged one overwritten); HEARTBEAT goes nowhere; nothing else is
   * delivered in between. */
  async forward() {
    const a = await register({ label: "alice" });
    const b = await register({ label: "bob" });
    const types = ["OFFER", "ANSWER", "CANDIDATE", "LEAVE", "EXPIRE"];
    types.forEach((type, n) => a.send({ type, src: "mallory", dst: b.id, payload: { n, type, sdp: `v=0 ${type}` } }));
    a.send({ type: "HEARTBEAT" });
    a.send({ type: "OFFER", dst: b.id, payload: { n: "marker" } });
    await b.frame(hasN("marker"), "the marker");
    // Bob claims to be alice herself: the server still says bob.
    b.send({ type: "ANSWER", src: a.id, dst: a.id, payload: { n: "back" } });
    b.send({ type: "CANDIDATE", src: "mallory", dst: a.id, payload: { n: "back2" } });
    await a.frame(hasN("back2"), "bob's answer and candidate");
    return { a: a.id, b: b.id, aSaw: a.msgs, bSaw: b.msgs, aOpen: a.isOpen(), bOpen: b.isOpen() };
  },

  /** An id registered with another token is ID-TAKEN and closed; the holder is untouched;
   * once the holder leaves the id is free again. */
  async idTaken() {
    const id = uid("alice");
    const a = await register({ id, token: "token-one" });
    const thief = await refusedClient({ id, token: "token-two" });
    const b = await register({ label: "bob" });
    b.send({ type: "OFFER", dst: id, payload: { n: "still-alice" } });
    await a.frame(hasN("still-alice"), "the holder still receiving");
    await a.close();
    const { client: c, attempts } = await registerEventually({ id, token: "token-two" });
    b.send({ type: "OFFER", dst: id, payload: { n: "to-new-holder" } });
    await c.frame(hasN("to-new-holder"), "the new holder receiving");
    return { id, thief, aOpenAfterThief: true, aSaw: a.msgs, attemptsBeforeFree: attempts, cSaw: c.msgs };
  },

  /** The same id and token while the first socket is open: the new socket replaces the old
   * one (old closed, no OPEN on the new), and the old socket's close does not free the id. */
  async reconnect() {
    const id = uid("alice");
    const token = "same-token";
    const a1 = await register({ id, token, label: "alice-1" });
    const b = await register({ label: "bob" });
    const a2 = new Client({ id, token, label: "alice-2" });
    const handshake = await a2.handshake();
    await a1.waitClosed();
    b.send({ type: "OFFER", dst: id, payload: { n: "after-replace" } });
    await a2.frame(hasN("after-replace"), "the replacing socket receiving");
    // The old socket's close did not release the id: another token is still refused.
    const thief = await refusedClient({ id, token: "other-token" });
    b.send({ type: "OFFER", dst: id, payload: { n: "after-thief" } });
    await a2.frame(hasN("after-thief"), "the replacing socket still receiving");
    a2.send({ type: "ANSWER", dst: b.id, payload: { n: "from-a2" } });
    await b.frame(hasN("from-a2"), "the replacing socket sending");
    return { id, b: b.id, handshake, a1Saw: a1.msgs, a1Closed: a1.closed, a2Saw: a2.msgs, a2Open: a2.isOpen(), bSaw: b.msgs, thief };
  },

  /** Every refused registration: its first frame and whether it was closed; plus the longest
   * valid id and token, which are accepted. */
  async invalid() {
    const tok = `tok-${rand()}`;
    const cases = {
      noId: { key: KEY, token: tok },
      emptyId: { key: KEY, id: "", token: tok },
      noToken: { key: KEY, id: uid("a") },
      noKey: { id: uid("a"), token: tok },
      wrongKey: { key: `${KEY}-wrong`, id: uid("a"), token: tok },
      longId: { key: KEY, id: "a".repeat(65), token: tok },
      slashId: { key: KEY, id: "a/b", token: tok },
      dotId: { key: KEY, id: "a.b", token: tok },
      markupId: { key: KEY, id: "<img src=x>", token: tok },
      unicodeId: { key: KEY, id: "caf\u00e9", token: tok },
      longToken: { key: KEY, id: uid("a"), token: "t".repeat(65) },
    };
    const r = {};
    for (const [name, query] of Object.entries(cases)) r[name] = await refusedClient({ query, label: name });
    const longest = ("Ab9_ -z" + "x".repeat(64)).slice(0, 64);
    const ok = await register({ query: { key: KEY, id: longest, token: "T".repeat(64) }, id: longest, label: "longest" });
    r.longestValid = { id: longest, first: ok.msgs[0] };
    return r;
  },

  /** OFFER/ANSWER/CANDIDATE to an id that is not connected wait for it and come first thing
   * after its OPEN, in order; LEAVE/EXPIRE to it are dropped. */
  async queue() {
    const a = await register({ label: "alice" });
    const fence = await register({ label: "fence" });
    const later = uid("later");
    a.send({ type: "LEAVE", dst: later, payload: { n: "leave" } });
    a.send({ type: "EXPIRE", dst: later, payload: { n: "expire" } });
    const sent = [
      ["OFFER", 0],
      ["CANDIDATE", 1],
      ["CANDIDATE", 2],
      ["ANSWER", 3],
      ["CANDIDATE", 4],
    ];
    for (const [type, n] of sent) a.send({ type, src: "mallory", dst: later, payload: { n } });
    // Frames of one socket are handled in order: once the fence has this, the ones above were.
    a.send({ type: "OFFER", dst: fence.id, payload: { n: "fence" } });
    await fence.frame(hasN("fence"), "the fence");
    const l = new Client({ id: later, label: "later" });
    await l.until(() => l.msgs.length >= 1 + sent.length, "the queued messages");
    a.send({ type: "OFFER", dst: later, payload: { n: "live" } });
    await l.frame(hasN("live"), "a live message after the queue");
    return { a: a.id, later, laterSaw: l.msgs, aSaw: a.msgs };
  },

  /** At most 64 queued messages per destination: the 65th is answered with EXPIRE at once
   * (well before expire_timeout) and never delivered. */
  async queueCap() {
    const a = await register({ label: "alice" });
    const fence = await register({ label: "fence" });
    const later = uid("later");
    const sentAt = Date.now();
    for (let n = 0; n < 65; n++) a.send({ type: "CANDIDATE", dst: later, payload: { n } });
    const expire = await a.frame((m) => m.type === "EXPIRE", "EXPIRE for the 65th message");
    const expireMs = Date.now() - sentAt;
    a.send({ type: "OFFER", dst: fence.id, payload: { n: "fence" } });
    await fence.frame(hasN("fence"), "the fence");
    const l = new Client({ id: later, label: "later" });
    // Registered (OPEN comes before the queue): from now on messages to it go live.
    await l.first();
    a.send({ type: "OFFER", dst: later, payload: { n: "live" } });
    await l.frame(hasN("live"), "a live message after the queue");
    return { a: a.id, later, expire, expireMs, laterSaw: l.msgs, aExpires: a.msgs.filter((m) => m.type === "EXPIRE").length };
  },

  /** A queue unread for expire_timeout is dropped; each waiting sender gets one EXPIRE with
   * src = the unreachable id; the id connecting afterwards gets nothing of it. */
  async expire() {
    const a = await register({ label: "alice" });
    const b = await register({ label: "bob" });
    const ghost = uid("ghost");
    a.send({ type: "OFFER", dst: ghost, payload: { n: 0 } });
    a.send({ type: "CANDIDATE", dst: ghost, payload: { n: 1 } });
    b.send({ type: "OFFER", dst: ghost, payload: { n: 2 } });
    const sentAt = Date.now();
    const ea = await a.frame((m) => m.type === "EXPIRE", "alice's EXPIRE", 15000);
    const aMs = Date.now() - sentAt;
    const eb = await b.frame((m) => m.type === "EXPIRE", "bob's EXPIRE", 15000);
    const bMs = Date.now() - sentAt;
    const g = await register({ id: ghost, label: "ghost" });
    a.send({ type: "OFFER", dst: ghost, payload: { n: "live" } });
    await g.frame(hasN("live"), "a live message to the ghost");
    // One more round trip through both senders so that a duplicate EXPIRE would be in.
    g.send({ type: "ANSWER", dst: a.id, payload: { n: "fence-a" } });
    g.send({ type: "ANSWER", dst: b.id, payload: { n: "fence-b" } });
    await a.frame(hasN("fence-a"), "alice's fence");
    await b.frame(hasN("fence-b"), "bob's fence");
    return {
      a: a.id, b: b.id, ghost, ea, eb, aMs, bMs, ghostSaw: g.msgs,
      aExpires: a.msgs.filter((m) => m.type === "EXPIRE").length,
      bExpires: b.msgs.filter((m) => m.type === "EXPIRE").length,
    };
  },

  /** alive_timeout: a silent client is closed and its id freed; one that sends HEARTBEAT
   * stays. */
  async heartbeat() {
    const silent = await register({ label: "silent", token: "silent-token", autoPong: false });
    const alive = await register({ label: "alive" });
    const beat = setInterval(() => alive.send({ type: "HEARTBEAT" }), 400);
    const closed = await silent.waitClosed(args.aliveMs + 8000);
    // Freed: another token may take the id (peerjs-server keeps nothing of a dead client).
    const { client: again, attempts } = await registerEventually({ id: silent.id, token: "another-token", label: "again", autoPong: false });
    // The heartbeating client has now lived past alive_timeout; wait for the second silent
    // one to be closed too, then it must still be open and working.
    const closedAgain = await again.waitClosed(args.aliveMs + 8000);
    const aliveOpen = alive.isOpen() && !alive.closed;
    const echo = await register({ label: "echo" });
    alive.send({ type: "OFFER", dst: echo.id, payload: { n: "still-alive" } });
    await echo.frame(hasN("still-alive"), "the heartbeating client still forwarding");
    clearInterval(beat);
    return {
      silentClosedAfterMs: closed.afterMs, againClosedAfterMs: closedAgain.afterMs, attemptsBeforeFree: attempts,
      aliveOpen, aliveLivedMs: Date.now() - alive.startedAt,
    };
  },

  /** Bad JSON and unknown types are ignored and the connection kept. Staged: `connected`
   * (both registered, before the bad frames), `ignored` (after), then the final result. */
  async badFrames() {
    const a = await register({ label: "alice" });
    const b = await register({ label: "bob" });
    await stage("connected", { a: a.id, b: b.id });
    a.send("this is not json");
    a.send('{"type": "OFFER", "dst": ');
    a.send({ type: "WHATEVER", dst: b.id, payload: { n: "unknown-1" } });
    a.send({ type: "offer", dst: b.id, payload: { n: "unknown-2" } });
    a.send({ type: "ID-TAKEN", dst: b.id, payload: { n: "unknown-3" } });
    a.send({ type: "OFFER", dst: b.id, payload: { n: "after" } });
    await b.frame(hasN("after"), "a good message after the bad ones");
    await stage("ignored", { aOpen: a.isOpen(), bSaw: b.msgs, aSaw: a.msgs });
    await a.close();
    await b.close();
    return { done: true };
  },

  /** A frame over the limit closes that connection only. */
  async oversized() {
    const a = await register({ label: "alice" });
    const b = await register({ label: "bob" });
    const c = await register({ label: "carol" });
    const pad = (size) => "x".repeat(size);
    // About max_payload_bytes in all: forwarded.
    a.send({ type: "OFFER", dst: b.id, payload: { n: "fits", sdp: pad(args.fits) } });
    await b.frame(hasN("fits"), "a frame within the limit");
    a.send({ type: "OFFER", dst: b.id, payload: { n: "huge", sdp: pad(args.huge) } });
    const closed = await a.waitClosed();
    c.send({ type: "OFFER", dst: b.id, payload: { n: "others-fine" } });
    await b.frame(hasN("others-fine"), "another connection still forwarding");
    b.send({ type: "ANSWER", dst: c.id, payload: { n: "back" } });
    await c.frame(hasN("back"), "the other connection still receiving");
    return { closed, bSaw: b.msgs.map((m) => ({ type: m.type, n: m.payload?.n, src: m.src })), bOpen: b.isOpen(), cOpen: c.isOpen() };
  },

  /** concurrent_limit (2 in the test): a third id is refused; replacing a socket (same id
   * and token) is not a new client; once one leaves, a new id gets in. */
  async concurrent() {
    const a = await register({ label: "alice", token: "alice-token" });
    const b = await register({ label: "bob" });
    const third = await refusedClient({ id: uid("carol"), label: "carol" });
    const a2 = new Client({ id: a.id, token: "alice-token", label: "alice-2" });
    const replaceHandshake = await a2.handshake();
    await a.waitClosed();
    b.send({ type: "OFFER", dst: a.id, payload: { n: "to-a2" } });
    await a2.frame(hasN("to-a2"), "the replacing socket at the limit");
    await b.close();
    const { client: d, attempts } = await registerEventually({ id: uid("dave"), label: "dave" });
    return { third, replaceHandshake, a2Saw: a2.msgs, attemptsBeforeRoom: attempts, dFirst: d.msgs[0] };
  },

  /** The WebSocket upgrade with an Origin outside cors_origins is refused with 403. */
  async origin() {
    const evil = new Client({ id: uid("evil"), headers: { Origin: "http://evil.example" }, label: "evil" });
    const evilHandshake = await evil.handshake();
    const good = await register({ label: "good", headers: { Origin: args.allowed } });
    const none = await register({ label: "no-origin" });
    return { evilHandshake, evilSaw: evil.msgs, goodFirst: good.msgs[0], noneFirst: none.msgs[0] };
  },

  /** signaling.max_connections_per_ip (3 in the test) counts PeerJS and Socket.IO together. */
  async perIp() {
    const p1 = await register({ label: "p1" });
    const sio = await new Promise((resolve, reject) => {
      const s = io(urls[0], { transports: ["websocket"], forceNew: true, reconnection: false, timeout: WAIT_MS });
      s.once("connect", () => resolve(s));
      s.once("connect_error", (e) => reject(new Error(`socket.io: ${e.message}`)));
    });
    const p2 = await register({ label: "p2" });
    const over = new Client({ id: uid("p3"), label: "p3" });
    const overHandshake = await over.handshake();
    const sioOver = await new Promise((resolve) => {
      const s = io(urls[0], { transports: ["websocket"], forceNew: true, reconnection: false, timeout: WAIT_MS });
      s.once("connect", () => resolve("connected"));
      s.once("connect_error", (e) => resolve(`refused: ${e.message}`));
    });
    const elsewhere = await register({ label: "other-ip", localAddress: "127.0.0.2" });
    await p1.close();
    const { client: back, attempts } = await registerEventually({ id: uid("p4"), label: "p4" });
    sio.close();
    return { overHandshake, sioOver, elsewhereFirst: elsewhere.msgs[0], attemptsBeforeRoom: attempts, backFirst: back.msgs[0], p2Open: p2.isOpen() };
  },

  /** Per-socket rate limit: every message is delivered or answered with EXPIRE for its dst. */
  async rateLimit() {
    const a = await register({ label: "alice" });
    const b = await register({ label: "bob" });
    const total = args.total;
    for (let n = 0; n < total; n++) a.send({ type: "CANDIDATE", dst: b.id, payload: { n } });
    const count = () => ({
      delivered: b.msgs.filter((m) => m.type === "CANDIDATE").length,
      expired: a.msgs.filter((m) => m.type === "EXPIRE").length,
    });
    await untilAll([a, b], () => { const c = count(); return c.delivered + c.expired >= total; }, "every message delivered or EXPIREd");
    // Fence: b answers a; then neither side may have more.
    b.send({ type: "ANSWER", dst: a.id, payload: { n: "fence" } });
    await a.frame(hasN("fence"), "bob's fence");
    const settled = count();
    // The bucket refills: a later message goes through. One probe at a time, each awaited
    // until delivered or EXPIREd (so every drop is accounted for), every 250 ms, bounded.
    let later = null;
    for (let i = 0; later === null && i < 40; i++) {
      const n = `later-${i}`;
      const expiresBefore = count().expired;
      a.send({ type: "OFFER", dst: b.id, payload: { n } });
      const delivered = await untilAll([a, b], () => (b.msgs.some(hasN(n)) ? "delivered" : count().expired > expiresBefore ? "expired" : null), `probe ${n} delivered or EXPIREd`);
      if (delivered === "delivered") later = n;
      else await new Promise((r) => setTimeout(r, 250));
    }
    return {
      a: a.id, b: b.id, ...settled,
      deliveredOrder: b.msgs.filter((m) => m.type === "CANDIDATE").map((m) => m.payload.n),
      expires: a.msgs.filter((m) => m.type === "EXPIRE").map(pick),
      expiredTotal: count().expired,
      later, aOpen: a.isOpen(),
    };
  },

  /** auth = "token": the PeerJS key must be a valid token. */
  async authKey() {
    const a = await register({ label: "alice", key: args.token });
    const b = await register({ label: "bob", key: args.token });
    a.send({ type: "OFFER", dst: b.id, payload: { n: "authed" } });
    await b.frame(hasN("authed"), "a message between authenticated peers");
    const configuredKey = await refusedClient({ id: uid("c"), key: args.configuredKey, label: "configured-key" });
    const wrong = await refusedClient({ id: uid("d"), key: "not-a-token", label: "wrong" });
    return { aFirst: a.msgs[0], bSaw: b.msgs, configuredKey, wrong };
  },

  /** Staged: two peers connected while the test reads `GET P/{key}/peers`. */
  async discovery() {
    const a = await register({ label: "alice", key: args.key ?? KEY });
    const b = await register({ label: "bob", key: args.key ?? KEY });
    await stage("connected", { ids: [a.id, b.id] });
    await a.close();
    await b.close();
    return { done: true };
  },

  /** An id from `GET P/{key}/id` registers. */
  async useId() {
    const c = await register({ id: args.id, label: "fetched-id" });
    return { first: c.msgs[0] };
  },

  // ---- Multi-instance (urls[0], urls[1]) ---------------------------------------------------

  /** Peers on two instances exchange every type with src rewritten; ID-TAKEN across
   * instances; an id released on one instance is free on the other. */
  async clusterForward() {
    const a = await register({ label: "alice", at: 0, token: "alice-token" });
    const b = await register({ label: "bob", at: 1 });
    const types = ["OFFER", "CANDIDATE", "CANDIDATE", "ANSWER", "LEAVE", "EXPIRE"];
    types.forEach((type, n) => a.send({ type, src: "mallory", dst: b.id, payload: { n } }));
    await b.until(() => b.relayed().length >= types.length, "all of alice's messages");
    b.send({ type: "ANSWER", src: "mallory", dst: a.id, payload: { n: "back" } });
    await a.frame(hasN("back"), "bob's answer");
    const thief = await refusedClient({ id: a.id, token: "thief-token", at: 1, label: "thief" });
    b.send({ type: "OFFER", dst: a.id, payload: { n: "after-thief" } });
    await a.frame(hasN("after-thief"), "alice still reachable");
    await a.close();
    const { client: a2, attempts } = await registerEventually({ id: a.id, token: "new-token", at: 1, label: "alice-2" });
    b.send({ type: "OFFER", dst: a.id, payload: { n: "new-holder" } });
    await a2.frame(hasN("new-holder"), "the new holder on the other instance");
    return { a: a.id, b: b.id, bSaw: b.msgs, aSaw: a.msgs, thief, attemptsBeforeFree: attempts, a2Saw: a2.msgs };
  },

  /** Messages for an id connected nowhere are delivered, in order, when it connects on
   * another instance. */
  async clusterQueue() {
    const a = await register({ label: "alice", at: 0 });
    const fence = await register({ label: "fence", at: 1 });
    const later = uid("later");
    for (let n = 0; n < 4; n++) a.send({ type: n === 0 ? "OFFER" : "CANDIDATE", dst: later, payload: { n } });
    a.send({ type: "OFFER", dst: fence.id, payload: { n: "fence" } });
    await fence.frame(hasN("fence"), "the fence on the other instance");
    const l = new Client({ id: later, at: 1, label: "later" });
    await l.until(() => l.msgs.length >= 5, "the queued messages on the other instance");
    a.send({ type: "OFFER", dst: later, payload: { n: "live" } });
    await l.frame(hasN("live"), "a live message across instances");
    return { a: a.id, later, laterSaw: l.msgs };
  },

  /** A message queued for an id connected nowhere expires: its sender gets EXPIRE. */
  async clusterExpire() {
    const a = await register({ label: "alice", at: 0 });
    const ghost = uid("ghost");
    a.send({ type: "OFFER", dst: ghost, payload: { n: 0 } });
    const sentAt = Date.now();
    const e = await a.frame((m) => m.type === "EXPIRE", "EXPIRE", 15000);
    return { a: a.id, ghost, expire: e, ms: Date.now() - sentAt };
  },
};

const run = scenarios[scenario];
if (!run) {
  out({ error: `unknown scenario ${scenario}` });
  process.exit(2);
}
try {
  const result = await run();
  out(result);
  clearTimeout(watchdog);
  for (const c of all) c.ws.terminate();
  process.exit(0);
} catch (e) {
  out({ error: String(e && e.message ? e.message : e) });
  process.exit(1);
}
