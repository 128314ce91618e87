//! The HTTP server: the router (REST + Socket.IO + demo), serving an already-bound listener
//! until a shutdown future completes, and the process entry point with signals and sd_notify.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use axum::serve::ListenerExt as _;
use socketioxide::SocketIo;
use switchboard_config::{Component, Config, CorsOrigins, Origin, process_env};
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::TimeoutLayer;

use crate::hub::Hub;
use crate::rest::{self, AppError};
use crate::{assets, peerjs, socket};

/// Longest a REST request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest shutdown may take after SIGTERM/SIGINT before the process exits anyway.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// CORS from the live `cors_origins` (SIGHUP changes them): the allowed origin is echoed.
fn cors(hub: &Arc<Hub>) -> CorsLayer {
    let hub = hub.clone();
    let allow = AllowOrigin::predicate(move |origin: &HeaderValue, _| {
        origin
            .to_str()
            .is_ok_and(|o| match &hub.live().cors_origins {
                CorsOrigins::Any => true,
                CorsOrigins::List(list) => list.iter().any(|a| a == o),
            })
    });
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(Duration::from_secs(600))
}

/// The whole HTTP surface, plus the Socket.IO handle (for `close()` at shutdown).
pub fn app(hub: Arc<Hub>) -> (Router, SocketIo) {
    let sig = &hub.cfg.signaling;
    let (sio_layer, io) = socket::layer(&hub);
    let mut router = Router::new()
        .route("/health", get(rest::health))
        .route("/ready", get(rest::ready))
        .route("/api/ice-servers", get(rest::ice_servers))
        .route("/api/rooms", get(rest::list_rooms).post(rest::create_room))
        .route(
            "/api/rooms/{id}",
            get(rest::get_room).delete(rest::delete_room),
        );
    if sig.peerjs.enabled {
        let p = sig.peerjs.path.trim_end_matches('/');
        router = router
            .route(&format!("{p}/"), get(peerjs::info))
            .route(&format!("{p}/peerjs"), get(peerjs::websocket))
            .route(&format!("{p}/{{key}}/id"), get(peerjs::new_id))
            .route(&format!("{p}/{{key}}/peers"), get(peerjs::peers));
        if !p.is_empty() {
            router = router.route(p, get(peerjs::info));
        }
    }
    if sig.demo {
        router = router
            .route("/", get(assets::index))
            .route("/assets/{file}", get(assets::asset));
    }
    let router = router
        .fallback(async || AppError::not_found("no such route"))
        .with_state(hub.clone())
        .layer(DefaultBodyLimit::max(sig.max_payload_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        // Outside the REST limits: Socket.IO long-polling outlives the request timeout.
        .layer(sio_layer)
        .layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            limit_connections_per_ip,
        ))
        .layer(cors(&hub));
    (router, io)
}

/// Refuses a new Engine.IO session (a Socket.IO request without `sid`: the polling handshake
/// or a direct WebSocket upgrade) with 429 when its source IP already has
/// `signaling.max_connections_per_ip` connections (live, or opened and not yet connected),
/// before anything is allocated for it; otherwise counts it as pending until the Socket.IO
/// handshake (`socket::handshake`) makes it live.
async fn limit_connections_per_ip(
    State(hub): State<Arc<Hub>>,
    req: Request,
    next: Next,
) -> Response {
    let path = &hub.cfg.signaling.socketio_path;
    let new_session = req.uri().path().starts_with(path.as_str())
        && req
            .uri()
            .query()
            .is_none_or(|q| !q.split('&').any(|kv| kv.starts_with("sid=")));
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if new_session
        && let Some(ip) = ip
        && !hub.open_session(ip)
    {
        hub.metrics.connections_refused.inc();
        tracing::debug!(%ip, "Connection refused: too many from this address");
        return AppError::too_many_connections(hub.cfg.signaling.max_connections_per_ip)
            .into_response();
    }
    if socket::native::wants(&req, path) {
        socket::native::upgrade(hub, req)
    } else if req.uri().path().starts_with(path.as_str()) {
        next.run(detach_head(req)).await
    } else {
        next.run(req).await
    }
}

/// Gives a Socket.IO request a head of its own. hyper parses the request line and header
/// values as slices of the connection's HTTP/1 read buffer (8-16 KiB); engineioxide keeps the
/// request `Parts` for the whole session, and those slices alone kept the whole buffer alive
/// per connection for as long as it stayed open: about a third of the memory of an idle
/// WebSocket (heaptrack: 16 KiB per connection). Copying the URI and header values (a few hundred bytes) lets hyper's buffer go
/// when the connection is upgraded.
fn detach_head(req: Request) -> Request {
    let (mut parts, body) = req.into_parts();
    if let Ok(uri) = parts.uri.to_string().parse::<axum::http::Uri>() {
        // axum's router keeps a clone of the request URI in the extensions as well.
        parts
            .extensions
            .insert(axum::extract::OriginalUri(uri.clone()));
        parts.uri = uri;
    }
    let mut headers = axum::http::HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        if let Ok(mut copy) = HeaderValue::from_bytes(value.as_bytes()) {
            copy.set_sensitive(value.is_sensitive());
            headers.append(name.clone(), copy);
        }
    }
    parts.headers = headers;
    Request::from_parts(parts, body)
}

/// The operators' surface, served on `signaling.metrics_listen` only (not on the public
/// listener): `/metrics`, `/stats` and `/health`.
pub fn metrics_app(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/health", get(rest::health))
        .route("/metrics", get(rest::metrics))
        .route("/stats", get(rest::stats))
        .fallback(async || AppError::not_found("no such route"))
        .with_state(hub)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
}

/// Serves [`metrics_app`] on `listener` until `shutdown` completes.
pub async fn serve_metrics(
    listener: TcpListener,
    hub: Arc<Hub>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, metrics_app(hub))
        .with_graceful_shutdown(shutdown)
        .await
        .context("metrics server failed")
}

/// Serves `hub` on `listener` until `shutdown` completes, then stops accepting, closes every
/// Socket.IO session (`io.close()`) and lets in-flight REST requests finish.
pub async fn serve(
    listener: TcpListener,
    hub: Arc<Hub>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (router, io) = app(hub.clone());
    if hub.cfg.signaling.peerjs.enabled {
        tokio::spawn(peerjs::sweep(Arc::downgrade(&hub)));
    }
    tokio::spawn(sweep_idle_rooms(
        Arc::downgrade(&hub),
        hub.cfg.signaling.persistent_room_idle,
    ));
    // TCP_NODELAY on every connection: without it, a small event written right after
    // another waits for the client's delayed ACK (40 ms on Linux) under Nagle's algorithm,
    // which showed as a 45 ms p99.9 in the signaling benchmark (Node's `ws` sets it too).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "Could not set TCP_NODELAY on a connection");
        }
    });
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        hub.set_not_ready();
        tracing::info!("Shutting down: closing Socket.IO sessions");
        // Tell every client the server is going away (DISCONNECT packet: clients see
        // "io server disconnect" rather than a dropped transport), then close.
        if let Err(e) = io.disconnect().await {
            tracing::warn!(error = %e, "Could not notify every socket of the shutdown");
        }
        io.close().await;
        hub.peerjs.close_all();
        close_native(&hub).await;
    })
    .await
    .context("HTTP server failed")
}

/// Longest shutdown waits for the native WebSocket connections to say goodbye.
const NATIVE_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Tells every native WebSocket client the server is going away (`41`, then a close frame)
/// and waits (bounded) until their sessions have left their rooms.
async fn close_native(hub: &Hub) {
    if hub.peers.close_native() == 0 {
        return;
    }
    let deadline = tokio::time::Instant::now() + NATIVE_CLOSE_WAIT;
    while hub.connected_peers() > 0 && tokio::time::Instant::now() < deadline {
        // Shutdown only: a short poll, bounded by the deadline, not a synchronisation.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Removes the persistent rooms that have had no member for `idle`
/// (`signaling.persistent_room_idle`), sweeping every `idle / 2` (0.5-60 s), until the hub
/// is gone.
async fn sweep_idle_rooms(hub: Weak<Hub>, idle: Duration) {
    let every = (idle / 2).clamp(Duration::from_millis(500), Duration::from_secs(60));
    let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { break };
        let gone = hub.expire_idle(crate::clock::unix_ms(), idle_ms).await;
        if !gone.is_empty() {
            hub.metrics
                .rooms_expired
                .inc_by(u64::try_from(gone.len()).unwrap_or(u64::MAX));
            tracing::debug!(rooms = gone.len(), "Idle persistent rooms removed");
        }
    }
}

/// Runs the service on an already-bound listener with in-memory state.
pub async fn run(
    listener: TcpListener,
    cfg: Arc<Config>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let hub = new_hub(cfg).await?;
    serve(listener, hub, shutdown).await
}

/// The hub: in memory, or with `signaling.redis_url` one instance of a cluster (connects to
/// Redis and registers first; an unreachable Redis at start-up is an error).
pub async fn new_hub(cfg: Arc<Config>) -> anyhow::Result<Arc<Hub>> {
    if cfg.signaling.redis_url.is_none() {
        return Ok(Hub::new(cfg));
    }
    let cluster = crate::cluster::Cluster::connect(&cfg).await?;
    Ok(Hub::with_cluster(cfg, cluster))
}

/// SIGTERM, SIGINT and SIGHUP, registered up front so that a signal right after READY=1 is
/// not lost (and SIGHUP never takes the default action, which ends the process).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

/// What a signal asks for.
enum Ask {
    Stop(&'static str),
    Reload,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).context("could not handle SIGTERM")?,
            int: signal(SignalKind::interrupt()).context("could not handle SIGINT")?,
            hup: signal(SignalKind::hangup()).context("could not handle SIGHUP")?,
        })
    }

    async fn recv(&mut self) -> Ask {
        tokio::select! {
            _ = self.term.recv() => Ask::Stop("SIGTERM"),
            _ = self.int.recv() => Ask::Stop("SIGINT"),
            _ = self.hup.recv() => Ask::Reload,
        }
    }
}

/// SIGHUP: re-reads the file the service started from; applies the hot-reloadable settings
/// or, when the file is invalid, keeps every current setting. Never ends the process.
async fn reload(hub: &Hub) {
    // RELOADING=1 with MONOTONIC_USEC (systemd's Type=notify-reload), READY=1 when done.
    let mut reloading = vec![sd_notify::NotifyState::Reloading];
    reloading.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
    if let Err(e) = sd_notify::notify(false, &reloading) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
    match &hub.cfg.origin {
        Origin::DevelopmentDefaults => {
            tracing::warn!("SIGHUP: running on built-in defaults, there is no file to reload");
        }
        Origin::File(path) => {
            let path = path.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                switchboard_config::load_file(&path, Component::Signaling, &process_env)
            })
            .await;
            match loaded {
                Ok(Ok(new)) => {
                    let restart = hub.reload(&new);
                    tracing::info!(
                        auth = ?new.signaling.auth.mode(),
                        secrets = new.turn.secrets.len(),
                        "Configuration reloaded: TURN secrets, auth, admin token and CORS origins applied"
                    );
                    if !restart.is_empty() {
                        tracing::warn!(keys = ?restart, "Changed keys need a restart to apply");
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!("Reload refused, keeping the current settings: {e}");
                }
                Err(e) => {
                    tracing::error!(error = %e, "Reload failed, keeping the current settings");
                }
            }
        }
    }
    notify(sd_notify::NotifyState::Ready);
}

fn notify(state: sd_notify::NotifyState<'_>) {
    // No-op when NOTIFY_SOCKET is unset (not under systemd).
    if let Err(e) = sd_notify::notify(false, &[state]) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Binds `signaling.listen`, reports READY=1, serves until SIGTERM/SIGINT, then shuts down
/// within [`SHUTDOWN_TIMEOUT`].
pub fn main_with(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let cfg = Arc::new(cfg);
    let addr: SocketAddr = cfg.signaling.listen;
    let metrics_addr: SocketAddr = cfg.signaling.metrics_listen;
    let result = rt.block_on(async move {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("could not listen on {addr} (signaling.listen)"))?;
        let metrics_listener = TcpListener::bind(metrics_addr).await.with_context(|| {
            format!("could not listen on {metrics_addr} (signaling.metrics_listen)")
        })?;
        let mut signals = Signals::new()?;
        // With Redis: connected and registered before READY=1.
        let hub = new_hub(cfg).await?;
        tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "Listening");
        notify(sd_notify::NotifyState::Ready);
        let (tx, rx) = tokio::sync::watch::channel(false);
        let stop = async move {
            let mut rx = rx;
            let _ = rx.wait_for(|v| *v).await;
        };
        tracing::info!(
            addr = %metrics_listener.local_addr().unwrap_or(metrics_addr),
            "Metrics listening"
        );
        // Ends with the runtime; the public listener's shutdown is what clients see.
        tokio::spawn(serve_metrics(
            metrics_listener,
            hub.clone(),
            std::future::pending(),
        ));
        let mut server = tokio::spawn(serve(listener, hub.clone(), stop));
        let sig = loop {
            tokio::select! {
                res = &mut server => {
                    // The server ended without a signal: that is a failure.
                    return match res {
                        Ok(Ok(())) => Err(anyhow::anyhow!("the server stopped unexpectedly")),
                        Ok(Err(e)) => Err(e),
                        Err(e) => Err(anyhow::anyhow!("server task failed: {e}")),
                    };
                }
                ask = signals.recv() => match ask {
                    Ask::Stop(sig) => break sig,
                    Ask::Reload => reload(&hub).await,
                },
            }
        };
        tracing::info!(signal = sig, "Stopping");
        notify(sd_notify::NotifyState::Stopping);
        let _ = tx.send(true);
        let res = match tokio::time::timeout(SHUTDOWN_TIMEOUT, server).await {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => Err(anyhow::anyhow!("server task failed: {e}")),
            Err(_) => {
                tracing::warn!(timeout = ?SHUTDOWN_TIMEOUT, "Shutdown took too long; exiting");
                Ok(())
            }
        };
        if let Some(c) = hub.cluster() {
            // Its sessions have left their rooms; whatever is left, another instance reaps.
            c.unregister().await;
        }
        res
    });
    rt.shutdown_timeout(Duration::from_secs(1));
    if result.is_ok() {
        tracing::info!("Stopped");
    }
    result
}
