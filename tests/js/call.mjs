// Two headless Chromium pages join one room on the demo page and place a relay-only call.
// Prints one JSON line: {ok, pages: [stats...], error?}. Exit code 0 when the call connected
// over a relay candidate and data flowed both ways, 1 otherwise.
// Usage: node call.mjs --url http://127.0.0.1:PORT/ --room R [--relay 1] [--timeout-ms 45000]
//                      [--screenshot FILE] [--expect-relay-protocol udp|tcp|tls] [--ice-refresh 1]
// --ice-refresh 1 (with a short turn.credential_ttl): once the call is up, each page must apply
// an `ice-servers` refresh to its peer connection; after the credentials the call started with
// have expired, an ICE restart must reconnect over a new relay candidate (new allocations need
// valid credentials). Result: {iceRefresh: {initial, refreshed, refreshes, before, after}}.
import { chromium } from "playwright-core";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith("--") ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const url = args.url;
const room = args.room || "e2e-" + Math.random().toString(36).slice(2, 8);
const relay = args.relay !== "0";
const timeout = Number(args["timeout-ms"] || 45000);
const expectProto = args["expect-relay-protocol"];
const iceRefresh = args["ice-refresh"] === "1";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    // The TURN/TLS test relay uses a throwaway self-signed certificate.
    "--ignore-certificate-errors",
  ],
});

const result = { ok: false, room, pages: [] };
try {
  const pages = [];
  const initial = []; // each page's TURN username when it joined
  for (const name of ["alice", "bob"]) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    const page = await ctx.newPage();
    page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning" || process.env.DEBUG) process.stderr.write(`[${name}] ${m.text()}\n`); });
    const q = new URLSearchParams({ room, name, autojoin: "1", ...(process.env.DEBUG ? { debug: "1" } : {}), ...(relay ? { relay: "1" } : {}) });
    await page.goto(new URL("?" + q, url).toString());
    await page.waitForFunction(() => window.switchboard && window.switchboard.joined, null, { timeout: 30000 });
    initial.push(await page.evaluate(() => window.switchboard.turnUsername));
    pages.push(page);
  }
  // Connected over a relay candidate, bytes both ways, and heartbeat data received.
  // (`stats()` is async, so poll it from here: waitForFunction does not await promises.)
  const deadline = Date.now() + timeout;
  for (const page of pages) {
    for (;;) {
      const s = await page.evaluate(() => window.switchboard.stats());
      const p = s[0];
      if (s.length === 1 && p.connectionState === "connected" && p.bytesReceived > 0 && p.dataMessagesReceived >= 3 &&
          (!relay || p.localCandidateType === "relay") && (!expectProto || p.relayProtocol === expectProto)) break;
      if (Date.now() > deadline) throw new Error("Timeout: no relayed connection with data; last stats " + JSON.stringify(s));
      await page.waitForTimeout(250);
    }
  }
  // Media frames actually decoded on both sides (fake camera).
  for (const page of pages) {
    await page.waitForFunction(() => {
      const v = [...document.querySelectorAll("#videos video")].filter((x) => x.id !== "local-video");
      return v.length > 0 && v.some((x) => x.videoWidth > 0 && x.currentTime > 0);
    }, null, { timeout, polling: 250 });
  }
  if (iceRefresh) result.iceRefresh = await refreshAndRestart(pages, initial);
  for (const page of pages) result.pages.push((await page.evaluate(() => window.switchboard.stats()))[0]);
  if (args.screenshot) {
    await pages[0].waitForFunction(() => document.querySelector("#diag-rows td.connected"), null, { timeout: 5000 });
    await pages[0].screenshot({ path: args.screenshot, fullPage: true });
  }
  result.ok = true;
} catch (e) {
  if (iceRefresh && !result.iceRefresh) result.iceRefresh = { initial };
  result.error = String(e && e.message ? e.message.split("\n")[0] : e);
  for (const ctx of browser.contexts()) for (const page of ctx.pages()) {
    try { result.pages.push(await page.evaluate(() => window.switchboard ? window.switchboard.stats() : null)); } catch { /* page gone */ }
    // What the page itself showed: its connection status and any error (a refused or
    // unanswered join ends up here, not in the console).
    try {
      (result.pageStatus ||= []).push(await page.evaluate(() => ({
        status: document.getElementById("status")?.textContent,
        error: document.getElementById("error")?.textContent,
        joined: !!(window.switchboard && window.switchboard.joined),
      })));
    } catch { /* page gone */ }
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result) + "\n");
process.exit(result.ok ? 0 : 1);

async function refreshAndRestart(pages, initial) {
  const deadline = Date.now() + timeout;
  for (const [i, page] of pages.entries()) {
    await page.waitForFunction((u) => {
      const s = window.switchboard;
      return s.iceRefreshes >= 1 && s.turnUsername !== u && s.peerTurnUsernames().every((x) => x === s.turnUsername);
    }, initial[i], { timeout, polling: 250 });
  }
  const refreshed = await Promise.all(pages.map((p) => p.evaluate(() => window.switchboard.turnUsername)));
  const refreshes = await Promise.all(pages.map((p) => p.evaluate(() => window.switchboard.iceRefreshes)));
  // Until the credentials the call started with have expired (`{expiry}:{user}`, Unix seconds).
  const expiry = Math.max(...initial.map((u) => Number(String(u).split(":")[0])));
  while (Date.now() / 1000 <= expiry + 1) {
    if (Date.now() > deadline) throw new Error("Timeout: the initial credentials did not expire");
    await pages[0].waitForTimeout(250);
  }
  const ids = async () => Promise.all(pages.map(async (p) => (await p.evaluate(() => window.switchboard.stats()))[0]?.localCandidateId ?? null));
  const before = await ids();
  await pages[0].evaluate(() => window.switchboard.restartIce());
  for (const [i, page] of pages.entries()) {
    for (;;) {
      const s = (await page.evaluate(() => window.switchboard.stats()))[0];
      if (s && s.connectionState === "connected" && s.localCandidateType === "relay" && s.localCandidateId && s.localCandidateId !== before[i] &&
          s.bytesReceived > 0 && s.bytesSent > 0) break;
      if (Date.now() > deadline) throw new Error("Timeout: no new relay candidate with data after the ICE restart; last stats " + JSON.stringify(s));
      await page.waitForTimeout(250);
    }
  }
  return { initial, refreshed, refreshes, before, after: await ids() };
}
