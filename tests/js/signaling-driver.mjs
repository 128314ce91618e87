// Drives switchboard-signaling with socket.io-client (the client browsers use) and prints one
// JSON object with what each client saw; the Rust tests in tests/tests/signaling*.rs assert on it.
//
// Usage: node signaling-driver.mjs SCENARIO URL[,URL...] [ARGS_JSON]
// URL may be a comma-separated list of base URLs, one per signaling instance of a cluster:
// `connect()` then gives client k the URL urls[k % n] (unless the scenario names one), and
// `http()` goes to urls[0] (unless given one). With one URL, everything goes there.
// Every wait is bounded: a watchdog ends the process with {"error": "..."} after 90 s.
// Scenarios with stages print intermediate JSON lines ({"stage": ...}) before the final one,
// and some wait for a command line on stdin from the test between stages.

import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { io } from "socket.io-client";
// A raw WebSocket for the attacks (the version socket.io-client itself uses).
import WebSocket from "ws";

const [, , scenario, urlList, argsJson] = process.argv;
const urls = urlList.split(",").filter((u) => u.length > 0);
// The first instance: REST calls and raw clients go here unless told otherwise.
const url = urls[0];
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
let connects = 0;

/** Connects (to `opts.url`, else round-robin over `urls`); resolves with the socket, rejects
 * with the connect_error message. `s.url` is the instance the socket talks to. */
function connect(opts = {}) {
  const at = opts.url ?? urls[connects++ % urls.length];
  return new Promise((resolve, reject) => {
    const s = io(at, {
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
    s.url = at;
    s.log = [];
    s.onAny((event, payload) => s.log.push([event, payload]));
    s.on("disconnect", (reason) => {
      s.disconnectReason = reason;
    });
    s.once("connect", () => resolve(s));
    s.once("connect_error", (e) => reject(new Error(e.message)));
  });
}

/** Emits with an ack and resolves with the ack body. A `join-room` ack tells the socket its
 * peer id (`self.peerId`), which is random and is not `socket.id` (the Engine.IO sid). */
async function ask(s, event, data) {
  const ack = await s.timeout(WAIT_MS).emitWithAck(event, data);
  if (event === "join-room" && ack && ack.ok && ack.self) s.peerId = ack.self.peerId;
  return ack;
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

/** Resolves with the first `n` `event` payloads once that many have arrived. */
async function waitForCount(s, event, n, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  while (seen(s, event).length < n) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`fewer than ${n} ${event} within ${ms} ms`);
    const have = seen(s, event).length;
    await waitFor(s, event, () => seen(s, event).length > have, left).catch(() => {});
  }
  return seen(s, event).slice(0, n);
}

/** A round trip through the server: everything queued for `s` before it has arrived. */
async function barrier(s) {
  return ask(s, "leave-room", { roomId: "barrier-no-such-room" });
}

/** One REST call to `at` (default: the first instance). */
async function http(method, path, body, headers = {}, at = url) {
  const res = await fetch(at + path, {
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

/** The next command line the test writes on stdin (staged scenarios), within `ms`. */
const commands = { lines: [], waiting: null, reader: null };
function nextCommand(ms = 60000) {
  if (!commands.reader) {
    commands.reader = createInterface({ input: process.stdin });
    commands.reader.on("line", (line) => {
      if (commands.waiting) commands.waiting(line.trim());
      else commands.lines.push(line.trim());
    });
  }
  if (commands.lines.length > 0) return Promise.resolve(commands.lines.shift());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      commands.waiting = null;
      reject(new Error(`no command on stdin within ${ms} ms`));
    }, ms);
    commands.waiting = (line) => {
      clearTimeout(timer);
      commands.waiting = null;
      resolve(line);
    };
  });
}

/** Waits for the command `expected` on stdin; anything else is an error. */
async function expectCommand(expected, ms) {
  const got = await nextCommand(ms);
  if (got !== expected) throw new Error(`expected command ${expected} on stdin, got ${JSON.stringify(got)}`);
}

/** An ask answered within `ms`, or the string "no-ack" (the server stayed silent). Resolves
 * with "ok" or the error code. */
async function askCode(s, event, data, ms = 5000) {
  try {
    const ack = await s.timeout(ms).emitWithAck(event, data);
    if (ack && ack.ok === true) return "ok";
    return ack?.error?.code ?? `odd-ack ${JSON.stringify(ack)}`;
  } catch {
    return "no-ack";
  }
}

/** Resolves with the disconnect reason of `s` (already happened or future), or rejects. */
function disconnected(s, ms = WAIT_MS) {
  if (!s.connected && s.disconnectReason !== undefined) return Promise.resolve(s.disconnectReason);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no disconnect within ${ms} ms`)), ms);
    s.once("disconnect", (reason) => {
      clearTimeout(timer);
      resolve(reason);
    });
  });
}

/** VmRSS of process `pid` in KiB (Linux /proc). */
function vmRssKiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const line = status.split("\n").find((l) => l.startsWith("VmRSS:"));
  return line ? Number(line.split(/\s+/)[1]) : null;
}

/** The admin token's header when the test gave one (`args.admin`): REST shows members only to it. */
function adminHeaders() {
  return args.admin ? { authorization: `Bearer ${args.admin}` } : {};
}

function jwt(secret, claims) {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64(claims);
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

/** A raw long-polling client that joins `room` and then never polls again (it answers the
 * first heartbeat, so it lives until the next one, 25 s); its peer id, which comes in the
 * join ack (`self.peerId`) and is not the Engine.IO sid. */
async function pollingTargetThatStops(room) {
  const base = `${url}/socket.io/?EIO=4&transport=polling`;
  const open = await (await fetch(base)).text();
  const at = `${base}&sid=${JSON.parse(open.slice(1)).sid}`;
  await fetch(at, { method: "POST", body: "40" });
  let peerId;
  let joined = false;
  for (let i = 0; i < 8 && !peerId; i++) {
    const packets = (await (await fetch(at)).text()).split("\x1e");
    if (packets.includes("2")) await fetch(at, { method: "POST", body: "3" });
    if (!joined && packets.some((p) => p.startsWith("40"))) {
      joined = true;
      await fetch(at, { method: "POST", body: `420["join-room",{"roomId":"${room}"}]` });
    }
    const ack = packets.find((p) => p.startsWith("430"));
    if (ack) peerId = JSON.parse(ack.slice(3))[0].self.peerId;
  }
  return peerId;
}

/** Signals to a target that no longer reads, until it is closed as a slow reader: how many
 * were queued, and how many of those came back to the sender as `unknown-peer`. `ws`, a raw
 * WebSocket target, is read again at the end to see the server's close. */
async function stalledAnswers(peerId, ws) {
  const closed = ws ? new Promise((res) => ws.on("close", () => res(true))) : null;
  const a = await connect();
  await ask(a, "join-room", { roomId: "stall" });
  const left = waitFor(a, "user-left", (p) => p.peerId === peerId, 60000).then(() => true, () => false);
  let gone = false;
  left.then((v) => (gone = v));
  const data = "s".repeat(args.bytes ?? 32768);
  const acks = [];
  for (let i = 0; i < (args.n ?? 2000) && !gone; i += 50) {
    const batch = [];
    for (let j = 0; j < 50; j++) batch.push(ask(a, "signal", { to: peerId, data }));
    acks.push(...(await Promise.all(batch)));
  }
  const r = { sent: acks.length, queued: acks.filter((k) => k.ok).length, targetLeft: await left };
  const lost = (e) => e.event === "signal" && e.code === "unknown-peer";
  r.firstAnswer = await waitFor(a, "error", lost).catch((e) => String(e));
  await barrier(a);
  r.answeredUnknownPeer = seen(a, "error").filter(lost).length;
  r.senderConnected = a.connected;
  if (ws) {
    // Reading again, the target drains what the kernel holds and then sees the server's close.
    ws._socket.resume();
    r.targetClosed = await Promise.race([closed, new Promise((res) => setTimeout(() => res(false), WAIT_MS))]);
  }
  return r;
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
    r.offerAck = await ask(a, "offer", { targetId: b.peerId, offer: { type: "offer", sdp: "v=0" }, roomId: "events", from: "forged" });
    r.offerAtB = await waitFor(b, "offer");
    r.answerAck = await ask(b, "answer", { targetId: a.peerId, answer: { type: "answer", sdp: "v=0" } });
    r.answerAtA = await waitFor(a, "answer");
    r.candidateAck = await ask(a, "ice-candidate", { targetId: b.peerId, candidate: { candidate: "candidate:1", sdpMid: "0" } });
    r.candidateAtB = await waitFor(b, "ice-candidate");
    r.signalAck = await ask(b, "signal", { to: a.peerId, data: { kind: "renegotiate" } });
    r.signalAtA = await waitFor(a, "signal");
    r.messageAck = await ask(a, "message", { roomId: "events", data: { text: "hi" } });
    r.messageAtB = await waitFor(b, "message");
    r.updateAck = await ask(b, "update-state", { roomId: "events", state: { muted: true } });
    r.peerUpdatedAtA = await waitFor(a, "peer-updated");
    r.roomAfterUpdate = (await http("GET", "/api/rooms/events", undefined, adminHeaders())).body;
    // Without an ack, a failure comes back as an `error` event.
    b.emit("offer", { targetId: "no-such-peer", offer: {} });
    r.errorEventAtB = await waitFor(b, "error");
    r.leaveAck = await ask(b, "leave-room", { roomId: "events" });
    r.userLeftAtA = await waitFor(a, "user-left");
    r.leaveAgainAck = await ask(b, "leave-room", { roomId: "events" });
    r.ids = { a: a.peerId, b: b.peerId };
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
      a.emit("ice-candidate", { targetId: b.peerId, candidate: { seq: i, candidate: "candidate:x", pad } });
    }
    a.emit("signal", { to: b.peerId, data: "end" });
    const failed = new Promise((resolve) => a.on("error", resolve));
    await Promise.race([done, failed]);
    let outOfOrder = 0;
    for (let i = 1; i < got.length; i++) if (got[i] < got[i - 1]) outOfOrder++;
    const unique = new Set(got).size;
    return { sent: n, received: got.length, unique, outOfOrder, inOrder: got.every((v, i) => v === i), errorsAtSender: seen(a, "error") };
  },

  // `ice-servers` (SPEC section 4), with a short `turn.credential_ttl` (T = 0.9 × ttl).
  // `never` connects and never joins; `quitter` joins, waits for its first refresh (t ≈ T) and
  // leaves; then `stayer` joins and waits for two refreshes (t ≈ 2T, 3T). Had leaving not
  // stopped the quitter's timer, its next refresh was due at ≈ 2T; had `never` a timer, at ≈ T:
  // both long before the stayer's second. The barriers make sure everything the server queued
  // for them by then has arrived. `args.auth` is the handshake auth of every socket.
  async iceRefresh() {
    const ms = args.waitMs ?? 60000;
    const auth = args.auth;
    const never = await connect({ auth });
    const quitter = await connect({ auth });
    const stayer = await connect({ auth });
    const r = {};
    r.quitterJoin = await ask(quitter, "join-room", { roomId: "ice-quitter" });
    r.quitterRefresh = (await waitForCount(quitter, "ice-servers", 1, ms))[0];
    r.quitterLeave = await ask(quitter, "leave-room", { roomId: "ice-quitter" });
    r.stayerJoin = await ask(stayer, "join-room", { roomId: "ice-stayer" });
    r.stayerRefreshes = await waitForCount(stayer, "ice-servers", 2, ms);
    await barrier(never);
    await barrier(quitter);
    r.neverGot = seen(never, "ice-servers").length;
    r.quitterGot = seen(quitter, "ice-servers").length;
    r.nowUnix = Math.floor(Date.now() / 1000);
    return r;
  },

  // `ice-servers` stop when a socket's only room is deleted over REST (T = 0.9 × ttl): `member`
  // joins a REST-created room and `clock` another room at the same time; the room is deleted at
  // once. Had the member's timer kept going, its refresh was due at ≈ T, long before the
  // clock's second (≈ 2T).
  async iceRefreshDeleted() {
    const ms = args.waitMs ?? 60000;
    const room = await http("POST", "/api/rooms", { name: "ice-deleted" });
    const member = await connect();
    const clock = await connect();
    const r = {};
    r.memberJoin = await ask(member, "join-room", { roomId: room.body.id });
    r.clockJoin = await ask(clock, "join-room", { roomId: "ice-clock" });
    r.deleted = (await http("DELETE", `/api/rooms/${room.body.id}`, undefined, adminHeaders())).status;
    r.userLeft = await waitFor(member, "user-left");
    r.clockRefreshes = (await waitForCount(clock, "ice-servers", 2, ms)).length;
    await barrier(member);
    r.memberGot = seen(member, "ice-servers").length;
    return r;
  },

  // Joiners race for the last seat, over several rounds: exactly one gets in each time.
  // With several URLs the racers are spread over the instances, and each round creates its
  // room on one instance and reads it back on another. `freeForm: true`: the room is made by
  // the first join instead (capacity: the server's `max_peers_per_room`).
  async race() {
    const rounds = args.rounds ?? 10;
    const contenders = args.contenders ?? 2;
    const results = [];
    for (let i = 0; i < rounds; i++) {
      let id = `race-free-${i}`;
      if (!args.freeForm) {
        const room = await http("POST", "/api/rooms", { maxPeers: 2, name: `race-${i}` }, {}, urls[(i + 1) % urls.length]);
        id = room.body.id;
      }
      const first = await connect();
      const firstAck = await ask(first, "join-room", { roomId: id });
      if (!firstAck.ok) throw new Error(`round ${i}: the first joiner was refused: ${JSON.stringify(firstAck)}`);
      const racers = await Promise.all(Array.from({ length: contenders }, () => connect()));
      const acks = await Promise.all(racers.map((s) => ask(s, "join-room", { roomId: id })));
      const info = await http("GET", `/api/rooms/${id}`, undefined, {}, urls[i % urls.length]);
      results.push({ oks: acks.filter((a) => a.ok).length, codes: acks.filter((a) => !a.ok).map((a) => a.error.code), members: info.body.peerCount, instances: new Set([first, ...racers].map((s) => s.url)).size });
      for (const s of [first, ...racers]) s.disconnect();
    }
    return { results };
  },

  // Peers in different rooms cannot reach each other.
  // Two clients (on the URLs given, round-robin) join one room id: what each sees of the
  // other. Two deployments with their own Redis prefixes must see two rooms.
  async sameRoom() {
    const a = await connect();
    const b = await connect();
    const room = args.room ?? "same-room";
    const ja = await ask(a, "join-room", { roomId: room });
    const jb = await ask(b, "join-room", { roomId: room });
    const offer = await ask(a, "offer", { targetId: b.peerId, offer: {} });
    return { aPeers: ja.peers.length, bPeers: jb.peers.length, offer };
  },

  async isolation() {
    const a = await connect();
    const b = await connect();
    const c = await connect();
    await ask(a, "join-room", { roomId: "iso-1" });
    await ask(b, "join-room", { roomId: "iso-1" });
    await ask(c, "join-room", { roomId: "iso-2" });
    const r = {};
    r.offerToOtherRoom = await ask(a, "offer", { targetId: c.peerId, offer: { type: "offer", sdp: "x" } });
    r.candidateToOtherRoom = await ask(a, "ice-candidate", { targetId: c.peerId, candidate: {} });
    r.signalToOtherRoom = await ask(a, "signal", { to: c.peerId, data: 1 });
    r.offerNamingOtherRoom = await ask(a, "offer", { targetId: c.peerId, offer: {}, roomId: "iso-2" });
    r.messageToOtherRoom = await ask(a, "message", { roomId: "iso-2", data: "psst" });
    r.stateInOtherRoom = await ask(a, "update-state", { roomId: "iso-2", state: {} });
    r.offerToSelf = await ask(a, "offer", { targetId: a.peerId, offer: {} });
    await barrier(c);
    r.deliveredToC = c.log.filter(([e]) => ["offer", "ice-candidate", "signal", "message", "peer-updated"].includes(e)).length;
    r.offerInRoomStillWorks = await ask(a, "offer", { targetId: b.peerId, offer: {} });
    await waitFor(b, "offer");
    if (args.pairBarrier) {
      // Across instances `barrier(c)` only flushes c's own instance. A barrier for the a → c
      // pair: c joins a's room and a sends it a marker; per-pair order puts anything a's
      // refused events had let through before it.
      r.cJoinsIso1 = await ask(c, "join-room", { roomId: "iso-1" });
      r.markerAck = await ask(a, "offer", { targetId: c.peerId, offer: { type: "offer", sdp: "marker" } });
      await waitFor(c, "offer", (p) => p.offer.sdp === "marker");
      await barrier(c);
      r.deliveredToCBeforeMarker = c.log.filter(
        ([e, p]) => ["offer", "ice-candidate", "signal", "message", "peer-updated"].includes(e) && !(e === "offer" && p.offer?.sdp === "marker"),
      ).length;
    }
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
    const bId = b.peerId;
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
    r.missingOffer = await ask(a, "offer", { targetId: b.peerId });
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
    r.bStillWorks = await ask(b, "signal", { to: a.peerId, data: "ok" });
    r.messagesAtB = seen(b, "message").length;
    // `max_rooms_per_socket` (4 in the tests): a is in "bad" and gets three more, not four.
    r.extraRooms = [];
    for (const room of ["cap-1", "cap-2", "cap-3", "cap-4"]) r.extraRooms.push(await ask(a, "join-room", { roomId: room }));
    return r;
  },

  // The WebSocket transport spoken raw, as a hand-written or hostile client would: the open
  // packet, a CONNECT to another namespace (refused, the session kept), CONNECT, acks, a
  // binary event (refused with bad-request, its attachment skipped, nothing relayed), then
  // a frame that is not Engine.IO, which closes that connection only.
  async rawWire() {
    const b = await connect();
    await ask(b, "join-room", { roomId: "raw" });
    const ws = new WebSocket(`${url.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket`);
    const got = [];
    let wake = () => {};
    let closeCode = null;
    ws.on("error", () => {});
    ws.on("close", (code) => {
      closeCode = code;
      wake();
    });
    ws.on("message", (m) => {
      const t = String(m);
      if (t === "2") ws.send("3");
      else got.push(t);
      wake();
    });
    // The first packet received (or to come) that starts with `prefix`, within WAIT_MS.
    const next = async (prefix) => {
      const deadline = Date.now() + WAIT_MS;
      for (;;) {
        const i = got.findIndex((t) => t.startsWith(prefix));
        if (i >= 0) return got.splice(i, 1)[0];
        const left = deadline - Date.now();
        if (closeCode !== null || left <= 0) return null;
        await new Promise((res) => {
          const timer = setTimeout(res, left);
          wake = () => {
            clearTimeout(timer);
            res();
          };
        });
      }
    };
    const json = (t, skip) => (t === null ? null : JSON.parse(t.slice(skip)));
    await new Promise((res, rej) => {
      ws.once("open", res);
      ws.once("error", rej);
    });
    const r = {};
    r.open = json(await next("0{"), 1);
    ws.send("40/elsewhere,");
    r.otherNamespace = await next("44/elsewhere,");
    ws.send("40");
    r.connected = json(await next("40{"), 2);
    ws.send('420["join-room",{"roomId":"raw"}]');
    r.joinAck = json(await next("430["), 3);
    ws.send('451-["message",{"roomId":"raw","data":{"_placeholder":true,"num":0}}]');
    ws.send(Buffer.from([1, 2, 3]));
    r.binaryRefused = json(await next('42["error",'), 2);
    ws.send('421["message",{"roomId":"raw","data":"raw hello"}]');
    r.messageAck = json(await next("431["), 3);
    r.bGotMessage = await waitFor(b, "message", (p) => p.data === "raw hello");
    const rawPeer = r.joinAck?.[0]?.self?.peerId;
    const left = waitFor(b, "user-left", (p) => p.peerId === rawPeer).then(() => true, () => false);
    ws.send("this is not engine.io");
    r.closed = (await next("\u0000never")) === null && closeCode !== null;
    r.bSawRawLeave = await left;
    r.bStillWorks = await ask(b, "update-state", { roomId: "raw", state: { ok: true } });
    await barrier(b);
    r.messagesAtB = seen(b, "message").map((p) => p.data);
    return r;
  },

  // A raw WebSocket target that joins and then stops reading: signals sent to it fill the
  // kernel's buffers, then its outbound queue, until the server closes it as a slow reader.
  // Every signal acked as queued that the server still held is answered to its sender with
  // `unknown-peer` (nothing held is dropped silently).
  // With `target: "polling"` the target is a raw long-polling client that stops polling.
  async stalledTargetAnswers() {
    if (args.target === "polling") return stalledAnswers(await pollingTargetThatStops("stall"), null);
    const ws = new WebSocket(`${url.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket`);
    ws.on("error", () => {});
    const peerId = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("raw target never joined")), WAIT_MS);
      ws.on("message", (m) => {
        const t = String(m);
        if (t.startsWith("0{")) ws.send("40");
        else if (t.startsWith("40{")) ws.send('420["join-room",{"roomId":"stall"}]');
        else if (t.startsWith("430[")) {
          clearTimeout(timer);
          // From here on the target reads nothing.
          ws._socket.pause();
          resolve(JSON.parse(t.slice(3))[0].self.peerId);
        }
      });
    });
    return stalledAnswers(peerId, ws);
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
    const peerId = await pollingTargetThatStops("stall");
    // From here on the raw client never polls: the server's buffer for it fills up.
    const a = await connect();
    await ask(a, "join-room", { roomId: "stall" });
    // The server waits up to 10 s for the target to drain before giving up on an event.
    const firstError = waitFor(a, "error", () => true, 60000);
    const n = args.n ?? 3000;
    for (let i = 0; i < n; i++) a.emit("ice-candidate", { targetId: peerId, candidate: { seq: i } });
    return { peerId, firstError: await firstError };
  },

  // Issue 12: an attacker who learned a long-polling victim's peer id (every room-mate
  // does) tries to use it as the Engine.IO sid: send on the session, read from it, upgrade it.
  async hijack() {
    const bystander = await connect();
    const victim = await connect({ transports: ["polling"] });
    await ask(bystander, "join-room", { roomId: "hijack" });
    await ask(victim, "join-room", { roomId: "hijack" });
    const joined = await waitFor(bystander, "user-joined");
    const peerId = joined.peer.peerId;
    const r = { peerId, victimEngineSid: victim.io.engine.id };
    const at = `${url}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(peerId)}`;
    const forged = [
      '42["message",{"roomId":"hijack","data":"forged"}]',
      `42["offer",{"targetId":${JSON.stringify(bystander.peerId)},"offer":{"type":"offer","sdp":"forged"}}]`,
    ].join("\x1e");
    const post = await fetch(at, { method: "POST", body: forged });
    r.postStatus = post.status;
    r.postBody = await post.text();
    const ctl = new AbortController();
    const readTimer = setTimeout(() => ctl.abort(), 5000);
    try {
      const get = await fetch(at, { signal: ctl.signal });
      r.getStatus = get.status;
    } catch (e) {
      r.getStatus = `aborted: ${e.name}`;
    }
    clearTimeout(readTimer);
    const wsUrl = `${url.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket&sid=${encodeURIComponent(peerId)}`;
    r.upgrade = await new Promise((resolve) => {
      const ws = new WebSocket(wsUrl);
      const got = [];
      const done = (outcome) => {
        clearTimeout(timer);
        ws.removeAllListeners();
        ws.on("error", () => {});
        ws.terminate();
        resolve({ outcome, got });
      };
      const timer = setTimeout(() => done("no answer"), 5000);
      ws.on("open", () => ws.send("2probe"));
      ws.on("message", (m) => {
        got.push(String(m));
        if (String(m) === "3probe") {
          ws.send("5");
          done("upgraded");
        }
      });
      ws.on("unexpected-response", (_req, res) => done(`http ${res.statusCode}`));
      ws.on("error", (e) => done(`error: ${e.message}`));
      ws.on("close", () => done("closed"));
    });
    await ask(victim, "message", { roomId: "hijack", data: "genuine" });
    await waitFor(bystander, "message", (p) => p.data === "genuine");
    await barrier(bystander);
    r.forgedMessages = seen(bystander, "message").filter((p) => p.data === "forged").length;
    r.forgedOffers = seen(bystander, "offer").length;
    r.genuineMessages = seen(bystander, "message").filter((p) => p.data === "genuine").length;
    r.victimConnected = victim.connected;
    r.victimStillWorks = await ask(victim, "update-state", { roomId: "hijack", state: { ok: true } });
    return r;
  },

  // REST privacy: members' peer ids, user ids and metadata only with the admin token.
  async privacy() {
    const a = await connect();
    await ask(a, "join-room", { roomId: "private", userId: "alice-secret-user", metadata: { note: "secret-metadata" } });
    const r = { peerId: a.peerId };
    r.listAnon = await http("GET", "/api/rooms");
    r.oneAnon = await http("GET", "/api/rooms/private");
    r.listWrong = await http("GET", "/api/rooms", undefined, { authorization: "Bearer not-the-admin" });
    r.oneWrong = await http("GET", "/api/rooms/private", undefined, { authorization: "Bearer not-the-admin" });
    r.listAdmin = await http("GET", "/api/rooms", undefined, adminHeaders());
    r.oneAdmin = await http("GET", "/api/rooms/private", undefined, adminHeaders());
    return r;
  },

  // Persistent rooms with no member go after `persistent_room_idle`; one with a member stays.
  async idleRooms() {
    const idle = await http("POST", "/api/rooms", { name: "idle" });
    const used = await http("POST", "/api/rooms", { name: "used" });
    const a = await connect();
    const r = { join: await ask(a, "join-room", { roomId: used.body.id }) };
    // Bounded poll of the REST state (deadline 30 s): the sweep runs every idle / 2.
    for (let i = 0; i < 150; i++) {
      r.idleAfter = await http("GET", `/api/rooms/${idle.body.id}`);
      if (r.idleAfter.status === 404) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    r.usedAfter = await http("GET", `/api/rooms/${used.body.id}`);
    a.disconnect();
    for (let i = 0; i < 150; i++) {
      r.usedAfterLeaving = await http("GET", `/api/rooms/${used.body.id}`);
      if (r.usedAfterLeaving.status === 404) break;
      await new Promise((res) => setTimeout(res, 200));
    }
    return r;
  },

  // Issue 12: clients each stream an unfinished, huge, fragmented WebSocket message. The
  // server must stop reading at its message limit and close, not buffer it all.
  async fragmentFlood() {
    const clients = args.clients ?? 4;
    const mib = args.mib ?? 45;
    const rss = () => vmRssKiB(args.pid);
    const r = { rssBeforeKiB: rss() };
    const wsUrl = `${url.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket`;
    const one = () =>
      new Promise((resolve) => {
        const ws = new WebSocket(wsUrl);
        const st = { sentBytes: 0, closed: false, connected: false };
        let finished = false;
        const finish = () => {
          if (!finished) {
            finished = true;
            resolve({ ws, st });
          }
        };
        ws.on("error", () => {
          st.closed = true;
          finish();
        });
        ws.on("close", () => {
          st.closed = true;
          finish();
        });
        ws.on("message", async (m) => {
          const text = String(m);
          if (text.startsWith("0{")) ws.send("40");
          if (text === "2") ws.send("3");
          if (!text.startsWith("40") || st.connected) return;
          st.connected = true;
          const chunk = "x".repeat(1 << 20);
          const send = (data) => new Promise((res) => ws.send(data, { fin: false }, (err) => res(!err)));
          let ok = await send('42["message",{"roomId":"frag","data":"' + chunk);
          for (let i = 1; i < mib && ok && !st.closed; i++) {
            st.sentBytes += chunk.length;
            ok = await send(chunk);
          }
          finish();
        });
      });
    const results = await Promise.all(Array.from({ length: clients }, one));
    // Measured while the connections the server kept are still open (never finished).
    r.rssDuringKiB = rss();
    r.clients = results.map(({ st }) => st);
    const legit = await connect();
    r.legitJoin = await ask(legit, "join-room", { roomId: "frag-ok" });
    for (const { ws } of results) ws.terminate();
    return r;
  },

  // `max_connections_per_ip`: n connections from one address work, the next is refused with
  // a clear HTTP error; closing one makes room again.
  async perIpCap() {
    const n = args.n ?? 256;
    const open = [];
    for (let i = 0; i < n; i += 32) {
      const batch = await Promise.all(Array.from({ length: Math.min(32, n - i) }, () => connect()));
      open.push(...batch);
    }
    const r = { opened: open.length };
    try {
      await connect();
      r.extra = "connected";
    } catch (e) {
      r.extra = `refused: ${e.message}`;
    }
    const res = await fetch(`${url}/socket.io/?EIO=4&transport=polling`);
    r.handshakeStatus = res.status;
    r.handshakeBody = await res.text();
    r.restStillWorks = (await http("GET", "/health")).status;
    open[0].disconnect();
    r.afterClose = "refused";
    for (let i = 0; i < 200 && r.afterClose !== "connected"; i++) {
      try {
        await connect();
        r.afterClose = "connected";
      } catch (e) {
        r.afterClose = `refused: ${e.message}`;
        await new Promise((res) => setTimeout(res, 100));
      }
    }
    return r;
  },

  // Engine.IO sessions opened and never connected (no Socket.IO CONNECT) count against
  // `max_connections_per_ip` too, until the connect timeout closes them.
  async halfOpenCap() {
    const n = args.n ?? 8;
    const r = { statuses: [] };
    for (let i = 0; i < n + 1; i++) {
      const res = await fetch(`${url}/socket.io/?EIO=4&transport=polling`);
      r.statuses.push(res.status);
      await res.text();
    }
    try {
      await connect();
      r.client = "connected";
    } catch (e) {
      r.client = `refused: ${e.message}`;
    }
    return r;
  },

  // A target that never reads while a sender streams large messages at it: the target is
  // disconnected once its outbound queue passes the byte cap; the sender is told `user-left`.
  async slowReader() {
    const peerId = await pollingTargetThatStops("slow");
    // From here on the target never polls.
    const a = await connect();
    await ask(a, "join-room", { roomId: "slow" });
    const left = waitFor(a, "user-left", (p) => p.peerId === peerId, 30000).then(() => true, () => false);
    const data = "m".repeat(args.bytes ?? 32768);
    const n = args.n ?? 1000;
    let sent = 0;
    let gone = false;
    left.then((v) => (gone = v));
    for (let i = 0; i < n && !gone; i += 50) {
      for (let j = 0; j < 50; j++) a.emit("message", { roomId: "slow", data });
      sent += 50;
      await barrier(a);
    }
    return { peerId, sent, targetLeft: await left, senderConnected: a.connected };
  },

  // Issue 12 acceptance (signaling part): 1,000 persistent rooms and a stream of oversized
  // and hostile events from one client, while a legitimate pair keeps relaying offers.
  async hostileFlood() {
    const rounds = args.rounds ?? 10;
    const roomsPerRound = args.roomsPerRound ?? 100;
    const rss = () => vmRssKiB(args.pid);
    const r = { rssBeforeKiB: rss(), offers: [], created: 0, refusedCreates: 0, rssMaxKiB: 0 };
    const a = await connect();
    const b = await connect({ transports: ["polling"] });
    await ask(a, "join-room", { roomId: "legit" });
    await ask(b, "join-room", { roomId: "legit" });
    let x = await connect();
    const big = "z".repeat(args.bigBytes ?? 100000);
    for (let round = 0; round < rounds; round++) {
      const made = await Promise.all(Array.from({ length: roomsPerRound }, () => http("POST", "/api/rooms", { name: "flood" })));
      for (const m of made) {
        if (m.status === 201) r.created++;
        else if (m.status === 429) r.refusedCreates++;
      }
      for (let i = 0; i < 20; i++) {
        x.emit("message", { roomId: "legit", data: big });
        x.emit("hack-the-planet", { i });
        x.emit("join-room", { roomId: "no spaces/allowed", metadata: big.slice(0, 50000) });
        x.emit("offer", { targetId: a.peerId ?? "guess", offer: big.slice(0, 60000) });
      }
      // One message beyond the transport limit: that connection is closed; the attacker
      // reconnects and goes on.
      const closed = new Promise((res) => x.once("disconnect", () => res(true)));
      x.emit("message", { roomId: "legit", data: "w".repeat(2_000_000) });
      await closed;
      x = await connect();
      const offerAck = await ask(a, "offer", { targetId: b.peerId, offer: { type: "offer", sdp: `round-${round}` } });
      const got = await waitFor(b, "offer", (p) => p.offer.sdp === `round-${round}`).then(() => true, () => false);
      r.offers.push({ ok: offerAck.ok === true, delivered: got });
      r.rssMaxKiB = Math.max(r.rssMaxKiB, rss());
    }
    r.extraCreate = await http("POST", "/api/rooms", {});
    const list = await fetch(`${url}/api/rooms`);
    r.listBytes = (await list.text()).length;
    r.rssAfterKiB = rss();
    r.bLate = await ask(b, "join-room", { roomId: "legit-2" });
    return r;
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
    const r = { ids: { a: a.peerId, b: b.peerId } };
    r.noToken = await http("DELETE", `/api/rooms/${room.body.id}`);
    r.wrongToken = await http("DELETE", `/api/rooms/${room.body.id}`, undefined, { authorization: "Bearer wrong" });
    r.right = await http("DELETE", `/api/rooms/${room.body.id}`, undefined, { authorization: `Bearer ${args.admin}` });
    r.leftAtA = await waitFor(a, "user-left", (p) => p.peerId === a.peerId);
    r.leftAtB = await waitFor(b, "user-left", (p) => p.peerId === a.peerId);
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

  // ---- Multi-instance (SPEC section 4, "Multi-instance"): URL is a list, one per instance. ----

  // a, b and c are given the instances round-robin (three URLs: one each). All join one room;
  // every relayed event type crosses between a and b both ways; c sees the room-wide events;
  // leave-room on one instance is seen on the others.
  async clusterJoin() {
    const room = args.room ?? "cluster";
    const a = await connect();
    const b = await connect({ transports: [args.transportB ?? "websocket"] });
    const c = await connect();
    const r = { instances: [a.url, b.url, c.url] };
    r.joinA = await ask(a, "join-room", { roomId: room, userId: "ann", displayName: "Ann", metadata: { role: "host" } });
    r.roomUsersA = await waitFor(a, "room-users", (p) => p.roomId === room);
    r.joinB = await ask(b, "join-room", { roomId: room, userId: "bob", displayName: "Bob" });
    r.roomUsersB = await waitFor(b, "room-users", (p) => p.roomId === room);
    r.bJoinedAtA = await waitFor(a, "user-joined", (p) => p.peer?.peerId === b.peerId);
    r.joinC = await ask(c, "join-room", { roomId: room, displayName: "Cy" });
    r.roomUsersC = await waitFor(c, "room-users", (p) => p.roomId === room);
    r.cJoinedAtA = await waitFor(a, "user-joined", (p) => p.peer?.peerId === c.peerId);
    r.cJoinedAtB = await waitFor(b, "user-joined", (p) => p.peer?.peerId === c.peerId);
    r.ids = { a: a.peerId, b: b.peerId, c: c.peerId };
    r.relay = {};
    for (const [from, to, dir] of [[a, b, "ab"], [b, a, "ba"]]) {
      const d = {};
      d.offerAck = await ask(from, "offer", { targetId: to.peerId, offer: { type: "offer", sdp: `offer-${dir}` }, roomId: room, from: "forged" });
      d.offer = await waitFor(to, "offer", (p) => p.offer?.sdp === `offer-${dir}`);
      d.answerAck = await ask(from, "answer", { targetId: to.peerId, answer: { type: "answer", sdp: `answer-${dir}` } });
      d.answer = await waitFor(to, "answer", (p) => p.answer?.sdp === `answer-${dir}`);
      d.candidateAck = await ask(from, "ice-candidate", { targetId: to.peerId, candidate: { candidate: `candidate:${dir}`, sdpMid: "0" } });
      d.candidate = await waitFor(to, "ice-candidate", (p) => p.candidate?.candidate === `candidate:${dir}`);
      d.signalAck = await ask(from, "signal", { to: to.peerId, data: { kind: `signal-${dir}` } });
      d.signal = await waitFor(to, "signal", (p) => p.data?.kind === `signal-${dir}`);
      d.messageAck = await ask(from, "message", { roomId: room, data: { text: `message-${dir}` } });
      d.message = await waitFor(to, "message", (p) => p.data?.text === `message-${dir}`);
      d.messageAtC = await waitFor(c, "message", (p) => p.data?.text === `message-${dir}`);
      d.updateAck = await ask(from, "update-state", { roomId: room, state: { dir } });
      d.peerUpdated = await waitFor(to, "peer-updated", (p) => p.state?.dir === dir);
      d.peerUpdatedAtC = await waitFor(c, "peer-updated", (p) => p.state?.dir === dir);
      r.relay[dir] = d;
    }
    // The room as the last instance sees it: both states stored.
    r.roomView = (await http("GET", `/api/rooms/${room}`, undefined, adminHeaders(), urls[urls.length - 1])).body;
    // c got a's and b's messages after their pair events (order per sender → target), so any
    // pair event misdelivered to c would be in its log by now.
    r.pairEventsAtC = c.log.filter(([e]) => ["offer", "answer", "ice-candidate", "signal"].includes(e)).length;
    r.ownMessages = seen(a, "message").filter((p) => p.from === a.peerId).length + seen(b, "message").filter((p) => p.from === b.peerId).length;
    r.leaveB = await ask(b, "leave-room", { roomId: room });
    r.bLeftAtA = await waitFor(a, "user-left", (p) => p.peerId === b.peerId);
    r.bLeftAtC = await waitFor(c, "user-left", (p) => p.peerId === b.peerId);
    r.offerToLeaver = await ask(a, "offer", { targetId: b.peerId, offer: { type: "offer", sdp: "late" } });
    r.roomAfterLeave = await http("GET", `/api/rooms/${room}`, undefined, {}, urls[1 % urls.length]);
    return r;
  },

  // Room passwords across instances: a room made with a password by a join on the first
  // instance is checked on the second; a REST room with a password made on the second is
  // checked on the first.
  async clusterPassword() {
    const a = await connect({ url: urls[0] });
    const b = await connect({ url: urls[1 % urls.length] });
    const c = await connect({ url: urls[0] });
    const r = {};
    r.create = await ask(a, "join-room", { roomId: "locked-cluster", password: "s3cret" });
    r.missing = await ask(b, "join-room", { roomId: "locked-cluster" });
    r.wrong = await ask(b, "join-room", { roomId: "locked-cluster", password: "guess" });
    r.right = await ask(b, "join-room", { roomId: "locked-cluster", password: "s3cret" });
    r.bJoinedAtA = await waitFor(a, "user-joined", (p) => p.peer?.peerId === b.peerId);
    r.restRoom = await http("POST", "/api/rooms", { name: "rest-locked", password: "pw" }, {}, urls[1 % urls.length]);
    r.restWrong = await ask(c, "join-room", { roomId: r.restRoom.body?.id, password: "nope" });
    r.restRight = await ask(c, "join-room", { roomId: r.restRoom.body?.id, password: "pw" });
    r.viewAtOther = await http("GET", "/api/rooms/locked-cluster", undefined, {}, urls[1 % urls.length]);
    r.listing = [];
    for (const at of urls) r.listing.push((await http("GET", "/api/rooms", undefined, {}, at)).body);
    return r;
  },

  // kill -9 of an instance. a stays on urls[0], b is on urls[1] (the one the test kills), c
  // (three URLs) on urls[2]. Prints {"stage":"joined"}, then one {"stage":"userLeft"} line
  // per survivor the moment it is told b left, so the test can time it from the kill; then
  // reads the room on every survivor (REST) and their `/stats` (`args.metrics`).
  async clusterKill() {
    const room = args.room ?? "kill";
    const a = await connect({ url: urls[0] });
    const b = await connect({ url: urls[1 % urls.length] });
    const c = urls.length > 2 ? await connect({ url: urls[2] }) : null;
    const r = {};
    r.joinA = await ask(a, "join-room", { roomId: room });
    r.joinB = await ask(b, "join-room", { roomId: room });
    await waitFor(a, "user-joined", (p) => p.peer?.peerId === b.peerId);
    if (c) {
      r.joinC = await ask(c, "join-room", { roomId: room });
      await waitFor(a, "user-joined", (p) => p.peer?.peerId === c.peerId);
      await waitFor(b, "user-joined", (p) => p.peer?.peerId === c.peerId);
    }
    r.ids = { a: a.peerId, b: b.peerId, c: c?.peerId ?? null };
    const ms = args.waitMs ?? 40000;
    const told = (s, name) =>
      waitFor(s, "user-left", (p) => p.peerId === b.peerId, ms).then((p) => {
        out({ stage: "userLeft", at: name, payload: p });
        return p;
      });
    const survivors = [told(a, "a"), ...(c ? [told(c, "c")] : [])];
    out({ stage: "joined", ids: r.ids });
    r.left = await Promise.all(survivors);
    r.offerToDead = await ask(a, "offer", { targetId: b.peerId, offer: { type: "offer", sdp: "dead" } });
    if (c) {
      r.aToC = await ask(a, "offer", { targetId: c.peerId, offer: { type: "offer", sdp: "alive" } });
      r.aToCDelivered = await waitFor(c, "offer", (p) => p.offer?.sdp === "alive");
    }
    r.survivorsConnected = [a.connected, c ? c.connected : true];
    // REST and /stats (`args.metrics`: the survivors' metrics listeners) while a and c are in.
    r.rooms = [];
    for (const at of urls.filter((_, i) => i !== 1)) r.rooms.push(await http("GET", `/api/rooms/${room}`, undefined, {}, at));
    r.stats = [];
    for (const m of args.metrics ?? []) r.stats.push((await http("GET", "/stats", undefined, {}, m)).body);
    return r;
  },

  // Redis outage (the test stops and restarts Redis between the stages). a on urls[0] and b
  // on urls[1] share a room; prints {"stage":"joined"}; on "outage" (stdin) both ask events
  // that need Redis in a loop and record every ack's code ("no-ack" when none came within
  // 5 s); prints {"stage":"outage", during}; on "back" (stdin) checks that the peers, still
  // in their room, reach each other again. Every event is tagged, so the final result also
  // says which of the events acked `unavailable` were delivered anyway.
  async redisOutage() {
    const room = "outage";
    const a = await connect({ url: urls[0] });
    const b = await connect({ url: urls[1 % urls.length] });
    const r = {};
    r.joinA = await ask(a, "join-room", { roomId: room });
    r.joinB = await ask(b, "join-room", { roomId: room });
    await waitFor(a, "user-joined", (p) => p.peer?.peerId === b.peerId);
    out({ stage: "joined" });
    await expectCommand("outage", 60000);
    const kinds = [
      [a, "message", (t) => ({ roomId: room, data: t })],
      [b, "offer", (t) => ({ targetId: a.peerId, offer: { type: "offer", sdp: t } })],
      [a, "signal", (t) => ({ to: b.peerId, data: t })],
      [b, "message", (t) => ({ roomId: room, data: t })],
      [a, "join-room", (t) => ({ roomId: t })],
    ];
    const during = [];
    const until = Date.now() + (args.outageMs ?? 8000);
    const enough = () => kinds.every(([s, e]) => during.filter((d) => d.sender === (s === a ? "a" : "b") && d.event === e && d.code === "unavailable").length >= 1);
    for (let i = 0; Date.now() < until && !(during.length >= 2 * kinds.length && enough()); i++) {
      const [s, event, make] = kinds[i % kinds.length];
      const tag = `during-${i}`;
      during.push({ sender: s === a ? "a" : "b", event, tag, code: await askCode(s, event, make(tag)) });
      await new Promise((res) => setTimeout(res, 50));
    }
    r.during = during;
    out({ stage: "outage", during });
    await expectCommand("back", 90000);
    // Retried while `unavailable`, bounded: the instance may need a moment after /ready.
    const untilOk = async (s, event, data) => {
      const deadline = Date.now() + 10000;
      const codes = [];
      for (;;) {
        const code = await askCode(s, event, data);
        codes.push(code);
        if (code !== "unavailable" || Date.now() > deadline) return { code, attempts: codes.length, codes };
        await new Promise((res) => setTimeout(res, 200));
      }
    };
    r.after = {};
    r.after.offerAB = await untilOk(a, "offer", { targetId: b.peerId, offer: { type: "offer", sdp: "after-ab" } });
    r.after.offerAtB = await waitFor(b, "offer", (p) => p.offer?.sdp === "after-ab").catch((e) => String(e));
    r.after.offerBA = await untilOk(b, "offer", { targetId: a.peerId, offer: { type: "offer", sdp: "after-ba" } });
    r.after.offerAtA = await waitFor(a, "offer", (p) => p.offer?.sdp === "after-ba").catch((e) => String(e));
    r.after.messageAB = await untilOk(a, "message", { roomId: room, data: "after-message" });
    r.after.messageAtB = await waitFor(b, "message", (p) => p.data === "after-message").catch((e) => String(e));
    r.after.roomView = await http("GET", `/api/rooms/${room}`, undefined, {}, urls[1 % urls.length]);
    // Per-pair order: the after-events came last, so every during-event delivered is here.
    const delivered = new Set();
    for (const s of [a, b]) {
      for (const [e, p] of s.log) {
        if (e === "message" && typeof p.data === "string") delivered.add(p.data);
        if (e === "offer" && typeof p.offer?.sdp === "string") delivered.add(p.offer.sdp);
        if (e === "signal" && typeof p.data === "string") delivered.add(p.data);
      }
    }
    r.unavailableButDelivered = during.filter((d) => d.code === "unavailable" && delivered.has(d.tag)).map((d) => d.tag);
    r.connected = { a: a.connected, b: b.connected };
    r.disconnectReasons = { a: a.disconnectReason ?? null, b: b.disconnectReason ?? null };
    return r;
  },

  // Redis restarted empty. a on urls[0], b on urls[1] share a room; prints {"stage":"joined"};
  // on "wiped" (stdin) waits until both are disconnected by their instances (which find their
  // registration gone and fence themselves) and prints {"stage":"disconnected"}; on "ready"
  // new clients c and d (one per instance) join and talk across instances.
  async redisWiped() {
    const room = "wiped";
    const a = await connect({ url: urls[0] });
    const b = await connect({ url: urls[1 % urls.length] });
    const r = {};
    r.joinA = await ask(a, "join-room", { roomId: room });
    r.joinB = await ask(b, "join-room", { roomId: room });
    await waitFor(a, "user-joined", (p) => p.peer?.peerId === b.peerId);
    r.ids = { a: a.peerId, b: b.peerId };
    const ms = args.waitMs ?? 40000;
    const gone = Promise.all([disconnected(a, ms), disconnected(b, ms)]);
    gone.catch(() => {});
    out({ stage: "joined" });
    await expectCommand("wiped", 60000);
    r.reasons = await gone;
    out({ stage: "disconnected", reasons: r.reasons });
    await expectCommand("ready", 90000);
    const c = await connect({ url: urls[0] });
    const d = await connect({ url: urls[1 % urls.length] });
    r.joinC = await ask(c, "join-room", { roomId: room });
    r.joinD = await ask(d, "join-room", { roomId: room });
    r.dJoinedAtC = await waitFor(c, "user-joined", (p) => p.peer?.peerId === d.peerId);
    r.offerCD = await ask(c, "offer", { targetId: d.peerId, offer: { type: "offer", sdp: "after-cd" } });
    r.offerAtD = await waitFor(d, "offer", (p) => p.offer?.sdp === "after-cd");
    r.offerDC = await ask(d, "offer", { targetId: c.peerId, offer: { type: "offer", sdp: "after-dc" } });
    r.offerAtC = await waitFor(c, "offer", (p) => p.offer?.sdp === "after-dc");
    r.messageCD = await ask(c, "message", { roomId: room, data: "after-message" });
    r.messageAtD = await waitFor(d, "message", (p) => p.data === "after-message");
    r.offerToOldA = await ask(d, "offer", { targetId: a.peerId, offer: { type: "offer", sdp: "ghost" } });
    r.roomView = await http("GET", `/api/rooms/${room}`, undefined, {}, urls[1 % urls.length]);
    r.ids.c = c.peerId;
    r.ids.d = d.peerId;
    return r;
  },

  // REST over a cluster: a room made by POST on the first instance is seen on the second;
  // members joined through both are counted the same from both; `/stats` of every instance
  // (`args.metrics`: the metrics listeners' base URLs) counts the whole cluster; DELETE on the
  // second instance removes a member connected to the first.
  async clusterRest() {
    const [u0, u1] = [urls[0], urls[1 % urls.length]];
    const stats = async () => Promise.all((args.metrics ?? []).map(async (m) => (await http("GET", "/stats", undefined, {}, m)).body));
    const r = {};
    r.statsBefore = await stats();
    r.created = await http("POST", "/api/rooms", { name: "shared", maxPeers: 4 }, {}, u0);
    const id = r.created.body?.id;
    r.id = id;
    r.atOther = await http("GET", `/api/rooms/${id}`, undefined, {}, u1);
    r.listAtOther = await http("GET", "/api/rooms", undefined, {}, u1);
    const a = await connect({ url: u0 });
    const b = await connect({ url: u1 });
    const c = await connect({ url: u1 });
    r.joinA = await ask(a, "join-room", { roomId: id });
    r.joinB = await ask(b, "join-room", { roomId: id });
    r.joinC = await ask(c, "join-room", { roomId: "free-cluster" });
    await waitFor(a, "user-joined", (p) => p.peer?.peerId === b.peerId);
    r.ids = { a: a.peerId, b: b.peerId, c: c.peerId };
    r.views = [];
    for (const at of [u0, u1]) r.views.push((await http("GET", `/api/rooms/${id}`, undefined, {}, at)).body);
    r.adminViews = [];
    for (const at of [u0, u1]) r.adminViews.push((await http("GET", `/api/rooms/${id}`, undefined, adminHeaders(), at)).body);
    r.freeAtFirst = await http("GET", "/api/rooms/free-cluster", undefined, {}, u0);
    r.statsDuring = await stats();
    r.deleted = await http("DELETE", `/api/rooms/${id}`, undefined, adminHeaders(), u1);
    r.leftAtA = await waitFor(a, "user-left", (p) => p.peerId === a.peerId);
    r.leftAtB = await waitFor(b, "user-left", (p) => p.peerId === a.peerId);
    r.after = [];
    for (const at of [u0, u1]) r.after.push((await http("GET", `/api/rooms/${id}`, undefined, {}, at)).status);
    r.messageAfterA = await ask(a, "message", { roomId: id, data: 1 });
    r.messageAfterB = await ask(b, "message", { roomId: id, data: 1 });
    r.statsAfter = await stats();
    return r;
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
