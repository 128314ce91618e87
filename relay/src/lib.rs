//! Switchboard relay: STUN/TURN over UDP, TCP and TLS. The data plane is ours
//! (`dataplane`: shared-nothing worker threads that own their sockets and tables and relay
//! ChannelData and Send/Data indications); the control plane is the webrtc-rs `turn` crate
//! (allocations, lifetimes) behind our gate (credentials, nonces, peer policy, quotas).
//!
//! Layout: `control` (the crate bridge: the gate's decisions on every STUN request, nonces,
//! credentials, the control plane's allocation state, the channel-fed `Conn`s the crate
//! reads), `dataplane` (the workers' I/O loops, and the sans-IO forwarding tables and
//! decisions they run), `transport` (the client transports: UDP sockets, TCP/TLS streams,
//! framing), `policy` (peer policy, quotas), `wire` (STUN helpers both planes use); the
//! service shell is `server` (assembly), `http` and `metrics`, and this file, which binds
//! sockets, handles signals and runs until shutdown.

pub mod control;
pub mod dataplane;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod transport;
pub mod wire;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use switchboard_config::{Component, Config, Origin};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

pub use server::Relay;

use crate::dataplane::{DataPlane, DataPlaneMetrics, Listener};
use crate::metrics::Metrics;
use crate::transport::ClientTransport;
use crate::transport::listening::ListeningOn;
use crate::transport::stream_transport::StreamListeners;

/// Sockets the relay serves on, bound before it starts (tests bind port 0).
#[derive(Debug)]
pub struct Listeners {
    /// Client-facing UDP sockets (several per address with SO_REUSEPORT).
    pub udp: Vec<UdpSocket>,
    /// Other client transports, e.g. a TCP/TLS multiplexer presenting each stream as its
    /// own client address (issue 3); served exactly like the UDP sockets.
    pub transports: Vec<Arc<dyn ClientTransport>>,
    /// `/metrics` and `/health`.
    pub metrics: TcpListener,
    /// The `listen_tcp`/`listen_tls` listeners (issue 3), served by run_with.
    pub streams: Option<StreamListeners>,
}

/// Something to run when the configuration is reloaded (SIGHUP), after the TURN secrets.
/// The TLS listeners (issue 3) register their certificate reload here.
pub type ReloadHook = Box<dyn Fn(&Config) + Send + Sync>;

/// Runs the relay on `listeners` until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (_tx, rx) = mpsc::channel(1);
    run_with(cfg, listeners, shutdown, rx, Vec::new(), || {}).await
}

/// [`run`], applying each configuration received on `reloads`, and calling `ready` once
/// every listener serves.
pub async fn run_with(
    cfg: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    mut reloads: mpsc::Receiver<Config>,
    mut hooks: Vec<ReloadHook>,
    ready: impl FnOnce(),
) -> anyhow::Result<()> {
    let mut metrics = Metrics::new();
    let workers = match cfg.relay.workers {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    };
    let plane = DataPlane::start(workers).context("starting the data-plane workers")?;
    metrics.register_collector(Box::new(DataPlaneMetrics::new(plane.workers().to_vec())));
    let on = ListeningOn::new(
        listeners.udp.iter().filter_map(|s| s.local_addr().ok()),
        listeners
            .streams
            .iter()
            .flat_map(StreamListeners::local_addrs),
    );
    let extra: Vec<SocketAddr> = listeners
        .transports
        .iter()
        .filter_map(|t| t.local_addr().ok())
        .collect();
    let mut served: Vec<Listener> = Vec::new();
    for s in listeners.udp {
        served.push(Listener::Udp(s.into_std()?));
    }
    served.extend(listeners.transports.into_iter().map(Listener::Messages));
    if let Some(s) = &listeners.streams {
        metrics.register_collector(Box::new(s.metrics()));
        served.extend(s.client_transports().into_iter().map(Listener::Messages));
        hooks.extend(s.reload_hook());
    }
    let metrics = Arc::new(metrics);
    let relay = Relay::start(&cfg, plane, served, Arc::clone(&metrics)).await?;
    let streams = listeners.streams.map(StreamListeners::spawn);
    let (http_stop_tx, http_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let metrics_addr = listeners.metrics.local_addr().ok();
    let readiness = Arc::new(http::Readiness::default());
    let http = tokio::spawn(
        axum::serve(
            listeners.metrics,
            http::app(metrics, Arc::clone(&readiness)),
        )
        .with_graceful_shutdown(async {
            let _ = http_stop_rx.await;
        })
        .into_future(),
    );
    tracing::info!(
        udp = ?on.udp,
        tcp = ?on.tcp,
        tls = ?on.tls,
        metrics = ?metrics_addr,
        "Relay listening"
    );
    if !extra.is_empty() {
        tracing::info!(other = ?extra, "Relay also serving other client transports");
    }
    readiness.set(true);
    ready();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            Some(new_cfg) = reloads.recv() => {
                // RELOADING=1 with MONOTONIC_USEC, as systemd's Type=notify-reload expects.
                let mut reloading = vec![sd_notify::NotifyState::Reloading];
                reloading.extend(sd_notify::NotifyState::monotonic_usec_now().ok());
                let _ = sd_notify::notify(false, &reloading);
                relay.reload(&new_cfg);
                for hook in &hooks {
                    hook(&new_cfg);
                }
                tracing::info!(secrets = new_cfg.turn.secrets.len(), "Configuration reloaded");
                let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
            }
        }
    }
    readiness.set(false);
    tracing::info!(allocations = relay.allocations(), "Shutting down");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    if let Some(streams) = streams {
        streams.stop().await;
    }
    relay.close().await;
    let _ = http_stop_tx.send(());
    let _ = tokio::time::timeout(server::CLOSE_TIMEOUT, http).await;
    Ok(())
}

/// Binds every `listen_udp`, `listen_tcp` and `listen_tls` address and `metrics_listen`
/// (and loads the TLS certificate). Each UDP address gets one SO_REUSEPORT socket per
/// data-plane worker (`relay.workers`, 0 = one per core): the kernel keeps each client on
/// one socket by its address hash, so one worker sees all of a client's packets.
pub fn bind(cfg: &Config) -> anyhow::Result<Listeners> {
    let per_addr = match cfg.relay.workers {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    };
    let mut udp = Vec::new();
    for addr in &cfg.relay.listen_udp {
        let first = control::conn::bind_udp(*addr, true)
            .with_context(|| format!("binding relay.listen_udp {addr}"))?;
        let actual = first.local_addr()?;
        udp.push(UdpSocket::from_std(first)?);
        for _ in 1..per_addr {
            let more = control::conn::bind_udp(actual, true)
                .with_context(|| format!("binding relay.listen_udp {actual} (SO_REUSEPORT)"))?;
            udp.push(UdpSocket::from_std(more)?);
        }
    }
    let metrics = std::net::TcpListener::bind(cfg.relay.metrics_listen)
        .with_context(|| format!("binding relay.metrics_listen {}", cfg.relay.metrics_listen))?;
    metrics.set_nonblocking(true)?;
    Ok(Listeners {
        udp,
        transports: Vec::new(),
        metrics: TcpListener::from_std(metrics)?,
        streams: StreamListeners::bind(cfg)?,
    })
}

/// Resolves on SIGTERM or SIGINT; on SIGHUP reloads the configuration file and sends it
/// on `reloads` (a file that fails validation is logged and ignored).
async fn signals(origin: Origin, reloads: mpsc::Sender<Config>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                let loaded = match &origin {
                    Origin::File(path) => switchboard_config::load(Some(path), Component::Relay),
                    Origin::DevelopmentDefaults => switchboard_config::load_development(Component::Relay),
                };
                match loaded {
                    Ok(cfg) => { let _ = reloads.send(cfg).await; }
                    Err(e) => tracing::error!("Reload refused, keeping the running configuration: {e}"),
                }
            }
        }
    }
}

/// Runs the service until SIGINT/SIGTERM: binds, serves, reports READY=1 to systemd.
pub fn main_with(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listeners = bind(&cfg)?;
        let (tx, rx) = mpsc::channel(4);
        let origin = cfg.origin.clone();
        let (sig_err_tx, sig_err_rx) = tokio::sync::oneshot::channel();
        let sig = tokio::spawn(async move {
            let r = signals(origin, tx).await;
            let _ = sig_err_tx.send(r);
        });
        let shutdown = async {
            if let Ok(Err(e)) = sig_err_rx.await {
                tracing::error!("Signal handling failed: {e:#}");
            }
        };
        // The TLS certificate reload is added by run_with from `listeners.streams`.
        let hooks: Vec<ReloadHook> = Vec::new();
        let result = run_with(cfg, listeners, shutdown, rx, hooks, || {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        })
        .await;
        sig.abort();
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `run` serves on sockets bound to port 0 and returns once `shutdown` resolves.
    #[tokio::test]
    async fn run_answers_stun_binding_on_bound_sockets_and_stops_on_shutdown() {
        let cfg = switchboard_config::load_development(Component::Relay).expect("dev config");
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let addr = udp.local_addr().expect("addr");
        let listeners = Listeners {
            udp: vec![udp],
            transports: Vec::new(),
            metrics: TcpListener::bind("127.0.0.1:0").await.expect("bind tcp"),
            streams: None,
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(run(cfg, listeners, async {
            let _ = stop_rx.await;
        }));

        let client = UdpSocket::bind("127.0.0.1:0").await.expect("client");
        let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
        req.extend_from_slice(&[7u8; 12]);
        let mut buf = [0u8; 256];
        let mut answered = false;
        for _ in 0..20 {
            client.send_to(&req, addr).await.expect("send");
            if let Ok(Ok((n, _))) = tokio::time::timeout(
                std::time::Duration::from_millis(250),
                client.recv_from(&mut buf),
            )
            .await
            {
                // RFC 8489 section 6.3.1: a Binding success response, same transaction.
                answered = n >= 20 && buf[..2] == [0x01, 0x01] && buf[8..20] == req[8..20];
                break;
            }
        }
        assert!(answered, "a Binding success response");
        let _ = stop_tx.send(());
        server.await.expect("join").expect("run ends cleanly");
    }
}
