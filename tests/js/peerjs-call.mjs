// Two headless Chromium pages use the real npm `peerjs` client (1.5.x, its dist/peerjs.min.js
// unchanged) against switchboard-signaling's PeerJS endpoint (SPEC section 4.1): both register,
// a third Peer claiming one of their ids is refused ("unavailable-id"), a DataConnection carries
// messages both ways, and a MediaConnection with the fake camera shows video on both sides,
// everything relay-only (`iceTransportPolicy: "relay"`) with TURN credentials from
// `/api/ice-servers`. The page is served from its own loopback origin (which the test adds to
// `cors_origins`). Prints one JSON line: {ok, pages: [...], error?}; exit code 0 when ok.
// Usage: node peerjs-call.mjs --sig http://127.0.0.1:PORT [--sig2 URL] --page-port N --key K [--path /peerjs]
//                             [--timeout-ms 45000]
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const sig = new URL(args.sig);
// --sig2: the second page registers on another instance (multi-instance mode).
const sigs = [sig, args.sig2 ? new URL(args.sig2) : sig];
const pagePort = Number(args["page-port"]);
const key = args.key;
const path = args.path || "/peerjs";
const timeout = Number(args["timeout-ms"] || 45000);

const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const files = {
  "/": ["text/html", readFileSync(here("./peerjs-page.html"))],
  "/peerjs.min.js": ["text/javascript", readFileSync(here("./node_modules/peerjs/dist/peerjs.min.js"))],
};
const server = createServer((req, res) => {
  const f = files[new URL(req.url, "http://x").pathname];
  if (!f) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": f[0], "cache-control": "no-store" }).end(f[1]);
});
await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(pagePort, "127.0.0.1", resolve);
});

const watchdog = setTimeout(() => {
  process.stdout.write(JSON.stringify({ ok: false, error: "peerjs-call timed out (watchdog)" }) + "\n");
  process.exit(3);
}, timeout + 60000);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
  ],
});

const suffix = Math.random().toString(36).slice(2, 8);
const result = { ok: false, pages: [] };
const pages = [];
try {
  const ids = [`alice-${suffix}`, `bob-${suffix}`];
  for (const [i, id] of ids.entries()) {
    const sig = sigs[i];
    const ctx = await browser.newContext();
    const page = await ctx.newPage();
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning" || process.env.DEBUG) process.stderr.write(`[${id}] ${m.text()}\n`);
    });
    page.on("pageerror", (e) => process.stderr.write(`[${id}] page error: ${e.message}\n`));
    await page.goto(`http://127.0.0.1:${pagePort}/`);
    const ice = await page.evaluate((s) => window.e2e.fetchIceServers(s), sig.origin);
    const opened = await page.evaluate(
      (o) => window.e2e.start(o),
      { id, host: sig.hostname, port: Number(sig.port), path, key },
    );
    pages.push({ id, page, ice, opened });
  }
  const [a, b] = pages;
  result.turnUrls = a.ice.flatMap((s) => [].concat(s.urls)).filter((u) => /^turns?:/.test(u));
  result.opened = pages.map((p) => p.opened);
  // A third client claiming bob's id (another Peer, so another token).
  result.probe = await a.page.evaluate((id) => window.e2e.probe(id), b.id);

  // DataConnection, both ways.
  await a.page.evaluate((dst) => window.e2e.connect(dst), b.id);
  await b.page.waitForFunction(() => window.e2e.dataOpen(), null, { timeout, polling: 100 });
  for (const n of [1, 2, 3]) await a.page.evaluate((m) => window.e2e.send(m), `ping-${n}`);
  await b.page.evaluate(() => window.e2e.send("hello from bob"));
  await a.page.waitForFunction(() => window.e2e.received.length >= 4, null, { timeout, polling: 100 });
  await b.page.waitForFunction(() => window.e2e.received.length >= 3, null, { timeout, polling: 100 });

  // MediaConnection with the fake camera: video plays on both sides.
  await a.page.evaluate((dst) => window.e2e.call(dst), b.id);
  for (const p of pages) await p.page.waitForFunction(() => window.e2e.videoPlaying(), null, { timeout, polling: 250 });

  // Both peer connections of each page are up over a relay candidate with bytes both ways
  // and decoded frames (getStats is async: polled from here, bounded).
  const deadline = Date.now() + timeout;
  for (const p of pages) {
    for (;;) {
      const s = await p.page.evaluate(() => window.e2e.stats());
      const up = (x) => x && x.localCandidateType === "relay" && x.bytesSent > 0 && x.bytesReceived > 0;
      if (up(s.data) && up(s.media) && s.media.framesDecoded > 0) break;
      if (Date.now() > deadline) throw new Error(`${p.id}: no relayed data and media; last stats ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  for (const p of pages) {
    result.pages.push({
      id: p.id,
      received: await p.page.evaluate(() => window.e2e.received),
      errors: await p.page.evaluate(() => window.e2e.errors),
      ...(await p.page.evaluate(() => window.e2e.stats())),
    });
  }
  result.ok = true;
} catch (e) {
  result.error = String(e && e.message ? e.message.split("\n")[0] : e);
  for (const p of pages) {
    try {
      result.pages.push({
        id: p.id,
        received: await p.page.evaluate(() => window.e2e.received),
        errors: await p.page.evaluate(() => window.e2e.errors),
        ...(await p.page.evaluate(() => window.e2e.stats())),
      });
    } catch {
      /* page gone */
    }
  }
} finally {
  await browser.close();
  server.close();
  clearTimeout(watchdog);
}
process.stdout.write(JSON.stringify(result) + "\n");
process.exit(result.ok ? 0 : 1);
