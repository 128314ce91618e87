// Connects one socket.io-client to URL and reports, one JSON line each, when it connected
// and when (and why) it was disconnected. Exits 0 after the disconnect, 1 after 30 s.
// Usage: node wait-disconnect.mjs http://127.0.0.1:PORT
import { io } from "socket.io-client";

const socket = io(process.argv[2], { transports: ["websocket"], reconnection: false });
const say = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const timer = setTimeout(() => { say({ event: "timeout" }); process.exit(1); }, 30000);
socket.on("connect", () => say({ event: "connect", id: socket.id }));
socket.on("connect_error", (e) => { say({ event: "connect_error", message: e.message }); process.exit(1); });
socket.on("disconnect", (reason) => { clearTimeout(timer); say({ event: "disconnect", reason }); process.exit(0); });
