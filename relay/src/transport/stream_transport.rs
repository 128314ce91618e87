//! TURN over TCP and TLS wired into the relay core: every `listen_tcp`/`listen_tls` socket
//! becomes one [`ClientTransport`] whose clients are its connections, each under its own
//! remote address (unique while the connection is open).
//!
//! Flow: one [`StreamServer`] (one connection cap, one idle timeout, shared by clones)
//! accepts on every stream listener; each listener's connections send their
//! [`StreamEvent`]s, in order, on that listener's own channel, which its transport's `recv`
//! reads directly: whole messages and, when a connection ends, [`Received::Closed`], on
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

/// Events queued per listener between its connections and the core.
const INBOX: usize = 1024;

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
    inbox: Mutex<Inbox>,
    clients: RwLock<Map<SocketAddr, Connection>>,
    metrics: Arc<StreamMetrics>,
}

/// This listener's connection events, and the address of each open connection.
#[derive(Debug)]
struct Inbox {
    events: mpsc::Receiver<StreamEvent>,
    open: Map<ClientId, SocketAddr>,
}

impl StreamTransport {
    fn new(
        local: SocketAddr,
        kind: Transport,
        metrics: Arc<StreamMetrics>,
    ) -> (Arc<Self>, mpsc::Sender<StreamEvent>) {
        let (tx, rx) = mpsc::channel(INBOX);
        let t = Arc::new(Self {
            local,
            kind,
            inbox: Mutex::new(Inbox {
                events: rx,
                open: Map::default(),
            }),
            clients: RwLock::new(Map::default()),
            metrics,
        });
        (t, tx)
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
        let Inbox { events, open } = &mut *inbox;
        loop {
            // Every connection holds a sender: the channel stays open until shutdown, and
            // the crate stops reading then.
            let Some(event) = events.recv().await else {
                return std::future::pending().await;
            };
            match event {
                StreamEvent::Opened(c) => {
                    self.metrics.opened(c.transport);
                    open.insert(c.id, c.peer);
                    self.clients
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(
                            c.peer,
                            Connection {
                                id: c.id,
                                outbound: c.outbound,
                                allocated: c.allocated,
                            },
                        );
                }
                StreamEvent::Frame { id, frame } => {
                    let Some(&peer) = open.get(&id) else {
                        continue;
                    };
                    let bytes = frame.as_bytes();
                    let Some(dst) = buf.get_mut(..bytes.len()) else {
                        continue;
                    };
                    dst.copy_from_slice(bytes);
                    return Ok(Received::Message {
                        len: bytes.len(),
                        from: peer,
                    });
                }
                StreamEvent::Closed { id, reason } => {
                    let Some(peer) = open.remove(&id) else {
                        continue;
                    };
                    self.metrics.closed(self.kind, &reason);
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
        let clients = self.clients.read().unwrap_or_else(PoisonError::into_inner);
        let Some(c) = clients.get(&client) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        // `try_send` never waits: holding the read lock across it is fine.
        match c.outbound.try_send(Bytes::copy_from_slice(buf)) {
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

/// The bound TCP/TLS listeners of one relay, not yet serving.
#[derive(Debug)]
pub struct StreamListeners {
    /// Each listener, its certificate (TLS), and the server (sharing one cap) whose
    /// connections report to that listener's transport.
    listeners: Vec<(TcpListener, Option<Arc<TlsReloader>>, StreamServer)>,
    transports: Vec<Arc<StreamTransport>>,
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
        // The shared server's own channel is never used: every listener gets a clone
        // reporting to its transport.
        let (unused, _) = mpsc::channel(1);
        let server = StreamServer::new(config, unused);
        let metrics = Arc::new(StreamMetrics::new(server.clone()));
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
            let (t, events) = StreamTransport::new(l.local_addr()?, kind, Arc::clone(&metrics));
            transports.push(t);
            listeners.push((l, reloader, server.with_events(events)));
        }
        Ok(Self {
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
            .map(|t| Arc::clone(t) as Arc<dyn ClientTransport>)
            .collect()
    }

    /// Each listener's address and transport, in configuration order (TCP first).
    #[must_use]
    pub fn local_addrs(&self) -> Vec<(SocketAddr, Transport)> {
        self.transports.iter().map(|t| (t.local, t.kind)).collect()
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
        for (listener, tls, server) in self.listeners {
            let mut stopped = stopped.clone();
            tasks.spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                server.serve(listener, tls, shutdown).await;
            });
        }
        StreamTasks { stop, tasks }
    }
}

/// The running accept loops.
#[derive(Debug)]
pub struct StreamTasks {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl StreamTasks {
    /// Stops accepting and closes every stream connection (bounded by the stream server's
    /// close grace).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(crate::server::CLOSE_TIMEOUT, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
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
