// Switchboard demo & diagnostics page: a camera/mic mesh over the Switchboard signaling
// protocol (SPEC section 4) with perfect negotiation, chat, peer state and a diagnostics
// panel showing which ICE path (host/srflx/relay) each call took. Plain JS, no build step.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || undefined;
  // ?debug=1 logs every negotiation step to the console.
  const debug = params.get("debug") === "1" ? (...a) => console.log("[switchboard]", ...a) : () => {};

  const state = {
    socket: null,
    roomId: null,
    self: null,
    iceServers: [],
    iceRefreshes: 0, // `ice-servers` events applied
    relayOnly: false,
    localStream: null,
    pending: null, // events held while a join is in flight
    peers: new Map(), // peerId -> { info, pc, polite, makingOffer, ignoreOffer, channel, dataReceived, tile }
    myState: { muted: false, cameraOff: false, hand: false },
  };

  // ---------------------------------------------------------------- UI helpers
  function setStatus(text, ok) {
    const el = $("status");
    el.textContent = text;
    el.classList.toggle("connected", !!ok);
  }
  function showError(msg) { $("error").textContent = msg || ""; }
  function nameOf(peerId) {
    if (state.self && peerId === state.self.peerId) return "You";
    const p = state.peers.get(peerId);
    return (p && p.info && (p.info.displayName || p.info.userId)) || String(peerId).slice(0, 6);
  }
  function setJoined(joined) {
    $("join-btn").disabled = joined;
    $("leave-btn").disabled = !joined;
    for (const id of ["mute-btn", "camera-btn", "hand-btn", "chat-input", "chat-btn"]) $(id).disabled = !joined;
    for (const id of ["room", "name", "password", "relay-only", "no-media"]) $(id).disabled = joined;
  }
  function addMessage(from, text) {
    const li = document.createElement("li");
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = from;
    li.append(who, document.createTextNode(String(text)));
    $("messages").append(li);
    li.scrollIntoView({ block: "end" });
  }

  // ---------------------------------------------------------------- signaling
  function emit(event, payload) {
    return new Promise((resolve) => {
      state.socket.timeout(10000).emit(event, payload, (err, res) => {
        if (err) resolve({ ok: false, error: { code: "timeout", message: "no answer from server" } });
        else resolve(res);
      });
    });
  }

  async function fetchIceServers() {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const res = await fetch("api/ice-servers", { headers, cache: "no-store" });
    if (!res.ok) throw new Error("GET /api/ice-servers: HTTP " + res.status);
    const body = await res.json();
    showIceSummary(body.iceServers, body.expiresAt);
    return body.iceServers;
  }

  function turnUsername(iceServers) {
    const turn = (iceServers || []).find((s) => s.username);
    return turn ? turn.username : null;
  }

  function showIceSummary(iceServers, expiresAt) {
    const urls = iceServers.flatMap((s) => s.urls);
    $("ice-summary").textContent = urls.join(", ") + " (credential expires " + expiresAt + ")";
  }

  // `ice-servers` (SPEC section 4): fresh TURN credentials, sent while we are in a room before
  // the previous ones expire. Every open connection gets them, so that a later ICE restart
  // (e.g. after a network change) still authenticates at the relay; connections made from now
  // on start with them.
  function onIceServers({ iceServers, expiresAt }) {
    if (!Array.isArray(iceServers)) return;
    state.iceServers = iceServers;
    state.iceRefreshes += 1;
    for (const p of state.peers.values()) {
      if (p.pc.signalingState === "closed") continue;
      try {
        p.pc.setConfiguration({ ...p.pc.getConfiguration(), iceServers });
      } catch (e) {
        console.warn("setConfiguration failed", e);
      }
    }
    showIceSummary(iceServers, expiresAt);
    debug("ice-servers refreshed; expires", expiresAt, "peers", state.peers.size);
  }

  function connectSocket() {
    return new Promise((resolve, reject) => {
      const socket = io({ path: "/socket.io", auth: token ? { token } : {}, transports: ["websocket", "polling"] });
      socket.on("connect", () => { setStatus("connected", true); resolve(socket); });
      socket.on("connect_error", (e) => { setStatus("error"); reject(e); });
      socket.on("disconnect", (reason) => { setStatus("disconnected: " + reason); });
      socket.on("user-joined", ({ peer }) => whenJoined(() => { if (peer) ensurePeer(peer, false); }));
      socket.on("user-left", ({ peerId }) => removePeer(peerId));
      socket.on("room-users", ({ users }) => {
        for (const u of users || []) if (!state.self || u.peerId !== state.self.peerId) {
          const p = state.peers.get(u.peerId);
          if (p) p.info = u;
        }
      });
      socket.on("peer-updated", ({ peerId, state: s }) => {
        const p = state.peers.get(peerId);
        if (p) { p.info.state = s; renderBadges(p); }
      });
      socket.on("offer", ({ from, offer }) => whenJoined(() => onDescription(from, offer)));
      socket.on("answer", ({ from, answer }) => whenJoined(() => onDescription(from, answer)));
      socket.on("ice-candidate", ({ from, candidate }) => whenJoined(() => onCandidate(from, candidate)));
      socket.on("message", ({ from, data }) => addMessage(nameOf(from), data && data.text !== undefined ? data.text : JSON.stringify(data)));
      socket.on("ice-servers", onIceServers);
      socket.on("error", (e) => showError((e.event ? e.event + ": " : "") + e.code + " — " + e.message));
    });
  }

  // An existing peer may answer our arrival (user-joined → offer) before our own join ack has
  // been processed: hold such events until we know who was here first, so each side picks
  // the politeness the server assigned and glare resolves.
  function whenJoined(fn) {
    if (state.pending) state.pending.push(fn);
    else fn();
  }

  // ---------------------------------------------------------------- WebRTC (perfect negotiation)
  function ensurePeer(info, politeToThem) {
    let p = state.peers.get(info.peerId);
    if (p) return p;
    const pc = new RTCPeerConnection({
      iceServers: state.iceServers,
      iceTransportPolicy: state.relayOnly ? "relay" : "all",
    });
    p = { info, pc, polite: politeToThem, makingOffer: false, ignoreOffer: false, channel: null, dataReceived: 0, tile: null };
    state.peers.set(info.peerId, p);
    const peerId = info.peerId;

    pc.onnegotiationneeded = async () => {
      try {
        p.makingOffer = true;
        debug("negotiationneeded", peerId, pc.signalingState);
        await pc.setLocalDescription();
        state.socket.emit("offer", { targetId: peerId, roomId: state.roomId, offer: pc.localDescription.toJSON() });
      } catch (e) {
        console.warn("negotiation failed", e);
      } finally {
        p.makingOffer = false;
      }
    };
    pc.onicecandidate = ({ candidate }) => {
      if (candidate) state.socket.emit("ice-candidate", { targetId: peerId, roomId: state.roomId, candidate: candidate.toJSON() });
    };
    pc.ontrack = ({ streams }) => {
      const tile = ensureTile(p);
      if (streams[0] && tile.video.srcObject !== streams[0]) tile.video.srcObject = streams[0];
    };
    pc.ondatachannel = ({ channel }) => attachChannel(p, channel);
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") pc.restartIce();
    };

    // The newcomer (the polite side) makes the first offer, with its media and a data
    // channel (a heartbeat that proves data flows even without media, which the end-to-end
    // tests assert on). The peer already in the room adds its media when that offer
    // arrives, so the first negotiation has no glare; later renegotiations (either side)
    // rely on perfect negotiation.
    if (politeToThem) {
      addLocalTracks(p);
      attachChannel(p, pc.createDataChannel("switchboard-diag"));
    }
    ensureTile(p);
    return p;
  }

  function addLocalTracks(p) {
    if (p.tracksAdded || !state.localStream) return;
    p.tracksAdded = true;
    for (const t of state.localStream.getTracks()) p.pc.addTrack(t, state.localStream);
  }

  function attachChannel(p, channel) {
    p.channel = channel;
    channel.onmessage = () => { p.dataReceived += 1; };
    const start = () => {
      const timer = setInterval(() => {
        if (channel.readyState !== "open") return clearInterval(timer);
        channel.send(JSON.stringify({ ping: Date.now() }));
      }, 250);
    };
    // The answering side may get the channel already open, after `open` has fired.
    if (channel.readyState === "open") start();
    else channel.onopen = start;
  }

  // Descriptions and candidates from one peer are applied strictly one after another (they
  // arrive in order; applying them concurrently would let an offer overtake the answer
  // still being applied and look like glare).
  function serial(p, fn) {
    p.chain = (p.chain || Promise.resolve()).then(fn, fn);
    return p.chain;
  }

  function onDescription(from, description) {
    const p = state.peers.get(from) || ensurePeer({ peerId: from, displayName: "", state: {} }, false);
    return serial(p, () => applyDescription(p, from, description));
  }

  async function applyDescription(p, from, description) {
    const pc = p.pc;
    try {
      const collision = description.type === "offer" && (p.makingOffer || pc.signalingState !== "stable");
      debug("received", description.type, "from", from, "state", pc.signalingState, "collision", collision, "polite", p.polite);
      p.ignoreOffer = !p.polite && collision;
      if (p.ignoreOffer) return;
      await pc.setRemoteDescription(description);
      if (description.type === "offer") {
        addLocalTracks(p); // reuses the offered transceivers: the answer carries our media

        await pc.setLocalDescription();
        state.socket.emit("answer", { targetId: from, roomId: state.roomId, answer: pc.localDescription.toJSON() });
      }
    } catch (e) {
      console.warn("description failed", e);
    }
  }

  function onCandidate(from, candidate) {
    const p = state.peers.get(from);
    if (!p) return;
    serial(p, async () => {
      try {
        await p.pc.addIceCandidate(candidate);
      } catch (e) {
        if (!p.ignoreOffer) console.warn("candidate failed", e);
      }
    });
  }

  function removePeer(peerId) {
    const p = state.peers.get(peerId);
    if (!p) return;
    p.pc.close();
    if (p.tile) p.tile.fig.remove();
    state.peers.delete(peerId);
    renderDiagnostics([]);
  }

  function ensureTile(p) {
    if (p.tile) return p.tile;
    const fig = document.createElement("figure");
    fig.className = "tile";
    const video = document.createElement("video");
    video.autoplay = true; video.playsInline = true;
    const cap = document.createElement("figcaption");
    const badges = document.createElement("span");
    badges.className = "badges";
    fig.append(video, cap, badges);
    $("videos").append(fig);
    p.tile = { fig, video, cap, badges };
    renderBadges(p);
    return p.tile;
  }

  function renderBadges(p) {
    if (!p.tile) return;
    p.tile.cap.textContent = nameOf(p.info.peerId);
    const s = p.info.state || {};
    p.tile.badges.textContent = [s.muted ? "🔇" : "", s.cameraOff ? "📷✕" : "", s.hand ? "✋" : ""].join(" ").trim();
  }

  // ---------------------------------------------------------------- diagnostics
  async function peerStats(p) {
    const out = {
      peerId: p.info.peerId, name: nameOf(p.info.peerId),
      connectionState: p.pc.connectionState, iceConnectionState: p.pc.iceConnectionState,
      localCandidateId: null, localCandidateType: null, remoteCandidateType: null, protocol: null, relayProtocol: null,
      bytesSent: 0, bytesReceived: 0, dataMessagesReceived: p.dataReceived,
      dataChannelState: p.channel ? p.channel.readyState : null, signalingState: p.pc.signalingState,
    };
    const report = await p.pc.getStats();
    let pair = null;
    report.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    });
    if (!pair) report.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
    if (pair) {
      const local = report.get(pair.localCandidateId) || {};
      const remote = report.get(pair.remoteCandidateId) || {};
      out.localCandidateId = pair.localCandidateId || null;
      out.localCandidateType = local.candidateType || null;
      out.remoteCandidateType = remote.candidateType || null;
      out.protocol = local.protocol || null;
      out.relayProtocol = local.relayProtocol || null;
      out.bytesSent = pair.bytesSent || 0;
      out.bytesReceived = pair.bytesReceived || 0;
    }
    return out;
  }

  async function allStats() {
    return Promise.all([...state.peers.values()].map(peerStats));
  }

  function renderDiagnostics(rows) {
    const body = $("diag-rows");
    body.replaceChildren();
    if (rows.length === 0) {
      const tr = document.createElement("tr");
      tr.className = "empty";
      tr.innerHTML = '<td colspan="7">No peers yet</td>';
      body.append(tr);
      return;
    }
    for (const r of rows) {
      const tr = document.createElement("tr");
      const path = r.localCandidateType ? r.localCandidateType + " → " + r.remoteCandidateType : "—";
      const cells = [
        [r.name, ""], [r.connectionState, r.connectionState], [r.iceConnectionState, ""],
        [path, r.localCandidateType === "relay" ? "relay" : ""],
        [(r.protocol || "—") + (r.relayProtocol ? " via TURN/" + r.relayProtocol : ""), ""],
        [fmtBytes(r.bytesSent), ""], [fmtBytes(r.bytesReceived), ""],
      ];
      for (const [text, cls] of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.append(td);
      }
      body.append(tr);
    }
  }
  function fmtBytes(n) { return n > 1e6 ? (n / 1e6).toFixed(1) + " MB" : n > 1e3 ? (n / 1e3).toFixed(1) + " kB" : n + " B"; }
  setInterval(async () => { if (state.peers.size) renderDiagnostics(await allStats()); }, 1000);

  // ---------------------------------------------------------------- join / leave / controls
  async function join() {
    showError("");
    const roomId = $("room").value.trim();
    state.relayOnly = $("relay-only").checked;
    try {
      if (!$("no-media").checked && navigator.mediaDevices) {
        try {
          state.localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
          $("local-video").srcObject = state.localStream;
        } catch (e) {
          showError("Camera/mic unavailable (" + e.name + "): joining with data only.");
        }
      }
      state.iceServers = await fetchIceServers();
      state.socket = state.socket || (await connectSocket());
      state.pending = [];
      const res = await emit("join-room", { roomId, displayName: $("name").value.trim() || undefined, password: $("password").value || undefined });
      if (!res || !res.ok) throw new Error((res && res.error && (res.error.code + ": " + res.error.message)) || "join failed");
      state.roomId = roomId;
      state.self = res.self;
      if (!state.iceServers.length && res.iceServers) state.iceServers = res.iceServers;
      history.replaceState(null, "", "?room=" + encodeURIComponent(roomId) + (state.relayOnly ? "&relay=1" : ""));
      setJoined(true);
      addMessage("system", "Joined " + roomId + " as " + (res.self.displayName || res.self.peerId) + (res.polite ? " (polite)" : ""));
      // We joined last, so we are the polite side towards everyone already here.
      for (const peer of res.peers || []) ensurePeer(peer, !!res.polite);
      const held = state.pending;
      state.pending = null;
      for (const fn of held) fn();
    } catch (e) {
      state.pending = null;
      showError(e.message || String(e));
      throw e;
    }
  }

  async function leave() {
    if (state.socket && state.roomId) await emit("leave-room", { roomId: state.roomId });
    for (const id of [...state.peers.keys()]) removePeer(id);
    state.roomId = null;
    setJoined(false);
  }

  function sendState() {
    emit("update-state", { roomId: state.roomId, state: state.myState });
  }

  $("join-form").addEventListener("submit", (e) => { e.preventDefault(); join().catch(() => {}); });
  $("leave-btn").addEventListener("click", () => leave());
  $("mute-btn").addEventListener("click", (e) => {
    state.myState.muted = !state.myState.muted;
    if (state.localStream) state.localStream.getAudioTracks().forEach((t) => { t.enabled = !state.myState.muted; });
    e.target.textContent = state.myState.muted ? "Unmute" : "Mute";
    e.target.classList.toggle("on", state.myState.muted);
    sendState();
  });
  $("camera-btn").addEventListener("click", (e) => {
    state.myState.cameraOff = !state.myState.cameraOff;
    if (state.localStream) state.localStream.getVideoTracks().forEach((t) => { t.enabled = !state.myState.cameraOff; });
    e.target.textContent = state.myState.cameraOff ? "Camera on" : "Camera off";
    e.target.classList.toggle("on", state.myState.cameraOff);
    sendState();
  });
  $("hand-btn").addEventListener("click", (e) => {
    state.myState.hand = !state.myState.hand;
    e.target.textContent = state.myState.hand ? "Lower hand" : "Raise hand";
    e.target.classList.toggle("on", state.myState.hand);
    sendState();
  });
  $("chat-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const text = $("chat-input").value.trim();
    if (!text || !state.roomId) return;
    const res = await emit("message", { roomId: state.roomId, data: { text } });
    if (res && res.ok) { addMessage("You", text); $("chat-input").value = ""; }
    else showError("chat: " + ((res && res.error && res.error.message) || "failed"));
  });

  // URL parameters: ?room=ID&name=N&relay=1&nomedia=1&autojoin=1&token=T
  if (params.get("room")) $("room").value = params.get("room");
  if (params.get("name")) $("name").value = params.get("name");
  if (params.get("relay") === "1") $("relay-only").checked = true;
  if (params.get("nomedia") === "1") $("no-media").checked = true;
  if (params.get("autojoin") === "1" && params.get("room")) join().catch(() => {});

  // Hooks for the end-to-end tests and for poking around in the console.
  window.switchboard = {
    join, leave, stats: allStats,
    get joined() { return !!state.roomId; },
    get peerCount() { return state.peers.size; },
    get iceRefreshes() { return state.iceRefreshes; },
    // The TURN username of the latest credentials, and the one each peer connection uses.
    get turnUsername() { return turnUsername(state.iceServers); },
    peerTurnUsernames() { return [...state.peers.values()].map((p) => turnUsername(p.pc.getConfiguration().iceServers)); },
    restartIce() { for (const p of state.peers.values()) p.pc.restartIce(); },
  };
})();
