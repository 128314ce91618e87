//! The PeerJS-compatible endpoint (`[signaling.peerjs]`, SPEC section 4.1): the HTTP routes
//! and the WebSocket protocol of the Node `peer` server (peerjs-server), on the signaling
//! listener, so apps written against the npm `peerjs` client move without client changes.
//!
//! One task per WebSocket reads frames (JSON objects `{type, src?, dst?, payload?}`),
//! rewrites `src` to the connection's own id (never the client's word) and forwards them;
//! it writes its own bounded outbound queue in order. A message for an id that is not
//! connected is queued (OFFER/ANSWER/CANDIDATE only, at most [`MAX_QUEUED`] per id) and
//! delivered when the id connects; a queue unread for `expire_timeout` is dropped and each
//! waiting sender gets `EXPIRE`. A client silent for `alive_timeout` is closed.
//!
//! Beyond peerjs-server: frames, queues, ids and tokens are bounded; the Origin check, the
//! per-IP connection cap and the per-socket rate limit of Socket.IO apply; with `auth` on
//! the PeerJS `key` must be a valid bearer token (or JWT) instead of the configured key; with
//! `redis_url`, ids and queued messages are cluster-wide ([`crate::cluster`]).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse as _, Response};
use futures::{SinkExt as _, StreamExt as _};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::hub::Hub;
use crate::ratelimit::EventLimiter;
use crate::rest::AppError;
use crate::socket::native;

/// Messages queued for one id that is not connected; beyond, the sender gets EXPIRE.
pub const MAX_QUEUED: usize = 64;
/// Bytes queued for one id that is not connected; beyond, the sender gets EXPIRE.
pub const MAX_QUEUED_BYTES: usize = 128 * 1024;
/// Ids with a queue at once (each bounded by [`MAX_QUEUED`]); beyond, EXPIRE at once.
pub const MAX_QUEUES: usize = 10_000;
/// Bytes queued for all absent ids together (per instance; the same cap in Redis for the
/// cluster); beyond, EXPIRE at once.
pub const MAX_QUEUED_BYTES_TOTAL: usize = 64 * 1024 * 1024;
/// Longest id and token.
pub const MAX_ID_LEN: usize = 64;
/// Frames a connection's outbound queue holds; a client that lets it fill is not reading:
/// it is closed and the sender told `LEAVE` (as peerjs-server does when a send fails).
const OUT_QUEUE: usize = 256;
/// How often queues are checked for expiry.
pub const EXPIRE_SWEEP: Duration = Duration::from_millis(250);

const ERR_PARAMS: &str = "No id, token, or key supplied to websocket server";
const ERR_KEY: &str = "Invalid key provided";
const ERR_ID: &str = "Invalid id or token";
const ERR_LIMIT: &str = "Server has reached its concurrent user limit";

/// A connected client.
struct Client {
    token: String,
    /// Tells this connection apart from a later one with the same id.
    conn: u64,
    tx: mpsc::Sender<Arc<str>>,
    close: Arc<Notify>,
}

/// Messages waiting for an id that is not connected.
struct Queue {
    since: Instant,
    bytes: usize,
    /// (sender id, frame).
    msgs: VecDeque<(String, Arc<str>)>,
}

/// The ids connected to this instance and the queues of ids that are not.
pub struct Registry {
    clients: Mutex<HashMap<String, Client>>,
    queues: Mutex<HashMap<String, Queue>>,
    /// Bytes held by every queue.
    queued_bytes: std::sync::atomic::AtomicUsize,
    next_conn: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Self {
            clients: Mutex::new(HashMap::new()),
            queues: Mutex::new(HashMap::new()),
            queued_bytes: std::sync::atomic::AtomicUsize::new(0),
            next_conn: AtomicU64::new(1),
        }
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

/// Where a message went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Delivered,
    Queued,
    /// Not connected and not queueable (LEAVE/EXPIRE), or the queue is full.
    Dropped,
    /// The queue for that id is full, or too many ids have queues.
    QueueFull,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A frame as JSON text.
#[must_use]
pub fn frame(kind: &str, src: Option<&str>, dst: Option<&str>, payload: Option<&Value>) -> String {
    let mut m = serde_json::Map::new();
    m.insert("type".into(), Value::String(kind.into()));
    if let Some(s) = src {
        m.insert("src".into(), Value::String(s.into()));
    }
    if let Some(d) = dst {
        m.insert("dst".into(), Value::String(d.into()));
    }
    if let Some(p) = payload {
        m.insert("payload".into(), p.clone());
    }
    Value::Object(m).to_string()
}

fn error_frame(msg: &str) -> String {
    json!({"type": "ERROR", "payload": {"msg": msg}}).to_string()
}

fn queueable(kind: &str) -> bool {
    matches!(kind, "OFFER" | "ANSWER" | "CANDIDATE")
}

/// An id or token a client may use: 1-64 characters of `[A-Za-z0-9_ -]` (the peerjs
/// client's own id rule fits), tokens any printable ASCII.
#[must_use]
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b' '))
}

#[must_use]
pub fn valid_token(token: &str) -> bool {
    !token.is_empty() && token.len() <= MAX_ID_LEN && token.bytes().all(|b| b.is_ascii_graphic())
}

impl Registry {
    /// Ids connected here.
    #[must_use]
    pub fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.clients).keys().cloned().collect();
        v.sort();
        v
    }

    #[must_use]
    pub fn len(&self) -> usize {
        lock(&self.clients).len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[must_use]
    pub fn contains(&self, id: &str) -> bool {
        lock(&self.clients).contains_key(id)
    }

    /// Hands `frame` to the local client `dst`: `None` when it is not connected here.
    /// A client whose queue is full is closed (it is not reading).
    pub fn deliver_local(&self, dst: &str, frame: Arc<str>) -> Option<bool> {
        let clients = lock(&self.clients);
        let c = clients.get(dst)?;
        match c.tx.try_send(frame) {
            Ok(()) => Some(true),
            Err(mpsc::error::TrySendError::Full(_)) => {
                c.close.notify_one();
                Some(false)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => None,
        }
    }

    /// Queues a message for an id that is not connected.
    pub fn enqueue(&self, dst: &str, src: &str, frame: Arc<str>) -> Sent {
        let size = frame.len();
        let mut queues = lock(&self.queues);
        if self.queued_bytes.load(Ordering::Relaxed) + size > MAX_QUEUED_BYTES_TOTAL {
            return Sent::QueueFull;
        }
        let n = queues.len();
        match queues.get_mut(dst) {
            Some(q) if q.msgs.len() >= MAX_QUEUED || q.bytes + size > MAX_QUEUED_BYTES => {
                return Sent::QueueFull;
            }
            Some(q) => {
                q.bytes += size;
                q.msgs.push_back((src.to_string(), frame));
            }
            None if n >= MAX_QUEUES || size > MAX_QUEUED_BYTES => return Sent::QueueFull,
            None => {
                let mut msgs = VecDeque::new();
                msgs.push_back((src.to_string(), frame));
                queues.insert(
                    dst.to_string(),
                    Queue {
                        since: Instant::now(),
                        bytes: size,
                        msgs,
                    },
                );
            }
        }
        self.queued_bytes.fetch_add(size, Ordering::Relaxed);
        Sent::Queued
    }

    fn release(&self, q: &Queue) {
        self.queued_bytes.fetch_sub(q.bytes, Ordering::Relaxed);
    }

    /// The queue of `id`, taken (it connected).
    pub fn take_queue(&self, id: &str) -> Vec<Arc<str>> {
        let q = lock(&self.queues).remove(id);
        q.map(|q| {
            self.release(&q);
            q.msgs.into_iter().map(|(_, f)| f).collect()
        })
        .unwrap_or_default()
    }

    /// Queues unread for `expire`: removed; (unreachable id, each distinct sender).
    pub fn expire(&self, expire: Duration) -> Vec<(String, Vec<String>)> {
        let now = Instant::now();
        let mut queues = lock(&self.queues);
        let gone: Vec<String> = queues
            .iter()
            .filter(|(_, q)| now.duration_since(q.since) >= expire)
            .map(|(id, _)| id.clone())
            .collect();
        gone.into_iter()
            .filter_map(|id| {
                let q = queues.remove(&id)?;
                self.release(&q);
                let mut srcs: Vec<String> = Vec::new();
                for (s, _) in q.msgs {
                    if !srcs.contains(&s) {
                        srcs.push(s);
                    }
                }
                Some((id, srcs))
            })
            .collect()
    }

    /// Closes every connection (fencing); how many.
    pub fn close_all(&self) -> usize {
        let clients = lock(&self.clients);
        for c in clients.values() {
            c.close.notify_one();
        }
        clients.len()
    }

    /// Closes the local connection of `id` (it connected again on another instance).
    pub fn close(&self, id: &str) {
        if let Some(c) = lock(&self.clients).get(id) {
            c.close.notify_one();
        }
    }
}

/// `GET P/`.
pub async fn info() -> Response {
    axum::Json(json!({
        "name": "PeerJS Server",
        "description": "A server side element to broker connections between PeerJS clients (Switchboard)",
        "website": "https://peerjs.com/",
    }))
    .into_response()
}

/// Whether `key` opens the endpoint: the configured key, or with auth on a valid token.
fn key_ok(hub: &Hub, key: &str) -> bool {
    let live = hub.live();
    if live.auth.is_open() {
        let want = hub.cfg.signaling.peerjs.key.as_bytes();
        subtle::ConstantTimeEq::ct_eq(key.as_bytes(), want).into()
    } else {
        live.auth.authenticate(Some(key)).is_ok()
    }
}

fn bad_key(hub: &Hub) -> AppError {
    hub.metrics.peerjs_refused("key");
    AppError::unauthorized("invalid key")
}

/// `GET P/{key}/id`: a fresh id, as `text/html` (what the peerjs client expects).
pub async fn new_id(State(hub): State<Arc<Hub>>, Path(key): Path<String>) -> Response {
    if !key_ok(&hub, &key) {
        return bad_key(&hub).into_response();
    }
    let id = loop {
        let id = uuid::Uuid::new_v4().to_string();
        if !hub.peerjs.contains(&id) {
            break id;
        }
    };
    let mut res = id.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    res
}

/// `GET P/{key}/peers`: connected ids when `allow_discovery` (the cluster's in Redis mode).
pub async fn peers(State(hub): State<Arc<Hub>>, Path(key): Path<String>) -> Response {
    if !key_ok(&hub, &key) {
        return bad_key(&hub).into_response();
    }
    if !hub.cfg.signaling.peerjs.allow_discovery {
        return AppError::unauthorized("discovery is off (signaling.peerjs.allow_discovery)")
            .into_response();
    }
    let ids = match hub.cluster() {
        Some(c) => match c.peerjs_ids().await {
            Ok(ids) => ids,
            Err(()) => return AppError::unavailable().into_response(),
        },
        None => hub.peerjs.ids(),
    };
    axum::Json(ids).into_response()
}

/// `GET P/peerjs?key&id&token`: the WebSocket. The Origin and the per-IP cap are checked
/// before the upgrade (403 / 429); everything else is answered on the socket, as
/// peerjs-server does.
pub async fn websocket(State(hub): State<Arc<Hub>>, mut req: Request) -> Response {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if !hub.origin_allowed(origin) {
        hub.metrics.peerjs_refused("origin");
        hub.metrics.auth_failures.inc();
        return AppError::forbidden("origin not allowed").into_response();
    }
    let Some(accept) = native::accept_key(req.headers()) else {
        return AppError::bad_request("a WebSocket upgrade is required").into_response();
    };
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = ip
        && !hub.add_connection(ip)
    {
        hub.metrics.peerjs_refused("per-ip");
        hub.metrics.connections_refused.inc();
        return AppError::too_many_connections(hub.cfg.signaling.max_connections_per_ip)
            .into_response();
    }
    let query: HashMap<String, String> = req
        .uri()
        .query()
        .map(|q| {
            url_pairs(q)
                .into_iter()
                .filter(|(k, _)| matches!(k.as_str(), "key" | "id" | "token"))
                .collect()
        })
        .unwrap_or_default();
    let on_upgrade = hyper::upgrade::on(&mut req);
    drop(req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(io) => serve(&hub, io, &query).await,
            Err(e) => tracing::debug!(error = %e, "PeerJS WebSocket upgrade failed"),
        }
        if let Some(ip) = ip {
            hub.remove_connection(ip);
        }
    });
    native::switching_protocols(accept)
}

/// `a=1&b=x%20y` → pairs, percent-decoded (`+` is a space).
fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

async fn refuse(ws: &mut Ws, text: String) {
    let _ = ws.send(Message::text(text)).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

/// How a registration went.
pub enum Claim {
    /// New id: send OPEN.
    Open,
    /// Same id and token as a live connection: it is replaced (no OPEN).
    Replaced,
    Taken,
    Limit,
    /// The shared state could not be reached.
    Unavailable,
}

async fn serve(hub: &Arc<Hub>, io: hyper::upgrade::Upgraded, q: &HashMap<String, String>) {
    let mut ws = WebSocketStream::from_raw_socket(
        TokioIo::new(io),
        Role::Server,
        Some(native::ws_config(hub)),
    )
    .await;
    let (Some(key), Some(id), Some(token)) = (
        q.get("key").filter(|s| !s.is_empty()),
        q.get("id").filter(|s| !s.is_empty()),
        q.get("token").filter(|s| !s.is_empty()),
    ) else {
        hub.metrics.peerjs_refused("params");
        return refuse(&mut ws, error_frame(ERR_PARAMS)).await;
    };
    if !key_ok(hub, key) {
        hub.metrics.peerjs_refused("key");
        hub.metrics.auth_failures.inc();
        return refuse(&mut ws, error_frame(ERR_KEY)).await;
    }
    if !valid_id(id) || !valid_token(token) {
        hub.metrics.peerjs_refused("id");
        return refuse(&mut ws, error_frame(ERR_ID)).await;
    }
    let (tx, rx) = mpsc::channel::<Arc<str>>(OUT_QUEUE);
    let close = Arc::new(Notify::new());
    let conn = hub.peerjs.next_conn.fetch_add(1, Ordering::Relaxed);
    let client = Client {
        token: token.clone(),
        conn,
        tx,
        close: close.clone(),
    };
    let (claim, queued) = register(hub, id, client).await;
    match claim {
        Claim::Taken => {
            hub.metrics.peerjs_refused("id-taken");
            let taken = json!({"type": "ID-TAKEN", "payload": {"msg": "ID is taken"}});
            return refuse(&mut ws, taken.to_string()).await;
        }
        Claim::Limit => {
            hub.metrics.peerjs_refused("limit");
            return refuse(&mut ws, error_frame(ERR_LIMIT)).await;
        }
        Claim::Unavailable => {
            hub.metrics.peerjs_refused("unavailable");
            return refuse(
                &mut ws,
                error_frame("The shared state could not be reached; try again"),
            )
            .await;
        }
        Claim::Open => {
            if ws.send(Message::text(r#"{"type":"OPEN"}"#)).await.is_err() {
                unregister(hub, id, conn).await;
                return;
            }
        }
        Claim::Replaced => {}
    }
    hub.metrics.peerjs_connections.inc();
    tracing::debug!(peer = %id, "PeerJS client connected");
    let end = run(hub, &mut ws, id, rx, &close, queued).await;
    hub.metrics.peerjs_connections.dec();
    unregister(hub, id, conn).await;
    tracing::debug!(peer = %id, reason = end, "PeerJS client disconnected");
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.close(None)).await;
}

/// Registers `id` here (and in Redis in cluster mode); the messages queued for it.
async fn register(hub: &Arc<Hub>, id: &str, client: Client) -> (Claim, Vec<Arc<str>>) {
    let limit = hub.cfg.signaling.peerjs.concurrent_limit;
    {
        let clients = lock(&hub.peerjs.clients);
        match clients.get(id) {
            Some(old) if old.token != client.token => return (Claim::Taken, Vec::new()),
            Some(_) => {}
            None if clients.len() >= limit => return (Claim::Limit, Vec::new()),
            None => {}
        }
    }
    let mut queued = Vec::new();
    let mut claim = Claim::Open;
    if let Some(cluster) = hub.cluster() {
        match cluster.peerjs_claim(id, &client.token).await {
            Ok((c, q)) => {
                claim = c;
                queued = q;
            }
            Err(()) => return (Claim::Unavailable, Vec::new()),
        }
        if matches!(claim, Claim::Taken) {
            return (claim, Vec::new());
        }
    }
    let mut clients = lock(&hub.peerjs.clients);
    match clients.get(id) {
        Some(old) if old.token != client.token => return (Claim::Taken, Vec::new()),
        Some(old) => {
            // The same client again (a reconnect): the new socket takes over.
            old.close.notify_one();
            claim = Claim::Replaced;
        }
        None if clients.len() >= limit => return (Claim::Limit, Vec::new()),
        None => {}
    }
    clients.insert(id.to_string(), client);
    drop(clients);
    queued.extend(hub.peerjs.take_queue(id));
    (claim, queued)
}

async fn unregister(hub: &Arc<Hub>, id: &str, conn: u64) {
    let removed = {
        let mut clients = lock(&hub.peerjs.clients);
        if clients.get(id).is_some_and(|c| c.conn == conn) {
            clients.remove(id);
            true
        } else {
            false
        }
    };
    if removed && let Some(cluster) = hub.cluster() {
        cluster.peerjs_release(id).await;
    }
}

/// The connection's loop; why it ended.
async fn run(
    hub: &Arc<Hub>,
    ws: &mut Ws,
    me: &str,
    mut rx: mpsc::Receiver<Arc<str>>,
    close: &Notify,
    queued: Vec<Arc<str>>,
) -> &'static str {
    for f in queued {
        if ws.feed(Message::text(&*f)).await.is_err() {
            return "transport";
        }
    }
    if ws.flush().await.is_err() {
        return "transport";
    }
    let sig = &hub.cfg.signaling;
    let alive = sig.peerjs.alive_timeout;
    let limiter = EventLimiter::new(sig.rate_limit_per_second, sig.rate_limit_burst);
    let mut deadline = tokio::time::Instant::now() + alive;
    loop {
        tokio::select! {
            biased;
            () = close.notified() => return "closed by the server",
            out = rx.recv() => {
                let Some(f) = out else { return "closed by the server" };
                if ws.send(Message::text(&*f)).await.is_err() {
                    return "transport";
                }
            }
            msg = ws.next() => {
                deadline = tokio::time::Instant::now() + alive;
                match msg {
                    Some(Ok(Message::Text(t))) => handle(hub, me, t.as_str(), &limiter).await,
                    Some(Ok(Message::Binary(_))) => hub.metrics.peerjs_dropped("bad-json"),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(_))) | None => return "client closed",
                    Some(Err(e)) => {
                        tracing::debug!(peer = %me, error = %e, "PeerJS connection unreadable or over the frame limit");
                        return "transport";
                    }
                }
            }
            () = tokio::time::sleep_until(deadline) => return "alive timeout",
        }
    }
}

/// One frame from `me`.
async fn handle(hub: &Arc<Hub>, me: &str, text: &str, limiter: &EventLimiter) {
    let Ok(Value::Object(msg)) = serde_json::from_str::<Value>(text) else {
        hub.metrics.peerjs_dropped("bad-json");
        return;
    };
    let Some(kind) = msg.get("type").and_then(Value::as_str) else {
        hub.metrics.peerjs_dropped("unknown-type");
        return;
    };
    let kind: &'static str = match kind {
        "HEARTBEAT" => return,
        "OFFER" => "OFFER",
        "ANSWER" => "ANSWER",
        "CANDIDATE" => "CANDIDATE",
        "LEAVE" => "LEAVE",
        "EXPIRE" => "EXPIRE",
        _ => {
            hub.metrics.peerjs_dropped("unknown-type");
            return;
        }
    };
    let Some(dst) = msg
        .get("dst")
        .and_then(Value::as_str)
        .filter(|d| valid_id(d))
    else {
        hub.metrics.peerjs_dropped("bad-json");
        return;
    };
    if !limiter.allow() {
        hub.metrics.peerjs_dropped("rate-limited");
        if queueable(kind) {
            expire_to(hub, me, dst).await;
        }
        return;
    }
    hub.metrics.peerjs_message(kind);
    let f: Arc<str> = Arc::from(frame(kind, Some(me), Some(dst), msg.get("payload")));
    transmit(hub, me, dst, kind, f).await;
}

/// Delivers or queues `f` (from `src`) for `dst`.
pub async fn transmit(hub: &Arc<Hub>, src: &str, dst: &str, kind: &str, f: Arc<str>) {
    match hub.peerjs.deliver_local(dst, f.clone()) {
        Some(true) => return,
        Some(false) => {
            // Not reading: closed; the sender is told to stop trying.
            hub.metrics.peerjs_dropped("slow-reader");
            let leave = Arc::from(frame("LEAVE", Some(dst), Some(src), None));
            let _ = hub.peerjs.deliver_local(src, leave);
            return;
        }
        None => {}
    }
    let sent = match hub.cluster() {
        Some(cluster) => cluster
            .peerjs_send(dst, src, &f, queueable(kind))
            .await
            .unwrap_or(Sent::QueueFull),
        None if queueable(kind) => hub.peerjs.enqueue(dst, src, f),
        None => Sent::Dropped,
    };
    match sent {
        Sent::QueueFull => {
            hub.metrics.peerjs_dropped("queue-full");
            expire_to(hub, src, dst).await;
        }
        Sent::Dropped => hub.metrics.peerjs_dropped("unreachable"),
        Sent::Delivered | Sent::Queued => {}
    }
}

/// Tells `src` that `dst` cannot be reached (`EXPIRE`, src = the unreachable id).
async fn expire_to(hub: &Arc<Hub>, src: &str, dst: &str) {
    let f: Arc<str> = Arc::from(frame("EXPIRE", Some(dst), Some(src), None));
    if hub.peerjs.deliver_local(src, f.clone()).is_none()
        && let Some(cluster) = hub.cluster()
    {
        let _ = cluster.peerjs_send(src, dst, &f, false).await;
    }
}

/// Every [`EXPIRE_SWEEP`], drops the queues unread for `expire_timeout` and tells their
/// senders (`EXPIRE`), until the hub is gone.
pub async fn sweep(hub: Weak<Hub>) {
    let mut tick = tokio::time::interval(EXPIRE_SWEEP);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { break };
        let expire = hub.cfg.signaling.peerjs.expire_timeout;
        let mut gone = hub.peerjs.expire(expire);
        if let Some(cluster) = hub.cluster() {
            gone.extend(cluster.peerjs_expire(expire).await);
        }
        for (dst, srcs) in gone {
            for src in srcs {
                hub.metrics.peerjs_dropped("expired");
                expire_to(&hub, &src, &dst).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_tokens_are_bounded_and_plain() {
        assert!(valid_id("abc-DEF_1 2"));
        assert!(valid_id(&"a".repeat(64)));
        assert!(!valid_id(&"a".repeat(65)));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id("a:b"));
        assert!(valid_token("k3x!9"));
        assert!(!valid_token("a b"));
        assert!(!valid_token(&"t".repeat(65)));
    }

    #[test]
    fn queries_are_percent_decoded() {
        let p = url_pairs("key=peerjs&id=a%20b&token=x+y&version=1.5.4");
        assert_eq!(p[1], ("id".to_string(), "a b".to_string()));
        assert_eq!(p[2], ("token".to_string(), "x y".to_string()));
        assert!(decode("%zz").is_none());
    }

    #[test]
    fn queues_are_capped_per_id_and_expire_once_per_sender() {
        let r = Registry::default();
        for i in 0..MAX_QUEUED {
            let src = if i % 2 == 0 { "a" } else { "b" };
            assert_eq!(r.enqueue("d", src, Arc::from("{}")), Sent::Queued);
        }
        assert_eq!(r.enqueue("d", "a", Arc::from("{}")), Sent::QueueFull);
        let big: Arc<str> = Arc::from("x".repeat(MAX_QUEUED_BYTES / 2 + 1));
        assert_eq!(r.enqueue("e", "a", big.clone()), Sent::Queued);
        assert_eq!(r.enqueue("e", "a", big), Sent::QueueFull, "per-id byte cap");
        assert_eq!(r.take_queue("e").len(), 1);
        let gone = r.expire(Duration::ZERO);
        assert_eq!(
            gone,
            vec![("d".to_string(), vec!["a".to_string(), "b".to_string()])]
        );
        assert!(r.take_queue("d").is_empty());
        assert_eq!(
            r.queued_bytes.load(Ordering::Relaxed),
            0,
            "every byte released"
        );
    }

    #[test]
    fn a_frame_keeps_the_payload_and_the_servers_src() {
        let f = frame("OFFER", Some("me"), Some("you"), Some(&json!({"sdp": "x"})));
        let v: Value = serde_json::from_str(&f).expect("json");
        assert_eq!(
            v,
            json!({"type": "OFFER", "src": "me", "dst": "you", "payload": {"sdp": "x"}})
        );
    }
}
