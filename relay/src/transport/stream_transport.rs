//! TURN over TCP and TLS wired into the relay core: every `listen_tcp`/`listen_tls` socket
//! becomes one [`ClientTransport`] whose clients are its connections, each under its own
//! remote address (unique while the connection is open).
//!
//! Flow: one shared [`StreamServer`] (one connection cap, one idle timeout) accepts on all
//! stream listeners and emits [`StreamEvent`]s; a router task hands each event to the
//! transport of the listener the connection reached, in order; that transport's
//! `recv` yields whole messages and, when a connection ends, [`Received::Closed`], on
//! which the core releases the allocation (RFC 8656 section 3.1, RFC 6062 spirit: an
//! allocation over TCP/TLS lives as long as its connection). `send_to` queues a message
//! on the connection's bounded outbound queue and drops it when full, as UDP would.

use std::collections::HashMap;

/// Maps keyed by connection: foldhash (seeded per process); the keys are ours (connection
/// ids) or bounded by the connection caps, and both maps are consulted per message.
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use switchboard_config::Config;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinSet;

use crate::ReloadHook;
use crate::transport::stream::{ClientId, StreamConfig, StreamEvent, StreamServer, Transport};
use crate::transport::tls::TlsReloader;
use crate::transport::{ClientTransport, Received};

mod metrics;

pub use metrics::StreamMetrics;

/// Events queued per listener between the router and the core.
const INBOX: usize = 1024;

/// What the router hands one listener's transport, in connection order.
#[derive(Debug)]
enum Routed {
    Opened {
        id: ClientId,
        peer: SocketAddr,
        outbound: mpsc::Sender<Bytes>,
        allocated: Arc<AtomicBool>,
    },
    Frame {
        peer: SocketAddr,
        bytes: Bytes,
    },
    Closed {
        id: ClientId,
        peer: SocketAddr,
    },
}

/// One open connection as its listener's transport sees it.
#[derive(Debug)]
struct Connection {
    id: ClientId,
    outbound: mpsc::Sender<Bytes>,
    allocated: Arc<AtomicBool>,
}

/// The connections of one TCP or TLS listener, as one client transport.
#[derive(Debug)]
pub struct StreamTransport {
    local: SocketAddr,
    kind: Transport,
    inbox: Mutex<mpsc::Receiver<Routed>>,
    clients: RwLock<Map<SocketAddr, Connection>>,
}

impl StreamTransport {
    fn new(local: SocketAddr, kind: Transport) -> (Arc<Self>, mpsc::Sender<Routed>) {
        let (tx, rx) = mpsc::channel(INBOX);
        let t = Arc::new(Self {
            local,
            kind,
            inbox: Mutex::new(rx),
            clients: RwLock::new(Map::default()),
        });
        (t, tx)
    }

    /// Whether a connection accepted on `local` over `kind` belongs to this listener (a
    /// wildcard listener sees the specific address the client reached).
    fn serves(&self, local: SocketAddr, kind: Transport) -> bool {
        self.kind == kind
            && self.local.port() == local.port()
            && (self.local.ip() == local.ip() || self.local.ip().is_unspecified())
    }

    /// Open connections on this listener.
    #[must_use]
    pub fn connections(&self) -> usize {
        self.clients
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[async_trait]
impl ClientTransport for StreamTransport {
    async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        let mut inbox = self.inbox.lock().await;
        loop {
            // The router ends only at shutdown; the crate stops reading then.
            let Some(event) = inbox.recv().await else {
                return std::future::pending().await;
            };
            match event {
                Routed::Opened {
                    id,
                    peer,
                    outbound,
                    allocated,
                } => {
                    self.clients
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(
                            peer,
                            Connection {
                                id,
                                outbound,
                                allocated,
                            },
                        );
                }
                Routed::Frame { peer, bytes } => {
                    let Some(dst) = buf.get_mut(..bytes.len()) else {
                        continue;
                    };
                    dst.copy_from_slice(&bytes);
                    return Ok(Received::Message {
                        len: bytes.len(),
                        from: peer,
                    });
                }
                Routed::Closed { id, peer } => {
                    let mut clients = self.clients.write().unwrap_or_else(PoisonError::into_inner);
                    if clients.get(&peer).is_some_and(|c| c.id == id) {
                        clients.remove(&peer);
                    }
                    return Ok(Received::Closed(peer));
                }
            }
        }
    }

    async fn send_to(&self, buf: &[u8], client: SocketAddr) -> io::Result<usize> {
        self.try_send_to(buf, client).map(|()| buf.len())
    }

    fn try_send_to(&self, buf: &[u8], client: SocketAddr) -> io::Result<()> {
        let outbound = self
            .clients
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&client)
            .map(|c| c.outbound.clone());
        let Some(outbound) = outbound else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        match outbound.try_send(Bytes::copy_from_slice(buf)) {
            // Full: dropped like a datagram the kernel could not queue.
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn is_stream(&self) -> bool {
        true
    }

    fn allocation_made(&self, client: SocketAddr) {
        if let Some(c) = self
            .clients
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&client)
        {
            c.allocated.store(true, Ordering::Release);
        }
    }
}

/// Hands each stream event to its listener's transport, in order, counting metrics.
async fn route(
    mut events: mpsc::Receiver<StreamEvent>,
    transports: Vec<(Arc<StreamTransport>, mpsc::Sender<Routed>)>,
    metrics: Arc<StreamMetrics>,
) {
    let mut open: Map<ClientId, (usize, SocketAddr)> = Map::default();
    while let Some(event) = events.recv().await {
        let (index, routed) = match event {
            StreamEvent::Opened(c) => {
                let Some(index) = transports
                    .iter()
                    .position(|(t, _)| t.serves(c.local, c.transport))
                else {
                    // Dropping `outbound` closes the connection.
                    tracing::warn!(local = %c.local, "Stream client on an unknown listener");
                    continue;
                };
                metrics.opened(c.transport);
                open.insert(c.id, (index, c.peer));
                let routed = Routed::Opened {
                    id: c.id,
                    peer: c.peer,
                    outbound: c.outbound,
                    allocated: c.allocated,
                };
                (index, routed)
            }
            StreamEvent::Frame { id, frame } => {
                let Some(&(index, peer)) = open.get(&id) else {
                    continue;
                };
                let bytes = frame.into_bytes();
                (index, Routed::Frame { peer, bytes })
            }
            StreamEvent::Closed { id, reason } => {
                let Some((index, peer)) = open.remove(&id) else {
                    continue;
                };
                if let Some((t, _)) = transports.get(index) {
                    metrics.closed(t.kind, &reason);
                }
                (index, Routed::Closed { id, peer })
            }
        };
        if let Some((_, tx)) = transports.get(index) {
            // Waits when the core is behind: back-pressure onto the connections' reads.
            let _ = tx.send(routed).await;
        }
    }
}

/// The bound TCP/TLS listeners of one relay, not yet serving.
#[derive(Debug)]
pub struct StreamListeners {
    server: StreamServer,
    events: mpsc::Receiver<StreamEvent>,
    listeners: Vec<(TcpListener, Option<Arc<TlsReloader>>)>,
    transports: Vec<(Arc<StreamTransport>, mpsc::Sender<Routed>)>,
    tls: Option<Arc<TlsReloader>>,
    metrics: Arc<StreamMetrics>,
}

impl StreamListeners {
    /// Binds every `listen_tcp` and `listen_tls` address and loads the TLS certificate;
    /// `None` when neither is configured. A certificate that cannot be used fails here,
    /// naming the file.
    pub fn bind(cfg: &Config) -> anyhow::Result<Option<Self>> {
        let r = &cfg.relay;
        if r.listen_tcp.is_empty() && r.listen_tls.is_empty() {
            return Ok(None);
        }
        let tls = match (&r.tls, r.listen_tls.is_empty()) {
            (_, true) => None,
            (Some(files), false) => Some(Arc::new(
                TlsReloader::load(files.clone()).context("loading relay.tls_cert/tls_key")?,
            )),
            (None, false) => anyhow::bail!("relay.listen_tls needs relay.tls_cert and tls_key"),
        };
        let mut tcp = Vec::new();
        for addr in &r.listen_tcp {
            tcp.push(bind_tcp(*addr).with_context(|| format!("binding relay.listen_tcp {addr}"))?);
        }
        let mut tls_listeners = Vec::new();
        for addr in &r.listen_tls {
            tls_listeners
                .push(bind_tcp(*addr).with_context(|| format!("binding relay.listen_tls {addr}"))?);
        }
        Ok(Some(Self::new(
            StreamConfig::from_relay(r),
            tcp,
            tls_listeners,
            tls,
        )?))
    }

    /// Serves already-bound listeners (tests bind port 0).
    pub fn new(
        config: StreamConfig,
        tcp: Vec<TcpListener>,
        tls_listeners: Vec<TcpListener>,
        tls: Option<Arc<TlsReloader>>,
    ) -> io::Result<Self> {
        let (events_tx, events) = mpsc::channel(INBOX);
        let server = StreamServer::new(config, events_tx);
        let mut listeners = Vec::new();
        let mut transports = Vec::new();
        for (l, reloader) in tcp
            .into_iter()
            .map(|l| (l, None))
            .chain(tls_listeners.into_iter().map(|l| (l, tls.clone())))
        {
            let kind = if reloader.is_some() {
                Transport::Tls
            } else {
                Transport::Tcp
            };
            transports.push(StreamTransport::new(l.local_addr()?, kind));
            listeners.push((l, reloader));
        }
        let metrics = Arc::new(StreamMetrics::new(server.clone()));
        Ok(Self {
            server,
            events,
            listeners,
            transports,
            tls,
            metrics,
        })
    }

    /// One client transport per listener, for the core.
    #[must_use]
    pub fn client_transports(&self) -> Vec<Arc<dyn ClientTransport>> {
        self.transports
            .iter()
            .map(|(t, _)| Arc::clone(t) as Arc<dyn ClientTransport>)
            .collect()
    }

    /// Each listener's address and transport, in configuration order (TCP first).
    #[must_use]
    pub fn local_addrs(&self) -> Vec<(SocketAddr, Transport)> {
        self.transports
            .iter()
            .map(|(t, _)| (t.local, t.kind))
            .collect()
    }

    /// The stream metrics, to register with the relay's registry.
    #[must_use]
    pub fn metrics(&self) -> Arc<StreamMetrics> {
        Arc::clone(&self.metrics)
    }

    /// SIGHUP: re-read the certificate files; on error keep serving the old certificate.
    #[must_use]
    pub fn reload_hook(&self) -> Option<ReloadHook> {
        let tls = Arc::clone(self.tls.as_ref()?);
        Some(Box::new(move |_cfg: &Config| match tls.reload() {
            Ok(()) => {
                tracing::info!(cert = %tls.files().cert.display(), "TLS certificate reloaded")
            }
            Err(e) => tracing::error!("TLS certificate reload failed, keeping the old one: {e}"),
        }))
    }

    /// Starts accepting; [`StreamTasks::stop`] closes every listener and connection.
    #[must_use]
    pub fn spawn(self) -> StreamTasks {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for (listener, tls) in self.listeners {
            let server = self.server.clone();
            let mut stopped = stopped.clone();
            tasks.spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                server.serve(listener, tls, shutdown).await;
            });
        }
        drop(self.server);
        let router = tokio::spawn(route(self.events, self.transports, self.metrics));
        StreamTasks {
            stop,
            tasks,
            router,
        }
    }
}

/// The running accept loops and router.
#[derive(Debug)]
pub struct StreamTasks {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    router: tokio::task::JoinHandle<()>,
}

impl StreamTasks {
    /// Stops accepting and closes every stream connection (bounded by the stream server's
    /// close grace), then stops the router.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(crate::server::CLOSE_TIMEOUT, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        self.router.abort();
    }
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

#[cfg(test)]
#[path = "stream_transport/tests.rs"]
mod tests;
