// Drives switchboard-signaling with socket.io-client (the client browsers use) and prints one
// JSON object with what each client saw; the Rust tests in tests/tests/signaling*.rs assert on it.
//
// Usage: node signaling-driver.mjs SCENARIO URL [ARGS_JSON]
// Every wait is bounded: a watchdog ends the process with {"error": "..."} after 90 s.

import { createHmac } from "node:crypto";
import { io } from "socket.io-client";

const [, , scenario, url, argsJson] = process.argv;
const args = argsJson ? JSON.parse(argsJson) : {};
const WAIT_MS = 20000;

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

const watchdog = setTimeout(() => {
  out({ error: `scenario ${scenario} timed out` });
  process.exit(3);
}, 90000);

const sockets = [];

/** Connects; resolves with the socket, rejects with the connect_error message. */
function connect(opts = {}) {
  return new Promise((resolve, reject) => {
    const s = io(url, {
      transports: opts.transports ?? ["websocket"],
      forceNew: true,
      reconnection: false,
      auth: opts.auth,
      extraHeaders: opts.headers,
      // Source address (any 127.0.0.0/8 address on Linux loopback): "another IP".
      localAddress: opts.localAddress,
      timeout: WAIT_MS,
    });
    sockets.push(s);
    s.log = [];
    s.onAny((event, payload) => s.log.push([event, payload]));
    s.once("connect", () => resolve(s));
    s.once("connect_error", (e) => reject(new Error(e.message)));
  });
}

/** Emits with an ack and resolves with the ack body. */
function ask(s, event, data) {
  return s.timeout(WAIT_MS).emitWithAck(event, data);
}

/** Resolves with the first `event` payload (already received or future) matching `pred`. */
function waitFor(s, event, pred = () => true, ms = WAIT_MS) {
  const seen = s.log.find(([e, p]) => e === event && pred(p));
  if (seen) return Promise.resolve(seen[1]);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      s.off(event, on);
      reject(new Error(`no ${event} within ${ms} ms`));
    }, ms);
    const on = (p) => {
      if (pred(p)) {
        clearTimeout(timer);
        s.off(event, on);
        resolve(p);
      }
    };
    s.on(event, on);
  });
}

/** Events of one name seen so far. */
function seen(s, event) {
  return s.log.filter(([e]) => e === event).map(([, p]) => p);
}

/** A round trip through the server: everything queued for `s` before it has arrived. */
async function barrier(s) {
  return ask(s, "leave-room", { roomId: "barrier-no-such-room" });
}

async function http(method, path, body, headers = {}) {
  const res = await fetch(url + path, {
    method,
    headers: { "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.status, body: json };
}

function jwt(secret, claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64(claims);
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

const scenarios = {
  // Every client event with its ack, every server event, over WebSocket and polling.
  async events() {
    const a = await connect();
    const b = await connect({ transports: ["polling"] });
    const r = {};
    r.joinA = await ask(a, "join-room", { roomId: "events", displayName: "Ann", userId: "ann", metadata: { role: "host" } });
    r.roomUsersA = await waitFor(a, "room-users");
    r.joinB = await ask(b, "join-room", { roomId: "events", displayName: "Bob" });
    r.roomUsersB = await waitFor(b, "room-users");
    r.userJoinedAtA = await waitFor(a, "user-joined");
    // A client-sent `from` is overwritten: peers cannot impersonate each other.
    r.offerAck = await ask(a, "offer", { targetId: b.id, offer: { type: "offer", sdp: "v=0" }, roomId: "events", from: "forged" });
    r.offerAtB = await waitFor(b, "offer");
    r.answerAck = await ask(b, "answer", { targetId: a.id, answer: { type: "answer", sdp: "v=0" } });
    r.answerAtA = await waitFor(a, "answer");
    r.candidateAck = await ask(a, "ice-candidate", { targetId: b.id, candidate: { candidate: "candidate:1", sdpMid: "0" } });
    r.candidateAtB = await waitFor(b, "ice-candidate");
    r.signalAck = await ask(b, "signal", { to: a.id, data: { kind: "renegotiate" } });
    r.signalAtA = await waitFor(a, "signal");
    r.messageAck = await ask(a, "message", { roomId: "events", data: { text: "hi" } });
    r.messageAtB = await waitFor(b, "message");
    r.updateAck = await ask(b, "update-state", { roomId: "events", state: { muted: true } });
    r.peerUpdatedAtA = await waitFor(a, "peer-updated");
    r.roomAfterUpdate = (await http("GET", "/api/rooms/events")).body;
    // Without an ack, a failure comes back as an `error` event.
    b.emit("offer", { targetId: "no-such-peer", offer: {} });
    r.errorEventAtB = await waitFor(b, "error");
    r.leaveAck = await ask(b, "leave-room", { roomId: "events" });
    r.userLeftAtA = await waitFor(a, "user-left");
    r.leaveAgainAck = await ask(b, "leave-room", { roomId: "events" });
    r.ids = { a: a.id, b: b.id };
    r.messagesAtA = seen(a, "message").length;
    return r;
  },

  // N back-to-back ice-candidate events A→B; B checks completeness and order.
  async ordering() {
    const n = args.n ?? 2000;
    const pad = "c".repeat(args.padBytes ?? 0);
    const a = await connect({ transports: [args.transportA ?? "websocket"] });
    const b = await connect({ transports: [args.transportB ?? "websocket"] });
    await ask(a, "join-room", { roomId: "ordering" });
    await ask(b, "join-room", { roomId: "ordering" });
    const got = [];
    b.on("ice-candidate", (p) => got.push(p.candidate.seq));
    // Per (sender, target) order holds across event types, so the end marker comes last.
    const done = waitFor(b, "signal", (p) => p.data === "end");
    for (let i = 0; i < n; i++) {
      a.emit("ice-candidate", { targetId: b.id, candidate: { seq: i, candidate: "candidate:x", pad } });
    }
    a.emit("signal", { to: b.id, data: "end" });
    const failed = new Promise((resolve) => a.on("error", resolve));
    await Promise.race([done, failed]);
    let outOfOrder = 0;
    for (let i = 1; i < got.length; i++) if (got[i] < got[i - 1]) outOfOrder++;
    const unique = new Set(got).size;
    return { sent: n, received: got.length, unique, outOfOrder, inOrder: got.every((v, i) => v === i), errorsAtSender: seen(a, "error") };
  },

  // Joiners race for the last seat, over several rounds: exactly one gets in each time.
  async race() {
    const rounds = args.rounds ?? 10;
    const contenders = args.contenders ?? 2;
    const results = [];
    for (let i = 0; i < rounds; i++) {
      const room = await http("POST", "/api/rooms", { maxPeers: 2, name: `race-${i}` });
      const id = room.body.id;
      const first = await connect();
      await ask(first, "join-room", { roomId: id });
      const racers = await Promise.all(Array.from({ length: contenders }, () => connect()));
      const acks = await Promise.all(racers.map((s) => ask(s, "join-room", { roomId: id })));
      const info = await http("GET", `/api/rooms/${id}`);
      results.push({ oks: acks.filter((a) => a.ok).length, codes: acks.filter((a) => !a.ok).map((a) => a.error.code), members: info.body.peers.length });
      for (const s of [first, ...racers]) s.disconnect();
    }
    return { results };
  },

  // Peers in different rooms cannot reach each other.
  async isolation() {
    const a = await connect();
    const b = await connect();
    const c = await connect();
    await ask(a, "join-room", { roomId: "iso-1" });
    await ask(b, "join-room", { roomId: "iso-1" });
    await ask(c, "join-room", { roomId: "iso-2" });
    const r = {};
    r.offerToOtherRoom = await ask(a, "offer", { targetId: c.id, offer: { type: "offer", sdp: "x" } });
    r.candidateToOtherRoom = await ask(a, "ice-candidate", { targetId: c.id, candidate: {} });
    r.signalToOtherRoom = await ask(a, "signal", { to: c.id, data: 1 });
    r.offerNamingOtherRoom = await ask(a, "offer", { targetId: c.id, offer: {}, roomId: "iso-2" });
    r.messageToOtherRoom = await ask(a, "message", { roomId: "iso-2", data: "psst" });
    r.stateInOtherRoom = await ask(a, "update-state", { roomId: "iso-2", state: {} });
    r.offerToSelf = await ask(a, "offer", { targetId: a.id, offer: {} });
    await barrier(c);
    r.deliveredToC = c.log.filter(([e]) => ["offer", "ice-candidate", "signal", "message", "peer-updated"].includes(e)).length;
    r.offerInRoomStillWorks = await ask(a, "offer", { targetId: b.id, offer: {} });
    await waitFor(b, "offer");
    return r;
  },

  async password() {
    const a = await connect();
    const b = await connect();
    const r = {};
    r.create = await ask(a, "join-room", { roomId: "locked", password: "s3cret" });
    r.missing = await ask(b, "join-room", { roomId: "locked" });
    r.wrong = await ask(b, "join-room", { roomId: "locked", password: "guess" });
    b.emit("join-room", { roomId: "locked", password: "guess2" });
    r.wrongNoAck = await waitFor(b, "error");
    r.right = await ask(b, "join-room", { roomId: "locked", password: "s3cret" });
    const rest = await http("POST", "/api/rooms", { name: "rest-locked", password: "pw" });
    r.restRoom = rest;
    r.restWrong = await ask(b, "join-room", { roomId: rest.body.id, password: "nope" });
    r.restRight = await ask(b, "join-room", { roomId: rest.body.id, password: "pw" });
    r.listing = (await http("GET", "/api/rooms")).body;
    return r;
  },

  // Guessing room passwords: one source on one room, then one source across rooms; the
  // owner's correct password from another source keeps working.
  async passwordGuessing() {
    const owner = await connect();
    const r = {};
    r.create = await ask(owner, "join-room", { roomId: "vault", password: "right-one" });
    const guesser = await connect({ localAddress: "127.0.0.2" });
    r.guesses = [];
    for (let i = 0; i < (args.guesses ?? 7); i++) {
      const ack = await ask(guesser, "join-room", { roomId: "vault", password: `guess-${i}` });
      r.guesses.push(ack.ok ? "ok" : ack.error.code);
    }
    const right = await ask(guesser, "join-room", { roomId: "vault", password: "right-one" });
    r.rightFromGuesser = right.ok ? "ok" : right.error.code;
    const friend = await connect({ localAddress: "127.0.0.3" });
    const fr = await ask(friend, "join-room", { roomId: "vault", password: "right-one" });
    r.rightFromOtherIp = fr.ok ? "ok" : fr.error.code;
    // Across rooms: 4 wrong guesses on each of 5 REST rooms, then a sixth room.
    const ids = [];
    for (let i = 0; i < 6; i++) ids.push((await http("POST", "/api/rooms", { name: `locked-${i}`, password: "pw" })).body.id);
    const sprayer = await connect({ localAddress: "127.0.0.4" });
    r.spray = [];
    for (const id of ids.slice(0, 5)) {
      for (let i = 0; i < 4; i++) {
        const ack = await ask(sprayer, "join-room", { roomId: id, password: `nope-${i}` });
        r.spray.push(ack.ok ? "ok" : ack.error.code);
      }
    }
    const sixth = await ask(sprayer, "join-room", { roomId: ids[5], password: "pw" });
    r.sixthRoomFromSprayer = sixth.ok ? "ok" : sixth.error.code;
    const other = await connect({ localAddress: "127.0.0.5" });
    const os = await ask(other, "join-room", { roomId: ids[5], password: "pw" });
    r.sixthRoomFromOtherIp = os.ok ? "ok" : os.error.code;
    return r;
  },

  // Slow hashes on demand: REST rooms with a password from one address until refused, then
  // a password join from that address and from another one.
  async hashBudget() {
    const r = { statuses: [] };
    for (let i = 0; i < (args.creations ?? 61); i++) {
      r.statuses.push((await http("POST", "/api/rooms", { name: `h-${i}`, password: "pw" })).status);
    }
    const same = await connect();
    const a = await ask(same, "join-room", { roomId: "new-locked-1", password: "pw" });
    r.joinFromSameIp = a.ok ? "ok" : a.error.code;
    const open = await ask(same, "join-room", { roomId: "new-open" });
    r.openJoinFromSameIp = open.ok ? "ok" : open.error.code;
    const other = await connect({ localAddress: "127.0.0.6" });
    const b = await ask(other, "join-room", { roomId: "new-locked-2", password: "pw" });
    r.joinFromOtherIp = b.ok ? "ok" : b.error.code;
    return r;
  },

  async disconnect() {
    const a = await connect();
    const b = await connect();
    await ask(a, "join-room", { roomId: "cleanup" });
    await ask(b, "join-room", { roomId: "cleanup" });
    const bId = b.id;
    b.disconnect();
    const r = {};
    r.userLeft = await waitFor(a, "user-left");
    r.bId = bId;
    r.roomWhileA = await http("GET", "/api/rooms/cleanup");
    a.disconnect();
    // Bounded poll: cleanup runs on the server after the disconnect packet.
    for (let i = 0; i < 100; i++) {
      r.roomAfter = await http("GET", "/api/rooms/cleanup");
      if (r.roomAfter.status === 404) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    return r;
  },

  // Bad input of every kind; after each, the connection and the other clients keep working.
  async badInput() {
    const a = await connect();
    const b = await connect();
    await ask(a, "join-room", { roomId: "bad" });
    await ask(b, "join-room", { roomId: "bad" });
    const r = {};
    r.wrongType = await ask(a, "join-room", { roomId: 42 });
    r.badRoomId = await ask(a, "join-room", { roomId: "no spaces/allowed" });
    r.notObject = await ask(a, "offer", "just a string");
    r.missingTarget = await ask(a, "offer", { offer: {} });
    r.missingOffer = await ask(a, "offer", { targetId: b.id });
    r.stateNotObject = await ask(a, "update-state", { roomId: "bad", state: 3 });
    r.unknownEvent = await ask(a, "hack-the-planet", { x: 1 });
    a.emit("hack-the-planet", { x: 1 });
    r.unknownEventNoAck = await waitFor(a, "error", (p) => p.event === "hack-the-planet");
    r.noPayload = await a.timeout(WAIT_MS).emitWithAck("leave-room");
    const big = "x".repeat(args.bigBytes ?? 100000);
    r.oversized = await ask(a, "message", { roomId: "bad", data: big });
    a.emit("message", { roomId: "bad", data: big });
    r.oversizedNoAck = await waitFor(a, "error", (p) => p.code === "payload-too-large");
    r.stillConnected = a.connected;
    r.afterAll = await ask(a, "message", { roomId: "bad", data: "still here" });
    r.bGotIt = await waitFor(b, "message", (p) => p.data === "still here");
    r.bStillWorks = await ask(b, "signal", { to: a.id, data: "ok" });
    r.messagesAtB = seen(b, "message").length;
    // `max_rooms_per_socket` (4 in the tests): a is in "bad" and gets three more, not four.
    r.extraRooms = [];
    for (const room of ["cap-1", "cap-2", "cap-3", "cap-4"]) r.extraRooms.push(await ask(a, "join-room", { roomId: room }));
    return r;
  },

  // A frame far beyond the engine.io limit may close that one connection; others keep working.
  async hugeFrame() {
    const a = await connect({ transports: [args.transportA ?? "polling"] });
    const b = await connect();
    await ask(b, "join-room", { roomId: "huge" });
    await ask(a, "join-room", { roomId: "huge" });
    const closed = new Promise((resolve) => a.once("disconnect", (reason) => resolve(reason)));
    a.emit("message", { roomId: "huge", data: "y".repeat(args.hugeBytes ?? 8_000_000) });
    const r = {};
    r.aOutcome = await Promise.race([closed, barrier(a).then((ack) => ({ ack }))]);
    r.bStillWorks = await ask(b, "update-state", { roomId: "huge", state: { ok: true } });
    await barrier(b);
    r.messagesAtB = seen(b, "message").length;
    return r;
  },

  // A target that stops reading (a raw long-polling client that never polls again): the
  // sender is told, nothing is lost silently.
  async stalledTarget() {
    const base = `${url}/socket.io/?EIO=4&transport=polling`;
    const open = await (await fetch(base)).text();
    const eioSid = JSON.parse(open.slice(1)).sid;
    const at = `${base}&sid=${eioSid}`;
    await fetch(at, { method: "POST", body: "40" });
    let peerId;
    for (let i = 0; i < 5 && !peerId; i++) {
      const packets = (await (await fetch(at)).text()).split("\x1e");
      // Answer the first heartbeat, so the connection lives until the next one (25 s).
      if (packets.includes("2")) await fetch(at, { method: "POST", body: "3" });
      const connect = packets.find((p) => p.startsWith("40"));
      if (connect) peerId = JSON.parse(connect.slice(2)).sid;
    }
    await fetch(at, { method: "POST", body: '420["join-room",{"roomId":"stall"}]' });
    // From here on the raw client never polls: the server's buffer for it fills up.
    const a = await connect();
    await ask(a, "join-room", { roomId: "stall" });
    // The server waits up to 10 s for the target to drain before giving up on an event.
    const firstError = waitFor(a, "error", () => true, 60000);
    const n = args.n ?? 3000;
    for (let i = 0; i < n; i++) a.emit("ice-candidate", { targetId: peerId, candidate: { seq: i } });
    return { peerId, firstError: await firstError };
  },

  async flood() {
    const a = await connect();
    const b = await connect();
    await ask(b, "join-room", { roomId: "flood" });
    const n = args.n ?? 60;
    const acks = await Promise.all(Array.from({ length: n }, () => ask(a, "leave-room", { roomId: "nowhere" })));
    const r = {};
    r.codes = {};
    for (const ack of acks) r.codes[ack.error.code] = (r.codes[ack.error.code] ?? 0) + 1;
    r.stillConnected = a.connected;
    r.otherClient = await ask(b, "message", { roomId: "flood", data: 1 });
    // Bounded retry until a token is back (tokens refill at the configured rate).
    for (let i = 0; i < 100; i++) {
      r.afterFlood = await ask(a, "join-room", { roomId: "flood" });
      if (r.afterFlood.ok) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    return r;
  },

  async auth() {
    const r = {};
    for (const [name, auth] of Object.entries(args.attempts)) {
      try {
        const s = await connect({ auth, headers: args.headers?.[name], transports: [args.transports?.[name] ?? "websocket"] });
        const ack = await ask(s, "join-room", { roomId: "authed", userId: "spoofed" });
        r[name] = { connected: true, ack };
        s.disconnect();
      } catch (e) {
        r[name] = { connected: false, error: e.message };
      }
    }
    return r;
  },

  async jwtAuth() {
    const now = Math.floor(Date.now() / 1000);
    const attempts = {
      good: { token: jwt(args.secret, { sub: "carol", exp: now + 600 }) },
      forged: { token: jwt("not-the-secret", { sub: "carol", exp: now + 600 }) },
      expired: { token: jwt(args.secret, { sub: "carol", exp: now - 600 }) },
      none: undefined,
    };
    args.attempts = attempts;
    const r = await scenarios.auth();
    const headers = { authorization: `Bearer ${attempts.good.token}` };
    r.restGood = await http("GET", "/api/ice-servers", undefined, headers);
    r.restForged = await http("GET", "/api/ice-servers", undefined, { authorization: `Bearer ${attempts.forged.token}` });
    return r;
  },

  // Tokens signed with `secret` from `claims` ({name: claims}, with "NOW" + / - offsets in
  // seconds as {"nbf": ["NOW", 600]}): each tried on the handshake and as a REST bearer.
  async jwtClaims() {
    const now = Math.floor(Date.now() / 1000);
    const resolve = (v) => (Array.isArray(v) && v[0] === "NOW" ? now + v[1] : v);
    const attempts = {};
    for (const [name, claims] of Object.entries(args.claims)) {
      attempts[name] = { token: jwt(args.secret, Object.fromEntries(Object.entries(claims).map(([k, v]) => [k, resolve(v)]))) };
    }
    args.attempts = attempts;
    const socket = await scenarios.auth();
    const r = {};
    for (const [name, { token }] of Object.entries(attempts)) {
      const rest = await http("GET", "/api/ice-servers", undefined, { authorization: `Bearer ${token}` });
      r[name] = { socket: socket[name], rest: rest.status };
    }
    return r;
  },

  async adminDelete() {
    const room = await http("POST", "/api/rooms", { name: "doomed" });
    const a = await connect();
    const b = await connect();
    await ask(a, "join-room", { roomId: room.body.id });
    await ask(b, "join-room", { roomId: room.body.id });
    const r = { ids: { a: a.id, b: b.id } };
    r.noToken = await http("DELETE", `/api/rooms/${room.body.id}`);
    r.wrongToken = await http("DELETE", `/api/rooms/${room.body.id}`, undefined, { authorization: "Bearer wrong" });
    r.right = await http("DELETE", `/api/rooms/${room.body.id}`, undefined, { authorization: `Bearer ${args.admin}` });
    r.leftAtA = await waitFor(a, "user-left", (p) => p.peerId === a.id);
    r.leftAtB = await waitFor(b, "user-left", (p) => p.peerId === a.id);
    r.after = await http("GET", `/api/rooms/${room.body.id}`);
    r.messageAfter = await ask(a, "message", { roomId: room.body.id, data: 1 });
    return r;
  },

  // Connects, says so, and reports the disconnect caused by the server's shutdown.
  async shutdown() {
    const a = await connect();
    await ask(a, "join-room", { roomId: "bye" });
    const gone = new Promise((resolve) => a.once("disconnect", (reason) => resolve(reason)));
    out({ connected: true });
    return { disconnectReason: await gone };
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
} catch (e) {
  out({ error: String(e?.stack ?? e) });
}
clearTimeout(watchdog);
for (const s of sockets) s.disconnect();
process.exit(0);
