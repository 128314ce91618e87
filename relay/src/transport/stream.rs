//! TURN clients over TCP and TLS: accept loop with a connection cap, optional TLS
//! handshake under a timeout, and a per-connection driver that frames the byte stream
//! ([`crate::transport::framing`]) and hands whole messages to the relay core as [`StreamEvent`]s.
//!
//! The core sees each connection as its own client transport:
//! - [`StreamEvent::Opened`] carries the client's addresses and an `outbound` sender;
//!   messages sent there (unpadded STUN or ChannelData) are written back padded.
//!   Use `try_send` and drop on `Full`, as UDP would, so one slow reader cannot stall
//!   the core. Dropping every clone of the sender closes the connection.
//! - [`StreamEvent::Frame`] carries each complete inbound message.
//! - [`StreamEvent::Closed`] follows every `Opened` exactly once: end the allocation
//!   there (RFC 8656 §3.1: an allocation over TCP/TLS lives as long as its connection).
//!
//! A connection that delivers no complete message within `idle_timeout` is closed
//! (slowloris), as is one that has made no allocation within `idle_timeout` of opening (the
//! core reports allocations through [`StreamClient::allocated`]) and one that sends
//! anything unframeable. At most `max_connections` are open in all and
//! `max_connections_per_ip` per source ([`sources`]).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use switchboard_config::RelayConfig;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tokio_rustls::TlsAcceptor;

use crate::transport::framing::{Frame, Framer, FramingError, MAX_MESSAGE_LEN, encode_for_stream};
use crate::transport::tls::TlsReloader;

pub mod sources;

use sources::SourceCounts;

/// Identifies one TCP/TLS connection for the life of the process.
pub type ClientId = u64;

/// Bytes read from the socket per call.
const READ_CHUNK: usize = 16 * 1024;
/// Queued outbound messages are coalesced into one write up to this size (plain TCP).
const WRITE_BATCH: usize = 64 * 1024;
/// How long closing a connection may take (TLS close_notify, FIN).
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Pause after a failed `accept` (e.g. out of file descriptors) so the loop cannot spin.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Tls,
}

#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// Concurrent TCP + TLS connections, across every listener served by one server.
    pub max_connections: usize,
    /// Concurrent connections from one source ([`sources::source_of`]).
    pub max_connections_per_ip: usize,
    /// A connection with no complete inbound message for this long is closed, and so is
    /// one that has made no allocation this long after opening.
    pub idle_timeout: Duration,
    /// A TLS handshake not finished within this is abandoned.
    pub handshake_timeout: Duration,
    /// Largest inbound message, header included ([`Framer::with_max_message_len`]).
    pub max_message_len: usize,
    /// Outbound messages queued per connection before the core's `try_send` fails.
    pub outbound_queue: usize,
}

impl StreamConfig {
    /// The configured limits; other settings get their defaults.
    #[must_use]
    pub fn from_relay(relay: &RelayConfig) -> Self {
        Self {
            max_connections: relay.max_stream_connections,
            max_connections_per_ip: relay.max_stream_connections_per_ip,
            idle_timeout: relay.stream_idle_timeout,
            ..Self::default()
        }
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            max_connections_per_ip: 64,
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            max_message_len: MAX_MESSAGE_LEN,
            outbound_queue: 256,
        }
    }
}

/// A new connection, handed to the core.
#[derive(Debug)]
pub struct StreamClient {
    pub id: ClientId,
    pub transport: Transport,
    /// The client's address: its XOR-MAPPED-ADDRESS and 5-tuple source.
    pub peer: SocketAddr,
    /// The listener address the client reached.
    pub local: SocketAddr,
    /// Messages to write to the client; drop every clone to close the connection.
    pub outbound: mpsc::Sender<Bytes>,
    /// Set by the core once this connection holds an allocation; until then the
    /// connection is closed `idle_timeout` after opening.
    pub allocated: Arc<AtomicBool>,
}

#[derive(Debug)]
pub enum StreamEvent {
    Opened(StreamClient),
    Frame { id: ClientId, frame: Frame },
    Closed { id: ClientId, reason: CloseReason },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed its side.
    PeerClosed,
    /// No complete message within the idle timeout.
    Idle,
    /// No allocation within the idle timeout of opening.
    NoAllocation,
    /// The client sent something that is neither STUN nor ChannelData.
    Framing(FramingError),
    /// The socket failed.
    Io(io::ErrorKind),
    /// The core dropped the outbound sender, or stopped taking events.
    ServerClosed,
}

/// Counts since the server was made, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    pub accepted: u64,
    pub rejected_over_cap: u64,
    /// Refused at `max_connections_per_ip`.
    pub rejected_per_ip: u64,
    pub handshake_failed: u64,
    pub closed_idle: u64,
    pub closed_framing: u64,
    pub closed_no_allocation: u64,
    /// Connections open now (TLS ones from the start of their handshake).
    pub open: u64,
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    rejected_over_cap: AtomicU64,
    rejected_per_ip: AtomicU64,
    handshake_failed: AtomicU64,
    closed_idle: AtomicU64,
    closed_framing: AtomicU64,
    closed_no_allocation: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

struct Inner {
    config: StreamConfig,
    permits: Arc<Semaphore>,
    sources: Mutex<SourceCounts>,
    next_id: AtomicU64,
    counters: Counters,
}

/// Accepts TCP/TLS clients on any number of listeners under one connection cap.
/// Cheap to clone; clones share the cap, ids and counters (and, unless made with
/// [`StreamServer::with_events`], where their connections' events go).
#[derive(Clone)]
pub struct StreamServer {
    inner: Arc<Inner>,
    events: mpsc::Sender<StreamEvent>,
}

impl std::fmt::Debug for StreamServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamServer")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl StreamServer {
    #[must_use]
    pub fn new(config: StreamConfig, events: mpsc::Sender<StreamEvent>) -> Self {
        let permits = Arc::new(Semaphore::new(config.max_connections));
        let sources = Mutex::new(SourceCounts::new(config.max_connections_per_ip));
        Self {
            inner: Arc::new(Inner {
                config,
                permits,
                sources,
                next_id: AtomicU64::new(1),
                counters: Counters::default(),
            }),
            events,
        }
    }

    /// A server sharing this one's caps, ids and counters whose connections send their
    /// events to `events`: one channel per listener lets each listener's transport read
    /// its own connections' messages directly.
    #[must_use]
    pub fn with_events(&self, events: mpsc::Sender<StreamEvent>) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            events,
        }
    }

    #[must_use]
    pub fn stats(&self) -> StreamStats {
        let c = &self.inner.counters;
        let max = self.inner.config.max_connections;
        let open = max.saturating_sub(self.inner.permits.available_permits());
        StreamStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            rejected_over_cap: c.rejected_over_cap.load(Ordering::Relaxed),
            rejected_per_ip: c.rejected_per_ip.load(Ordering::Relaxed),
            handshake_failed: c.handshake_failed.load(Ordering::Relaxed),
            closed_idle: c.closed_idle.load(Ordering::Relaxed),
            closed_framing: c.closed_framing.load(Ordering::Relaxed),
            closed_no_allocation: c.closed_no_allocation.load(Ordering::Relaxed),
            open: u64::try_from(open).unwrap_or(u64::MAX),
        }
    }

    /// Accepts on `listener` until `shutdown` resolves, then aborts this listener's
    /// connections (no `Closed` events are sent for those: the core is stopping too).
    /// With `tls`, each connection first completes a handshake with the config current
    /// when it was accepted.
    pub async fn serve(
        &self,
        listener: TcpListener,
        tls: Option<Arc<TlsReloader>>,
        shutdown: impl Future<Output = ()>,
    ) {
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let Ok(permit) = Arc::clone(&self.inner.permits).try_acquire_owned() else {
                            bump(&self.inner.counters.rejected_over_cap);
                            tracing::debug!(%peer, "Stream connection refused: cap reached");
                            drop(tcp);
                            continue;
                        };
                        let Some(source) = SourceSlot::take(&self.inner, peer) else {
                            bump(&self.inner.counters.rejected_per_ip);
                            tracing::debug!(%peer, "Stream connection refused: per-source cap reached");
                            drop(tcp);
                            continue;
                        };
                        bump(&self.inner.counters.accepted);
                        let acceptor = tls.as_ref().map(|t| t.acceptor());
                        let inner = Arc::clone(&self.inner);
                        let events = self.events.clone();
                        let slot = Slot { _permit: permit, _source: source };
                        tasks.spawn(run_connection(inner, events, tcp, peer, acceptor, slot));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Stream accept failed");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                    }
                }
            }
        }
        tasks.shutdown().await;
    }
}

/// A connection's place under the per-source cap, given back on drop.
struct SourceSlot {
    inner: Arc<Inner>,
    peer: SocketAddr,
}

impl SourceSlot {
    fn take(inner: &Arc<Inner>, peer: SocketAddr) -> Option<Self> {
        let added = inner
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_add(peer.ip());
        added.then(|| Self {
            inner: Arc::clone(inner),
            peer,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        self.inner
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(self.peer.ip());
    }
}

/// A connection's places under both caps; dropping it frees them.
struct Slot {
    _permit: OwnedSemaphorePermit,
    _source: SourceSlot,
}

async fn run_connection(
    inner: Arc<Inner>,
    events: mpsc::Sender<StreamEvent>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    slot: Slot,
) {
    // Nagle would hold back small STUN/ChannelData writes; media wants them out now.
    let _ = tcp.set_nodelay(true);
    let Ok(local) = tcp.local_addr() else {
        return;
    };
    let Some(acceptor) = tls else {
        return open_and_drive(&inner, &events, tcp, Transport::Tcp, peer, local, slot).await;
    };
    // Pinned here rather than moved into `timeout`, so that on a timeout the socket is
    // closed only after the counters and the slot are updated.
    let accept = acceptor.accept(tcp);
    tokio::pin!(accept);
    match timeout(inner.config.handshake_timeout, &mut accept).await {
        Ok(Ok(stream)) => {
            open_and_drive(&inner, &events, stream, Transport::Tls, peer, local, slot).await;
        }
        Ok(Err(e)) => {
            bump(&inner.counters.handshake_failed);
            drop(slot);
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
        }
        Err(_) => {
            bump(&inner.counters.handshake_failed);
            drop(slot);
            tracing::debug!(%peer, "TLS handshake timed out");
        }
    }
}

async fn open_and_drive<S>(
    inner: &Inner,
    events: &mpsc::Sender<StreamEvent>,
    io: S,
    transport: Transport,
    peer: SocketAddr,
    local: SocketAddr,
    slot: Slot,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
    let (outbound, rx) = mpsc::channel(inner.config.outbound_queue.max(1));
    let allocated = Arc::new(AtomicBool::new(false));
    let client = StreamClient {
        id,
        transport,
        peer,
        local,
        outbound,
        allocated: Arc::clone(&allocated),
    };
    if events.send(StreamEvent::Opened(client)).await.is_err() {
        return;
    }
    tracing::debug!(id, %peer, ?transport, "Stream client connected");
    let framer = Framer::with_max_message_len(inner.config.max_message_len);
    // Over TLS, one record per message: clients that handle one message per record read
    // (coturn's turnutils_uclient; measured: 90 % loss coalesced, 0 % not) lose the rest.
    let batch = match transport {
        Transport::Tcp => WRITE_BATCH,
        Transport::Tls => 0,
    };
    let reading = Reading {
        id,
        idle_timeout: inner.config.idle_timeout,
        allocated: Some(&allocated),
    };
    let reason = drive(io, reading, framer, events, rx, batch).await;
    match reason {
        CloseReason::Idle => bump(&inner.counters.closed_idle),
        CloseReason::NoAllocation => bump(&inner.counters.closed_no_allocation),
        CloseReason::Framing(_) => bump(&inner.counters.closed_framing),
        _ => {}
    }
    tracing::debug!(id, %peer, ?reason, "Stream client closed");
    // Free the slot before telling the core, so a client that saw `Closed` can connect.
    drop(slot);
    let _ = events.send(StreamEvent::Closed { id, reason }).await;
}

/// Runs one connection until it ends: reads and frames inbound messages into `events`
/// as [`StreamEvent::Frame`], writes `outbound` messages padded for the stream, and
/// enforces `idle_timeout` between complete inbound messages (not the allocation rule: that
/// needs the core). Works on any byte stream (TCP, TLS, an in-memory duplex). Sends no
/// `Opened`/`Closed` events itself.
pub async fn drive_connection<S>(
    io: S,
    id: ClientId,
    idle_timeout: Duration,
    framer: Framer,
    events: &mpsc::Sender<StreamEvent>,
    outbound: mpsc::Receiver<Bytes>,
) -> CloseReason
where
    S: AsyncRead + AsyncWrite,
{
    let reading = Reading {
        id,
        idle_timeout,
        allocated: None,
    };
    drive(io, reading, framer, events, outbound, WRITE_BATCH).await
}

/// What the read side of one connection needs to know.
struct Reading<'a> {
    id: ClientId,
    idle_timeout: Duration,
    /// Set once the connection holds an allocation; `None`: not enforced.
    allocated: Option<&'a AtomicBool>,
}

/// [`drive_connection`], coalescing queued outbound messages into writes of up to
/// `batch` bytes (0: one write per message).
async fn drive<S>(
    io: S,
    reading: Reading<'_>,
    framer: Framer,
    events: &mpsc::Sender<StreamEvent>,
    outbound: mpsc::Receiver<Bytes>,
    batch: usize,
) -> CloseReason
where
    S: AsyncRead + AsyncWrite,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let reason = tokio::select! {
        r = read_loop(&mut rd, reading, framer, events) => r,
        w = write_loop(&mut wr, outbound, batch) => w,
    };
    // Bounded: a peer that stopped reading must not keep the task alive.
    let _ = timeout(CLOSE_GRACE, wr.shutdown()).await;
    reason
}

async fn read_loop<R: AsyncRead + Unpin>(
    rd: &mut R,
    reading: Reading<'_>,
    mut framer: Framer,
    events: &mpsc::Sender<StreamEvent>,
) -> CloseReason {
    let Reading {
        id,
        idle_timeout,
        allocated,
    } = reading;
    let mut buf = vec![0u8; READ_CHUNK];
    let opened = Instant::now();
    let mut deadline = opened + idle_timeout;
    let allocation_deadline = opened + idle_timeout;
    // One timer for the connection's life. Deadlines only move later, so it is re-armed
    // when it fires early, not on every read: a busy connection costs no timer operation
    // per message.
    let timer = tokio::time::sleep_until(deadline);
    tokio::pin!(timer);
    loop {
        let mut framed = false;
        loop {
            match framer.poll_frame() {
                Ok(Some(frame)) => {
                    if events.send(StreamEvent::Frame { id, frame }).await.is_err() {
                        return CloseReason::ServerClosed;
                    }
                    framed = true;
                }
                Ok(None) => break,
                Err(e) => return CloseReason::Framing(e),
            }
        }
        if framed {
            deadline = Instant::now() + idle_timeout;
        }
        tokio::select! {
            biased;
            r = rd.read(&mut buf) => match r {
                Ok(0) => return CloseReason::PeerClosed,
                Ok(n) => framer.push(buf.get(..n).unwrap_or_default()),
                Err(e) => return read_failed(&e),
            },
            () = &mut timer => {
                let now = Instant::now();
                if now >= deadline {
                    return CloseReason::Idle;
                }
                let unallocated = allocated.is_some_and(|a| !a.load(Ordering::Acquire));
                if unallocated && now >= allocation_deadline {
                    return CloseReason::NoAllocation;
                }
                // The allocation deadline never comes after the message deadline.
                let wake = if unallocated { allocation_deadline } else { deadline };
                timer.as_mut().reset(wake);
            }
        }
    }
}

/// Why a connection whose read failed with `e` ended. tokio-rustls reports a TCP FIN
/// without a TLS close_notify as `UnexpectedEof`: many clients hang up that way, and TURN
/// messages carry their own lengths (nothing can be silently truncated), so it counts as
/// the client closing, as a TCP EOF does, not as an I/O failure.
fn read_failed(e: &io::Error) -> CloseReason {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => CloseReason::PeerClosed,
        kind => CloseReason::Io(kind),
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    wr: &mut W,
    mut outbound: mpsc::Receiver<Bytes>,
    batch: usize,
) -> CloseReason {
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    while let Some(message) = outbound.recv().await {
        encode_for_stream(&message, &mut out);
        while out.len() < batch {
            let Ok(more) = outbound.try_recv() else {
                break;
            };
            encode_for_stream(&more, &mut out);
        }
        if let Err(e) = wr.write_all(&out).await {
            return CloseReason::Io(e.kind());
        }
        if let Err(e) = wr.flush().await {
            return CloseReason::Io(e.kind());
        }
        out.clear();
    }
    CloseReason::ServerClosed
}

#[cfg(test)]
#[path = "stream/tests.rs"]
mod tests;
