// Reference signaling server for scripts/bench-signaling.sh: Node + socket.io 4.8 with the
// same protocol v1 events as switchboard-signaling (SPEC section 4), written the way the Node
// stacks Switchboard replaces are written (an in-memory Map of rooms, one handler per event).
// It is the anchor the benchmark compares against; it is not a product and has no TURN side.
// Usage: node server.js PORT
"use strict";
const http = require("http");
const crypto = require("crypto");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 18090);
const MAX_PEERS = 16;
const rooms = new Map(); // roomId -> Map(peerId -> peer)
const bySocket = new Map(); // socket.id -> {peerId, rooms:Set}
const sockets = new Map(); // peerId -> socket

const httpServer = http.createServer((req, res) => {
  if (req.url === "/health") { res.end("ok"); return; }
  res.statusCode = 404; res.end();
});
const io = new Server(httpServer, { maxHttpBufferSize: 64 * 1024, cors: { origin: true } });

function fail(socket, ack, event, code, message) {
  const error = { code, message };
  if (typeof ack === "function") ack({ ok: false, error });
  else socket.emit("error", { event, code, message });
}
function shareRoom(a, b) {
  const sa = bySocket.get(a); if (!sa) return false;
  for (const r of sa.rooms) { const m = rooms.get(r); if (m && m.has(b)) return true; }
  return false;
}
function leave(me, roomId) {
  const m = rooms.get(roomId); if (!m || !m.delete(me.peerId)) return false;
  me.rooms.delete(roomId);
  for (const id of m.keys()) sockets.get(id)?.emit("user-left", { roomId, peerId: me.peerId });
  if (m.size === 0) rooms.delete(roomId);
  return true;
}

io.on("connection", (socket) => {
  const me = { peerId: crypto.randomBytes(16).toString("hex"), rooms: new Set(), state: {} };
  bySocket.set(me.peerId, me);
  sockets.set(me.peerId, socket);

  socket.on("join-room", (p, ack) => {
    if (!p || typeof p.roomId !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(p.roomId))
      return fail(socket, ack, "join-room", "bad-request", "`roomId` must be 1-64 characters of [A-Za-z0-9_-]");
    let m = rooms.get(p.roomId);
    if (!m) { m = new Map(); rooms.set(p.roomId, m); }
    if (m.size >= MAX_PEERS && !m.has(me.peerId)) return fail(socket, ack, "join-room", "room-full", "room is full");
    const peer = { peerId: me.peerId, userId: p.userId || me.peerId, displayName: p.displayName || null,
      metadata: p.metadata || null, state: {}, joinedAt: Date.now() };
    const others = [...m.values()];
    m.set(me.peerId, peer); me.rooms.add(p.roomId);
    for (const o of others) sockets.get(o.peerId)?.emit("user-joined", { roomId: p.roomId, peer });
    socket.emit("room-users", { roomId: p.roomId, users: [...m.values()] });
    if (typeof ack === "function") ack({ ok: true, roomId: p.roomId, self: peer, peers: others, polite: others.length > 0, iceServers: [] });
  });
  socket.on("leave-room", (p, ack) => {
    if (!p || !leave(me, p.roomId)) return fail(socket, ack, "leave-room", "not-in-room", "not in that room");
    if (typeof ack === "function") ack({ ok: true });
  });
  const targeted = (event, field) => socket.on(event, (p, ack) => {
    if (!p || typeof p.targetId !== "string") return fail(socket, ack, event, "bad-request", "`targetId` is required");
    if (!shareRoom(me.peerId, p.targetId)) return fail(socket, ack, event, "unknown-peer", "no such peer in your rooms");
    const out = { from: me.peerId, [field]: p[field] };
    if (p.roomId) out.roomId = p.roomId;
    sockets.get(p.targetId).emit(event, out);
    if (typeof ack === "function") ack({ ok: true });
  });
  targeted("offer", "offer"); targeted("answer", "answer"); targeted("ice-candidate", "candidate");
  socket.on("signal", (p, ack) => {
    if (!p || typeof p.to !== "string") return fail(socket, ack, "signal", "bad-request", "`to` is required");
    if (!shareRoom(me.peerId, p.to)) return fail(socket, ack, "signal", "unknown-peer", "no such peer in your rooms");
    sockets.get(p.to).emit("signal", { from: me.peerId, data: p.data });
    if (typeof ack === "function") ack({ ok: true });
  });
  socket.on("message", (p, ack) => {
    const m = p && rooms.get(p.roomId);
    if (!m || !m.has(me.peerId)) return fail(socket, ack, "message", "not-in-room", "not in that room");
    for (const id of m.keys()) if (id !== me.peerId) sockets.get(id)?.emit("message", { from: me.peerId, roomId: p.roomId, data: p.data });
    if (typeof ack === "function") ack({ ok: true });
  });
  socket.on("update-state", (p, ack) => {
    const m = p && rooms.get(p.roomId);
    if (!m || !m.has(me.peerId)) return fail(socket, ack, "update-state", "not-in-room", "not in that room");
    const peer = m.get(me.peerId); peer.state = { ...peer.state, ...(p.state || {}) };
    for (const id of m.keys()) if (id !== me.peerId) sockets.get(id)?.emit("peer-updated", { peerId: me.peerId, state: peer.state });
    if (typeof ack === "function") ack({ ok: true });
  });
  socket.on("disconnect", () => {
    for (const r of [...me.rooms]) leave(me, r);
    bySocket.delete(me.peerId); sockets.delete(me.peerId);
  });
});

httpServer.listen(port, "127.0.0.1", () => console.log(`node socket.io reference listening on 127.0.0.1:${port}`));
