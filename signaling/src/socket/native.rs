//! The native WebSocket transport: Engine.IO v4 and Socket.IO v5 over a WebSocket opened
//! directly (`?EIO=4&transport=websocket`, no `sid`), served by one task per connection.
//!
//! socketioxide serves the rest: long-polling, and WebSockets upgraded from a polling
//! session. Both transports share the handshake ([`super::admit`]), the intake
//! ([`super::inbound::Inbox::intake`]), the session ([`super::session`]) and the outbound
//! queue ([`crate::peers`]), so the protocol and its guarantees are the same on both; only
//! the framing differs.
//!
//! Why a transport of our own: engineioxide spends about 16 KB per idle WebSocket (three
//! tasks, a 32-slot packet channel of large slots, a split stream with its lock) and a good
//! part of the CPU per relayed event (the packet channel, the lock, a cancellation token,
//! the socket lookups). Here one task owns the WebSocket: it reads (decode, rate limit, queue
//! in arrival order), writes the socket's outbound queue in order (every packet waiting is
//! written in one batch, then one flush), and keeps the heartbeat.
//!
//! No silent loss: a packet that could not be written, or was still queued when the
//! connection ended, is answered to its sender with `unknown-peer`, as on the socketioxide
//! side.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use futures::{SinkExt as _, StreamExt as _};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::inbound::{InboundItem, Inbox};
use super::outbound::{answer_lost, answer_undelivered};
use super::wire::{self, Frame, Sio};
use super::{Admitted, CONNECT_TIMEOUT, Handshake, WS_READ_BUFFER, admit, new_peer_id};
use crate::core::ServerEvent;
use crate::hub::Hub;
use crate::peers::{Body, CloseReason, Closer, NativeClose, Packet, Queued};
use crate::protocol::Refusal;

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Engine.IO heartbeat: the server pings every interval, the client must answer within the
/// timeout (the values socketioxide is given, see [`super::layer`]).
pub const PING_INTERVAL: Duration = Duration::from_secs(25);
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);
/// Packets written per batch before one flush (the rest of the queue waits for the next).
const WRITE_BATCH: usize = 64;
/// Bytes tungstenite gathers before it writes to the socket; a batch is flushed at its end
/// in any case.
const WRITE_BUFFER: usize = 16 * 1024;
/// A connection that cannot take one batch for this long is gone (it would have missed a
/// heartbeat): it is closed.
const WRITE_STALL: Duration = Duration::from_secs(45);
/// Longest the server waits for its close frame to be written.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether `req` opens a native WebSocket session: the Socket.IO path, Engine.IO v4, the
/// WebSocket transport, no session id, and a WebSocket upgrade. Anything else (polling,
/// an upgrade from a polling session, another protocol version, a bad upgrade) is
/// socketioxide's to answer.
#[must_use]
pub fn wants(req: &Request, path: &str) -> bool {
    if !req.uri().path().starts_with(path) || req.method() != axum::http::Method::GET {
        return false;
    }
    let Some(query) = req.uri().query() else {
        return false;
    };
    let (mut eio4, mut websocket) = (false, false);
    for kv in query.split('&') {
        match kv.split_once('=') {
            Some(("EIO", v)) => eio4 = v == "4",
            Some(("transport", v)) => websocket = v == "websocket",
            Some(("sid", _)) => return false,
            _ => {}
        }
    }
    eio4 && websocket && is_upgrade(req.headers())
}

fn is_upgrade(h: &HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        h.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(header::CONNECTION, "upgrade")
        && has(header::UPGRADE, "websocket")
        && h.get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v.as_bytes() == b"13")
        && h.contains_key(header::SEC_WEBSOCKET_KEY)
}

/// Answers the upgrade (101) and spawns the connection's task.
pub fn upgrade(hub: Arc<Hub>, mut req: Request) -> Response {
    let Some(accept) = accept_key(req.headers()) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let on_upgrade = hyper::upgrade::on(&mut req);
    // Nothing of the request is kept: hyper's read buffer goes with it.
    drop(req);
    // The task's future is what every idle connection holds: the opening (WebSocket set-up,
    // open packet, CONNECT) is boxed and freed once connected; the connected state is one
    // boxed `Conn` and the `run` loop (heaptrack: 3.4 KB + a 1 KB task before, per socket).
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(io) => {
                if let Some(conn) = Box::pin(open(hub, io, origin, ip)).await {
                    connected(conn).await;
                }
            }
            Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
        }
    });
    switching_protocols(accept)
}

/// The `Sec-WebSocket-Accept` answer to a request's `Sec-WebSocket-Key`.
pub(crate) fn accept_key(headers: &HeaderMap) -> Option<HeaderValue> {
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes())).ok()
}

/// The 101 answer of a WebSocket upgrade (the connection's task takes over the socket).
pub(crate) fn switching_protocols(accept: HeaderValue) -> Response {
    let mut res = Response::new(axum::body::Body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    res
}

/// Small buffers (signaling events are a few hundred bytes) and the transport limit on
/// messages and frames (see [`super::transport_limit`]); also the PeerJS endpoint's.
pub(crate) fn ws_config(hub: &Hub) -> WebSocketConfig {
    let limit = super::transport_limit(hub.cfg.signaling.max_payload_bytes);
    WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER.saturating_add(limit.saturating_mul(2)))
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
}

fn text(s: impl Into<String>) -> Message {
    Message::text(s.into())
}

/// The heartbeat: a ping every [`PING_INTERVAL`], a pong due [`PING_TIMEOUT`] after it.
struct Heartbeat {
    next: Instant,
    awaiting_pong: bool,
}

impl Heartbeat {
    fn new() -> Self {
        Self {
            next: Instant::now() + PING_INTERVAL,
            awaiting_pong: false,
        }
    }

    /// The timer fired: `true` when the pong is overdue (close), else a ping is due.
    fn fire(&mut self) -> bool {
        if self.awaiting_pong {
            return true;
        }
        self.awaiting_pong = true;
        self.next = Instant::now() + PING_TIMEOUT;
        false
    }

    fn pong(&mut self) {
        if self.awaiting_pong {
            self.awaiting_pong = false;
            self.next = Instant::now() + PING_INTERVAL;
        }
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed (Engine.IO close, Socket.IO disconnect, WebSocket close, EOF).
    Client,
    /// Unreadable, or a frame beyond the limit.
    Transport,
    /// Not Engine.IO / Socket.IO.
    Invalid,
    PingTimeout,
    ConnectTimeout,
    /// Could not take a batch for [`WRITE_STALL`].
    Stalled,
    Server(CloseReason),
}

/// The opening of a connection: the WebSocket, the open packet and the CONNECT. `None`
/// when it ended before a CONNECT was let in.
async fn open(
    hub: Arc<Hub>,
    io: hyper::upgrade::Upgraded,
    origin: Option<String>,
    ip: Option<IpAddr>,
) -> Option<Box<Conn>> {
    let mut ws =
        WebSocketStream::from_raw_socket(TokioIo::new(io), Role::Server, Some(ws_config(&hub)))
            .await;
    let sid = new_peer_id();
    let open = wire::open(
        &sid,
        PING_INTERVAL.as_millis(),
        PING_TIMEOUT.as_millis(),
        super::transport_limit(hub.cfg.signaling.max_payload_bytes),
    );
    if ws.send(text(open)).await.is_err() {
        return None;
    }
    let close = Arc::new(NativeClose::default());
    let mut beat = Heartbeat::new();
    // The whole opening is bounded, writes included: a client that sends CONNECTs and never
    // reads the answers cannot hold its task once the socket's buffer is full.
    let connect = tokio::time::timeout(
        CONNECT_TIMEOUT,
        await_connect(
            &hub,
            &mut ws,
            &mut beat,
            origin.as_deref(),
            ip,
            &sid,
            &close,
        ),
    )
    .await
    .unwrap_or(Err(End::ConnectTimeout));
    match connect {
        Ok(Admitted {
            peer_id,
            inbox,
            out_rx,
            out_bytes,
        }) => Some(Box::new(Conn {
            hub,
            ws,
            inbox,
            out_rx,
            out_bytes,
            close,
            beat,
            skip_binary: 0,
            in_flight: None,
            sid,
            peer_id,
        })),
        Err(end) => {
            finish(&mut ws, end).await;
            None
        }
    }
}

/// A connected socket, to the end.
async fn connected(mut conn: Box<Conn>) {
    let end = conn.run().await;
    Box::pin(conn.end(end)).await;
}

/// Before CONNECT: heartbeats, and the CONNECT itself (answered with `40` or `44`); the
/// caller bounds it by [`CONNECT_TIMEOUT`].
async fn await_connect(
    hub: &Arc<Hub>,
    ws: &mut Ws,
    beat: &mut Heartbeat,
    origin: Option<&str>,
    ip: Option<IpAddr>,
    sid: &str,
    close: &Arc<NativeClose>,
) -> Result<Admitted, End> {
    loop {
        let msg = tokio::select! {
            msg = ws.next() => msg,
            () = sleep_until(beat.next) => {
                if beat.fire() {
                    return Err(End::PingTimeout);
                }
                ws.send(text(wire::PING)).await.map_err(|_| End::Transport)?;
                continue;
            }
        };
        let t = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None => return Err(End::Client),
            Some(Ok(_)) => continue,
            Some(Err(_)) => return Err(End::Transport),
        };
        match wire::parse(t.as_str()) {
            Frame::Pong => beat.pong(),
            Frame::Ping => ws
                .send(text(wire::PONG))
                .await
                .map_err(|_| End::Transport)?,
            Frame::Close => return Err(End::Client),
            Frame::Invalid => return Err(End::Invalid),
            Frame::Message(Sio::Connect { nsp: "/", auth }) => {
                let auth = auth.and_then(|a| serde_json::from_str::<Value>(a).ok());
                let h = Handshake {
                    origin,
                    auth: auth.as_ref(),
                    ip,
                    sid,
                };
                match admit(hub, &h, Closer::Native(close.clone())) {
                    Ok(a) => {
                        let ok = wire::connected(&new_peer_id());
                        ws.send(text(ok)).await.map_err(|_| End::Transport)?;
                        return Ok(a);
                    }
                    // The client may try again on this session until the deadline.
                    Err(r) => ws
                        .send(text(wire::connect_error("/", r.0)))
                        .await
                        .map_err(|_| End::Transport)?,
                }
            }
            Frame::Message(Sio::Connect { nsp, .. }) => ws
                .send(text(wire::connect_error(nsp, "Invalid namespace")))
                .await
                .map_err(|_| End::Transport)?,
            Frame::Message(Sio::Invalid) => return Err(End::Invalid),
            // Nothing else means anything before CONNECT.
            Frame::Noop | Frame::Message(_) => {}
        }
    }
}

/// A connected socket: its WebSocket, its intake, its outbound queue and its heartbeat.
struct Conn {
    hub: Arc<Hub>,
    ws: Ws,
    inbox: Inbox,
    out_rx: mpsc::Receiver<Box<Queued>>,
    out_bytes: Arc<crate::peers::QueuedBytes>,
    close: Arc<NativeClose>,
    beat: Heartbeat,
    /// Binary attachments still to discard (binary events are refused).
    skip_binary: usize,
    /// The packet being written, while its write is pending.
    in_flight: Option<Box<Queued>>,
    /// The Engine.IO session id and the peer id (for the log).
    sid: String,
    peer_id: String,
}

impl Conn {
    async fn run(&mut self) -> End {
        let close = self.close.clone();
        loop {
            tokio::select! {
                biased;
                () = close.notify.notified() => return End::Server(close.reason()),
                msg = self.ws.next() => {
                    if let Err(end) = self.on_message(msg).await {
                        return end;
                    }
                }
                q = self.out_rx.recv() => {
                    // `None`: the peer was unregistered (closed as a slow reader).
                    let Some(q) = q else { return End::Server(CloseReason::SlowReader) };
                    let wrote = tokio::select! {
                        r = self.write_batch(q) => r,
                        () = close.notify.notified() => Err(End::Server(close.reason())),
                        () = tokio::time::sleep(WRITE_STALL) => Err(End::Stalled),
                    };
                    if let Err(end) = wrote {
                        return end;
                    }
                }
                () = sleep_until(self.beat.next) => {
                    if self.beat.fire() {
                        return End::PingTimeout;
                    }
                    if self.ws.send(text(wire::PING)).await.is_err() {
                        return End::Transport;
                    }
                }
            }
        }
    }

    async fn on_message(
        &mut self,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ) -> Result<(), End> {
        let t = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_))) => {
                // An attachment of a refused binary event, or nothing Engine.IO sends.
                self.skip_binary = self.skip_binary.saturating_sub(1);
                return Ok(());
            }
            Some(Ok(Message::Close(_))) | None => return Err(End::Client),
            Some(Ok(_)) => return Ok(()),
            Some(Err(e)) => {
                tracing::debug!(error = %e, "WebSocket read failed");
                return Err(End::Transport);
            }
        };
        match wire::parse(t.as_str()) {
            Frame::Pong => self.beat.pong(),
            Frame::Ping => self.send_now(wire::PONG.to_owned()).await?,
            Frame::Close => return Err(End::Client),
            Frame::Noop | Frame::Message(Sio::Ack | Sio::Connect { .. }) => {}
            Frame::Invalid | Frame::Message(Sio::Invalid) => return Err(End::Invalid),
            Frame::Message(Sio::Disconnect { nsp }) => {
                if nsp == "/" {
                    return Err(End::Client);
                }
            }
            Frame::Message(Sio::Event { nsp, ack_id, args }) => {
                if nsp == "/" {
                    self.on_event(ack_id, args).await?;
                }
            }
            Frame::Message(Sio::Binary { attachments }) => {
                self.skip_binary = attachments;
                let refusal = Refusal::bad("binary attachments are not supported");
                self.intake_refused(String::new(), None, refusal).await?;
            }
        }
        Ok(())
    }

    /// One event, in arrival order: the same intake as the socketioxide side.
    async fn on_event(&mut self, ack_id: Option<i64>, args: &str) -> Result<(), End> {
        let decoded = wire::event_args(args);
        let (name, data) = match decoded {
            Ok(a) => (a.name, a.data),
            Err(_) => return Err(End::Invalid),
        };
        let queued = self.inbox.intake(name, ack_id, args.len(), || {
            data.ok_or_else(|| Refusal::bad("payload is not valid JSON data"))
        });
        if let Err((event, r)) = queued {
            self.intake_refused(event, ack_id, r).await?;
        }
        Ok(())
    }

    /// An event that could not be queued: answered at once, out of band (best effort,
    /// as on the socketioxide side).
    async fn intake_refused(
        &mut self,
        event: String,
        ack_id: Option<i64>,
        r: Refusal,
    ) -> Result<(), End> {
        let packet = match ack_id {
            Some(id) => wire::ack(id, &r.ack()),
            None => wire::event("error", &r.event(&event)),
        };
        match packet {
            Ok(p) => self.send_now(p).await,
            Err(_) => Ok(()),
        }
    }

    async fn send_now(&mut self, packet: String) -> Result<(), End> {
        match tokio::time::timeout(WRITE_STALL, self.ws.send(text(packet))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(End::Transport),
            Err(_) => Err(End::Stalled),
        }
    }

    /// Writes `first` and whatever else is queued (up to [`WRITE_BATCH`]), then flushes.
    async fn write_batch(&mut self, first: Box<Queued>) -> Result<(), End> {
        let mut next = Some(first);
        let mut n = 0;
        while let Some(q) = next {
            self.out_bytes.sub(q.size);
            match encode(&q.packet) {
                Ok(t) => {
                    // Held by the connection while it is written: if the write fails or is
                    // cut off (close, stall), `end` answers it.
                    self.in_flight = Some(q);
                    if self.ws.feed(text(t)).await.is_err() {
                        return Err(End::Transport);
                    }
                    if let Some(q) = self.in_flight.take() {
                        self.count_relayed(&q.packet);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "Could not encode an outbound packet"),
            }
            n += 1;
            next = if n < WRITE_BATCH {
                self.out_rx.try_recv().ok()
            } else {
                None
            };
        }
        self.ws.flush().await.map_err(|_| End::Transport)
    }

    /// The "events relayed" metric counts relayed events when written (as on the
    /// socketioxide side).
    fn count_relayed(&self, p: &Packet) {
        if let Packet::Emit { event, body, .. } = p {
            let relayed = match body {
                Body::Event(e) => ServerEvent::is_relayed(e),
                Body::Remote(_) => ServerEvent::name_is_relayed(event),
                _ => false,
            };
            if relayed {
                self.hub.metrics.relayed(event);
            }
        }
    }
}

impl Conn {
    /// After the last event read: the session leaves every room (handled after every event
    /// already queued), every packet still held is answered to its sender (before the close
    /// handshake, which may wait on a full socket), and the WebSocket is closed.
    async fn end(self: Box<Self>, end: End) {
        tracing::debug!(sid = %self.sid, peer = %self.peer_id, reason = ?end, "WebSocket closed");
        let _ = self.inbox.tx.send(Box::new(InboundItem::Disconnect)).await;
        let Conn {
            hub,
            mut ws,
            inbox,
            mut out_rx,
            out_bytes,
            in_flight,
            ..
        } = *self;
        drop(inbox);
        if let Some(q) = in_flight {
            answer_lost(&hub, q.packet).await;
        }
        answer_undelivered(&hub, &mut out_rx, &out_bytes).await;
        finish(&mut ws, end).await;
    }
}

fn encode(p: &Packet) -> Result<String, serde_json::Error> {
    match p {
        Packet::Emit { event, body, .. } => wire::event(event, body),
        Packet::Ack { ack_id, body } => wire::ack(*ack_id, body),
    }
}

/// Ends the WebSocket: `41` first when the server shuts down (the client then knows not to
/// expect its session back), then the close handshake, bounded by [`CLOSE_TIMEOUT`].
async fn finish(ws: &mut Ws, end: End) {
    let bye = async {
        if end == End::Server(CloseReason::Shutdown) {
            ws.feed(text(wire::DISCONNECT)).await?;
        }
        ws.close(None).await
    };
    if !matches!(end, End::Client | End::Transport) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, bye).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, upgrade: bool) -> Request {
        let mut b = Request::builder().uri(uri);
        if upgrade {
            b = b
                .header("connection", "keep-alive, Upgrade")
                .header("upgrade", "websocket")
                .header("sec-websocket-version", "13")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
        }
        b.body(axum::body::Body::empty()).expect("request")
    }

    #[test]
    fn only_fresh_engine_io_4_websockets_are_native() {
        let p = "/socket.io";
        assert!(wants(
            &req("/socket.io/?EIO=4&transport=websocket", true),
            p
        ));
        assert!(
            !wants(&req("/socket.io/?EIO=4&transport=websocket", false), p),
            "no upgrade headers"
        );
        assert!(
            !wants(
                &req("/socket.io/?EIO=4&transport=websocket&sid=abc", true),
                p
            ),
            "upgrade of a polling session"
        );
        assert!(!wants(&req("/socket.io/?EIO=4&transport=polling", true), p));
        assert!(!wants(
            &req("/socket.io/?EIO=3&transport=websocket", true),
            p
        ));
        assert!(!wants(&req("/other/?EIO=4&transport=websocket", true), p));
        assert!(!wants(&req("/socket.io/", true), p));
    }

    #[test]
    fn heartbeat_pings_then_times_out_without_a_pong() {
        let mut b = Heartbeat::new();
        assert!(!b.fire(), "first: a ping is due");
        assert!(b.fire(), "no pong by the next timer: timed out");
        let mut b = Heartbeat::new();
        assert!(!b.fire());
        b.pong();
        assert!(!b.fire(), "answered: the next timer is a ping again");
    }
}
