//! The Socket.IO side: the socketioxide layer, the handshake (auth), and the wiring of each
//! socket's ordered inbound queue, session task and outbound writer.
//!
//! Design for ordering and no silent loss (SPEC section 4):
//! client → [`inbound::Inbound`] extractor (inline, arrival order) → inbound queue →
//! [`session::run`] (one per socket, one event at a time, one synchronous step of
//! [`crate::core::Core`] each) → target's outbound queue ([`crate::peers`]) →
//! [`outbound::writer`] (one per socket, retries while the socket buffer is full).
//! Each step is FIFO, so per (sender, target) events arrive in send order; each step either
//! waits (bounded) or answers the sender with an error.

pub mod inbound;
pub mod native;
pub mod outbound;
pub mod session;
pub mod wire;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::TryData;
use socketioxide::handler::{ConnectHandler, FromConnectParts};
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::Socket;
use socketioxide::{SocketIo, TransportType};
use tokio::sync::mpsc;

use crate::auth::server_chosen_user_id;
use crate::core::PeerInfo;
use crate::hub::Hub;
use crate::peers::{Closer, PeerQueue, QueuedBytes};
use crate::ratelimit::EventLimiter;
use inbound::{Inbound, InboundItem, Inbox};
use session::PeerCtx;

/// Packets a socket's engine.io buffer holds before `emit` reports it full. socketioxide's
/// default of 128 is filled by one trickle-ICE burst to a long-polling peer; 512 absorbs
/// normal bursts, and beyond it the writer waits instead of dropping (the ordering tests send
/// 2,000 events, so they exercise that path).
pub const MAX_BUFFER_SIZE: usize = 512;
/// Bytes tungstenite reads at a time per WebSocket (engineioxide default: 4 KiB), held by
/// every idle socket. A trickle-ICE candidate (about 300 bytes on the wire) fits in one read;
/// a larger message is read into a buffer reserved for its full length once its frame
/// header is in, so an SDP offer takes two reads either way.
pub const WS_READ_BUFFER: usize = 512;

/// How long an Engine.IO session may stay open without a Socket.IO CONNECT.
pub use crate::conn_limit::CONNECT_TIMEOUT;

/// Connect extractor for the socket itself (socketioxide only hands out `SocketRef`, which
/// we must not hold forever in the writer).
struct SocketArc(Arc<Socket<LocalAdapter>>);

impl FromConnectParts<LocalAdapter> for SocketArc {
    type Error = Infallible;
    fn from_connect_parts(
        s: &Arc<Socket<LocalAdapter>>,
        _: &Option<socketioxide::handler::Value>,
    ) -> Result<Self, Infallible> {
        Ok(Self(s.clone()))
    }
}

/// Refused handshake; the client gets `connect_error` with this message.
#[derive(Debug)]
pub(crate) struct Refused(pub &'static str);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// What one polling request body, one WebSocket message and one WebSocket frame may carry
/// before the server stops reading it (and closes that connection): twice
/// `max_payload_bytes` plus 4 KiB. It is above the per-event limit, so that a too-large event
/// still reaches us and gets a `payload-too-large` answer with the connection kept; it is far
/// below tungstenite's 64 MiB, so an unfinished fragmented message cannot grow the server by
/// more than this per connection (SPEC section 4, limits).
#[must_use]
pub fn transport_limit(max_payload_bytes: usize) -> usize {
    max_payload_bytes.saturating_mul(2).saturating_add(4096)
}

/// Builds the Socket.IO layer and its handle.
pub fn layer(hub: &Arc<Hub>) -> (SocketIoLayer, SocketIo) {
    let sig = &hub.cfg.signaling;
    let hard_limit = transport_limit(sig.max_payload_bytes);
    let (layer, io) = SocketIo::builder()
        .req_path(sig.socketio_path.clone())
        .max_buffer_size(MAX_BUFFER_SIZE)
        // Signaling events are a few hundred bytes: a small read chunk (default 4 KiB)
        // saves memory per idle WebSocket (see WS_READ_BUFFER).
        .ws_read_buffer_size(WS_READ_BUFFER)
        .max_payload(hard_limit as u64)
        .ws_max_message_size(hard_limit)
        .ws_max_frame_size(hard_limit)
        .ping_interval(Duration::from_secs(25))
        .ping_timeout(Duration::from_secs(20))
        .connect_timeout(CONNECT_TIMEOUT)
        .transports([TransportType::Polling, TransportType::Websocket])
        .build_layer();
    let mw_hub = hub.clone();
    let middleware = move |SocketArc(s): SocketArc, TryData(auth): TryData<Value>| {
        let hub = mw_hub.clone();
        async move { handshake(&hub, &s, auth.ok()) }
    };
    // The writer starts in the connect handler, which socketioxide calls only once the socket
    // is marked connected: `emit` refuses (`Closed`) until then, and socketioxide sends the
    // CONNECT packet just before setting that flag, so a client that answers at once could
    // otherwise have its first event's fan-out refused and its writer ended for good (seen on
    // a loaded machine: the join ack never came). Deliveries queue meanwhile, in order.
    io.ns(
        "/",
        (async |SocketArc(s): SocketArc| start_writer(&s)).with(middleware),
    );
    (layer, io)
}

/// Runs before socketioxide answers the CONNECT packet, so every handler and queue exists
/// before the client can send its first event.
fn handshake(
    hub: &Arc<Hub>,
    s: &Arc<Socket<LocalAdapter>>,
    auth: Option<Value>,
) -> Result<(), Refused> {
    let origin = s
        .req_parts()
        .headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let ip = s
        .req_parts()
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let sid = s.id.to_string();
    let admitted = admit(
        hub,
        &Handshake {
            origin,
            auth: auth.as_ref(),
            ip,
            sid: &sid,
        },
        Closer::SocketIo(Arc::downgrade(s)),
    )?;
    let in_tx = admitted.inbox.tx.clone();
    s.extensions.insert(admitted.inbox);
    s.on_fallback(async |_: Inbound| {});
    s.on_disconnect(move || {
        let tx = in_tx.clone();
        async move {
            // Queued after every event already received, so it is handled last.
            let _ = tx.send(Box::new(InboundItem::Disconnect)).await;
        }
    });
    s.extensions
        .insert(PendingWriter(Arc::new(std::sync::Mutex::new(Some(
            WriterStart {
                rx: admitted.out_rx,
                bytes: admitted.out_bytes,
                hub: hub.clone(),
            },
        )))));
    Ok(())
}

/// What a client brings to its Socket.IO CONNECT, whichever transport carries it.
pub(crate) struct Handshake<'a> {
    /// The `Origin` header of the request that opened the session.
    pub origin: Option<&'a str>,
    /// The CONNECT packet's auth object.
    pub auth: Option<&'a Value>,
    /// The client's address (`None` in router-only tests).
    pub ip: Option<std::net::IpAddr>,
    /// The Engine.IO session id, for logs only.
    pub sid: &'a str,
}

/// A connection the handshake let in: its session runs; the transport feeds `inbox` and
/// drains `out_rx`.
pub(crate) struct Admitted {
    pub peer_id: String,
    pub inbox: Inbox,
    pub out_rx: mpsc::Receiver<Box<crate::peers::Queued>>,
    pub out_bytes: Arc<QueuedBytes>,
}

/// The Socket.IO handshake, for both transports: the Origin, the auth token and the
/// per-address cap decide; a connection let in gets a fresh peer id, its queues, its
/// entry in the hub and its session task.
pub(crate) fn admit(hub: &Arc<Hub>, h: &Handshake<'_>, close: Closer) -> Result<Admitted, Refused> {
    let sid = h.sid;
    if !hub.origin_allowed(h.origin) {
        hub.metrics.auth_failures.inc();
        tracing::debug!(%sid, origin = ?h.origin, "Handshake refused: origin not allowed");
        return Err(Refused("origin not allowed"));
    }
    let token = h.auth.and_then(|a| a.get("token")).and_then(Value::as_str);
    let subject = match hub.live().auth.authenticate(token) {
        Ok(sub) => sub.user_id,
        Err(e) => {
            hub.metrics.auth_failures.inc();
            tracing::debug!(%sid, reason = %e, "Handshake refused");
            return Err(Refused("unauthorized"));
        }
    };
    let ip = h.ip;
    if let Some(ip) = ip
        && !hub.add_connection(ip)
    {
        hub.metrics.connections_refused.inc();
        tracing::debug!(%sid, %ip, "Handshake refused: too many connections from this address");
        return Err(Refused("too many connections from this address"));
    }
    let sig = &hub.cfg.signaling;
    // Never the Engine.IO sid (which is also socketioxide's socket id): every room-mate
    // learns a peer id, and the sid is the only credential of a session's transport.
    let id = new_peer_id();
    let (in_tx, in_rx) = mpsc::channel::<Box<InboundItem>>(inbound::QUEUE);
    let (out_tx, out_rx) = mpsc::channel(crate::peers::QUEUE);
    let queued = Arc::new(QueuedBytes::new(sig.max_payload_bytes));
    let inbox = Inbox {
        tx: in_tx,
        limiter: Arc::new(EventLimiter::new(
            sig.rate_limit_per_second,
            sig.rate_limit_burst,
        )),
        max_payload: sig.max_payload_bytes,
        queued: queued.clone(),
    };
    let out_bytes = Arc::new(QueuedBytes::new(sig.max_payload_bytes));
    hub.register_peer(
        &id,
        PeerQueue {
            tx: out_tx,
            bytes: out_bytes.clone(),
            close,
        },
    );
    hub.metrics.connections.inc();
    hub.metrics.connections_total.inc();
    let me = PeerCtx {
        info: PeerInfo {
            id: id.clone(),
            subject: subject.clone(),
            fallback_user: format!("anon-{}", uuid::Uuid::new_v4().simple()),
        },
        // Set by `serve` (`into_make_service_with_connect_info`); unspecified in router-only
        // tests.
        ip: ip.unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
        counted_ip: ip,
        turn_user: subject.unwrap_or_else(|| server_chosen_user_id(None)),
    };
    tokio::spawn(session::run(hub.clone(), me, in_rx, queued));
    tracing::debug!(%sid, peer = %id, "Connected");
    Ok(Admitted {
        peer_id: id,
        inbox,
        out_rx,
        out_bytes,
    })
}

/// What the connect handler needs to start a socket's writer ([`start_writer`]).
struct WriterStart {
    rx: mpsc::Receiver<Box<crate::peers::Queued>>,
    bytes: Arc<QueuedBytes>,
    hub: Arc<Hub>,
}

/// The writer of a socket whose CONNECT is still being answered, kept in its extensions
/// (which need `Clone`) until the connect handler takes it.
#[derive(Clone)]
struct PendingWriter(Arc<std::sync::Mutex<Option<WriterStart>>>);

/// Starts the writer of a socket that is now connected. A socket whose connect failed never
/// gets here: its queue's receiver is dropped with the socket, so sends to it fail.
fn start_writer(s: &Arc<Socket<LocalAdapter>>) {
    let start = s.extensions.remove::<PendingWriter>().and_then(|p| {
        p.0.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    });
    if let Some(w) = start {
        tokio::spawn(outbound::writer(Arc::downgrade(s), w.rx, w.bytes, w.hub));
    }
}

/// A fresh peer id: 128 random bits, base64url (22 characters). Unguessable, and unrelated
/// to the Engine.IO session id, so knowing it gives no handle on the peer's transport.
#[must_use]
pub fn new_peer_id() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}
