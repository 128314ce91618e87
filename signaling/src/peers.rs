//! The connected peers' outbound queues: one bounded, byte-capped FIFO per socket, drained by
//! that socket's writer ([`crate::socket::outbound`]). Everything a socket is sent (relayed
//! events, presence, acks, errors, credential refreshes) goes through it, so packets leave in
//! the order they were queued.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use socketioxide::adapter::LocalAdapter;
use socketioxide::socket::Socket;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendTimeoutError;

use crate::core::{AckBody, Origin, ServerEvent};
use crate::metrics::Metrics;
use crate::protocol::{ErrorCode, Refusal};

/// How long a sender waits for room in a target's outbound queue (the target's connection
/// is not draining) before the event is refused with `rate-limited`.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Capacity of a socket's outbound queue in packets (the sender waits when it is full).
pub const QUEUE: usize = 1024;

/// Bytes held by one socket's queue (inbound or outbound), with a cap.
#[derive(Debug)]
pub struct QueuedBytes {
    now: AtomicUsize,
    max: usize,
}

impl QueuedBytes {
    /// At least 4 MiB, and 16 events of the largest size.
    #[must_use]
    pub fn new(max_payload: usize) -> Self {
        Self {
            now: AtomicUsize::new(0),
            max: max_payload.saturating_mul(16).max(4 << 20),
        }
    }

    /// Reserves `n` bytes; `false` (nothing reserved) when that would pass the cap.
    pub fn try_add(&self, n: usize) -> bool {
        self.now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                cur.checked_add(n).filter(|total| *total <= self.max)
            })
            .is_ok()
    }

    /// The cap in bytes.
    #[must_use]
    pub fn max(&self) -> usize {
        self.max
    }

    /// Releases `n` bytes.
    pub fn sub(&self, n: usize) {
        let _ = self
            .now
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                Some(cur.saturating_sub(n))
            });
    }
}

/// The data of one outbound packet.
#[derive(Debug, Clone)]
pub enum Body {
    /// A core decision, shared by every target of one fan-out.
    Event(Arc<ServerEvent>),
    /// A successful ack, `{ok: true, ...}`.
    Ack(AckBody),
    /// Anything else (refusals, `ice-servers`).
    Json(Value),
    /// Encoded by another instance (multi-instance mode), written as is.
    Remote(Box<serde_json::value::RawValue>),
}

impl Serialize for Body {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Body::Event(e) => e.serialize(s),
            Body::Ack(a) => a.wire().serialize(s),
            Body::Json(v) => v.serialize(s),
            Body::Remote(r) => r.serialize(s),
        }
    }
}

/// One packet for one socket.
#[derive(Debug)]
pub enum Packet {
    Emit {
        event: &'static str,
        body: Body,
        origin: Option<Origin>,
    },
    Ack {
        ack_id: i64,
        body: Body,
    },
}

impl Packet {
    #[must_use]
    pub fn emit(event: &'static str, body: Body) -> Self {
        Packet::Emit {
            event,
            body,
            origin: None,
        }
    }

    /// About the bytes this packet takes on the wire (its JSON plus the event name), counted
    /// against the target's queue cap.
    #[must_use]
    pub fn encoded_size(&self) -> usize {
        let (name, body) = match self {
            Packet::Emit { event, body, .. } => (event.len(), body),
            Packet::Ack { body, .. } => (0, body),
        };
        let mut counter = ByteCounter(0);
        if serde_json::to_writer(&mut counter, body).is_err() {
            return usize::MAX;
        }
        counter.0.saturating_add(name).saturating_add(16)
    }
}

impl Packet {
    /// Who to answer if this packet is not delivered.
    #[must_use]
    pub fn into_origin(self) -> Option<Origin> {
        match self {
            Packet::Emit { origin, .. } => origin,
            Packet::Ack { .. } => None,
        }
    }
}

/// A packet with its bytes reserved in its target's queue, not yet queued.
#[derive(Debug)]
pub struct Reserved {
    q: PeerQueue,
    queued: Box<Queued>,
}

/// How [`Reserved::try_push`] went.
#[derive(Debug)]
pub enum TryPush {
    Done,
    /// The queue is full: try again later (or wait, [`Reserved::push_wait`]).
    Full(Reserved),
    /// The target is gone; the origin to answer.
    Gone(Option<Origin>),
}

impl std::fmt::Debug for PeerQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerQueue").finish_non_exhaustive()
    }
}

impl Reserved {
    /// Queues it now if there is room.
    pub fn try_push(self) -> TryPush {
        let Reserved { q, queued } = self;
        match q.tx.try_send(queued) {
            Ok(()) => TryPush::Done,
            Err(mpsc::error::TrySendError::Full(queued)) => TryPush::Full(Reserved { q, queued }),
            Err(mpsc::error::TrySendError::Closed(queued)) => {
                q.bytes.sub(queued.size);
                TryPush::Gone(queued.packet.into_origin())
            }
        }
    }

    /// Queues it, waiting for room as a local sender would ([`DELIVERY_TIMEOUT`]).
    pub async fn push_wait(self) -> Result<(), (Refusal, Option<Origin>)> {
        let Reserved { q, queued } = self;
        let size = queued.size;
        match q.tx.send_timeout(queued, DELIVERY_TIMEOUT).await {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Closed(queued)) => {
                q.bytes.sub(size);
                Err((
                    Refusal::new(ErrorCode::UnknownPeer, "peer has left"),
                    queued.packet.into_origin(),
                ))
            }
            Err(SendTimeoutError::Timeout(queued)) => {
                q.bytes.sub(size);
                Err((
                    Refusal::new(
                        ErrorCode::RateLimited,
                        "the target peer is not reading; event not delivered",
                    ),
                    queued.packet.into_origin(),
                ))
            }
        }
    }

    /// Gives the bytes back without queuing; the origin to answer.
    #[must_use]
    pub fn release(self) -> Option<Origin> {
        self.q.bytes.sub(self.queued.size);
        self.queued.packet.into_origin()
    }
}

/// Counts bytes written (sizes a JSON value without building it).
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One packet in a socket's outbound queue, with the bytes it holds of the queue's cap.
#[derive(Debug)]
pub struct Queued {
    pub packet: Packet,
    pub size: usize,
}

/// A connected peer's outbound queue: its sender, the bytes it holds (capped), and its
/// connection, to close when it stops reading.
#[derive(Clone)]
pub struct PeerQueue {
    /// Boxed: a tokio channel allocates its first block of 32 slots up front, so the slot
    /// size is paid by every idle socket.
    pub tx: mpsc::Sender<Box<Queued>>,
    pub bytes: Arc<QueuedBytes>,
    pub close: Closer,
}

/// Why the server ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Its outbound queue passed its byte cap.
    SlowReader,
    /// The server is shutting down: the client is told (Socket.IO DISCONNECT).
    Shutdown,
}

/// How to end one connection, whichever transport serves it.
#[derive(Clone)]
pub enum Closer {
    /// A socketioxide socket (long-polling, or a WebSocket upgraded from it).
    SocketIo(Weak<Socket<LocalAdapter>>),
    /// A WebSocket of the native transport ([`crate::socket::native`]).
    Native(Arc<NativeClose>),
}

/// The close signal of a native connection: its task waits on `notify` between packets.
#[derive(Debug, Default)]
pub struct NativeClose {
    pub notify: tokio::sync::Notify,
    shutdown: std::sync::atomic::AtomicBool,
}

impl NativeClose {
    /// Why the connection was asked to close (checked once `notify` fired).
    #[must_use]
    pub fn reason(&self) -> CloseReason {
        if self.shutdown.load(Ordering::Acquire) {
            CloseReason::Shutdown
        } else {
            CloseReason::SlowReader
        }
    }
}

impl Closer {
    /// Asks the connection to close. A native connection closes at its next packet
    /// boundary (the permit is kept if it is busy); socketioxide's closes now.
    pub fn close(&self, why: CloseReason) {
        match self {
            Closer::SocketIo(s) => {
                if let Some(s) = s.upgrade()
                    && let Err(e) = s.disconnect()
                {
                    tracing::debug!(error = %e, "Socket already gone");
                }
            }
            Closer::Native(n) => {
                if why == CloseReason::Shutdown {
                    n.shutdown.store(true, Ordering::Release);
                }
                n.notify.notify_one();
            }
        }
    }
}

/// peer id → that peer's outbound queue.
#[derive(Default)]
pub struct Peers {
    map: RwLock<HashMap<String, PeerQueue>>,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peers").field("len", &self.len()).finish()
    }
}

impl Peers {
    pub fn register(&self, peer_id: &str, queue: PeerQueue) {
        self.write().insert(peer_id.to_string(), queue);
    }

    pub fn unregister(&self, peer_id: &str) {
        self.write().remove(peer_id);
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.read().len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, PeerQueue>> {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, PeerQueue>> {
        self.map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn queue_of(&self, peer_id: &str) -> Option<PeerQueue> {
        self.read().get(peer_id).cloned()
    }

    /// Queues `packet` for `peer_id`, waiting (bounded by [`DELIVERY_TIMEOUT`]) while its
    /// queue is full: backpressure on the sender rather than loss. A peer whose queue would
    /// pass its byte cap is not reading: it is disconnected (logged and counted), so a slow
    /// reader cannot grow the server's memory.
    pub async fn send_to(
        &self,
        peer_id: &str,
        packet: Packet,
        metrics: &Metrics,
    ) -> Result<(), Refusal> {
        let Some(q) = self.queue_of(peer_id) else {
            return Err(Refusal::new(ErrorCode::UnknownPeer, "no such peer"));
        };
        let size = packet.encoded_size();
        if !q.bytes.try_add(size) {
            self.close_slow_reader(peer_id, &q, metrics);
            return Err(Refusal::new(
                ErrorCode::UnknownPeer,
                "the target peer was not reading and was disconnected",
            ));
        }
        let res =
            q.tx.send_timeout(Box::new(Queued { packet, size }), DELIVERY_TIMEOUT)
                .await;
        if res.is_err() {
            q.bytes.sub(size);
        }
        match res {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Closed(_)) => {
                Err(Refusal::new(ErrorCode::UnknownPeer, "peer has left"))
            }
            Err(SendTimeoutError::Timeout(_)) => Err(Refusal::new(
                ErrorCode::RateLimited,
                "the target peer is not reading; event not delivered",
            )),
        }
    }

    /// Reserves room for `packet` in `peer_id`'s queue (its bytes against the cap), for a
    /// push that may have to wait (events from other instances). A refusal comes back with
    /// the packet's origin, to be answered.
    pub fn reserve(
        &self,
        peer_id: &str,
        packet: Packet,
        metrics: &Metrics,
    ) -> Result<Reserved, (Refusal, Option<Origin>)> {
        let Some(q) = self.queue_of(peer_id) else {
            return Err((
                Refusal::new(ErrorCode::UnknownPeer, "no such peer"),
                packet.into_origin(),
            ));
        };
        let size = packet.encoded_size();
        if !q.bytes.try_add(size) {
            self.close_slow_reader(peer_id, &q, metrics);
            return Err((
                Refusal::new(
                    ErrorCode::UnknownPeer,
                    "the target peer was not reading and was disconnected",
                ),
                packet.into_origin(),
            ));
        }
        Ok(Reserved {
            q,
            queued: Box::new(Queued { packet, size }),
        })
    }

    fn close_slow_reader(&self, peer_id: &str, q: &PeerQueue, metrics: &Metrics) {
        // Once per peer: later sends find it unregistered or its socket gone.
        self.unregister(peer_id);
        metrics.slow_readers_closed.inc();
        tracing::warn!(
            peer = %peer_id,
            cap_bytes = q.bytes.max(),
            "Slow reader disconnected: its outbound queue passed its byte cap"
        );
        q.close.close(CloseReason::SlowReader);
    }

    /// Asks every connection to close (this instance was fenced off the cluster); how many.
    pub fn close_all(&self) -> usize {
        let map = self.read();
        for q in map.values() {
            q.close.close(CloseReason::Shutdown);
        }
        map.len()
    }

    /// Asks every native WebSocket connection to close for shutdown (socketioxide's are
    /// closed through its own handle); returns how many were asked.
    pub fn close_native(&self) -> usize {
        let map = self.read();
        let mut n = 0;
        for q in map.values() {
            if let Closer::Native(_) = &q.close {
                q.close.close(CloseReason::Shutdown);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_bytes_are_capped_and_released() {
        let q = QueuedBytes::new(1024);
        let max = 4 << 20;
        assert!(q.try_add(max - 10));
        assert!(!q.try_add(11), "over the cap: refused, nothing reserved");
        assert!(q.try_add(10));
        q.sub(max);
        assert!(q.try_add(max));
    }

    #[test]
    fn the_cap_is_at_least_sixteen_largest_events() {
        let q = QueuedBytes::new(1 << 20);
        assert!(q.try_add(16 << 20));
        assert!(!q.try_add(1));
    }
}
