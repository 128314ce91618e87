//! Outbound delivery: one queue and one writer task per connected socket.
//!
//! Every packet to a socket (relayed events, presence, acks, errors) goes through its queue,
//! and only its writer emits to it, so packets leave in the order they were queued. socketioxide's
//! `emit` fails when the socket's engine.io buffer (`max_buffer_size`) is full; the writer then
//! waits and retries (backpressure) instead of dropping, and if the socket stays full past
//! [`DELIVERY_TIMEOUT`](crate::hub::DELIVERY_TIMEOUT) the original sender gets an `error`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::Value;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::AckSender;
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;
use socketioxide::{SendError, SocketError};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::hub::{DELIVERY_TIMEOUT, Hub};
use crate::protocol::{ErrorCode, Refusal};
use crate::socket::inbound::QueuedBytes;

/// Who to tell when a relayed event cannot be delivered.
#[derive(Debug, Clone)]
pub struct Origin {
    pub sender: String,
    pub event: &'static str,
}

/// One packet for one socket.
#[derive(Debug)]
pub enum Outbound {
    Emit {
        event: &'static str,
        data: Value,
        origin: Option<Origin>,
    },
    Ack {
        ack_id: i64,
        data: Value,
    },
}

impl Outbound {
    #[must_use]
    pub fn emit(event: &'static str, data: Value) -> Self {
        Outbound::Emit {
            event,
            data,
            origin: None,
        }
    }

    /// About the bytes this packet takes on the wire (its JSON plus the event name), counted
    /// against the target's queue cap.
    #[must_use]
    pub fn encoded_size(&self) -> usize {
        let (name, data) = match self {
            Outbound::Emit { event, data, .. } => (event.len(), data),
            Outbound::Ack { data, .. } => (0, data),
        };
        let mut counter = ByteCounter(0);
        if serde_json::to_writer(&mut counter, data).is_err() {
            return usize::MAX;
        }
        counter.0.saturating_add(name).saturating_add(16)
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
    pub item: Outbound,
    pub size: usize,
}

/// Capacity of a socket's outbound queue (the sender waits when it is full).
pub const QUEUE: usize = 1024;

enum Failure {
    /// The socket's buffer stayed full.
    Stalled,
    /// The socket is gone.
    Closed,
}

/// Emits with retry while the engine.io buffer is full. Backoff 1 ms doubling to 50 ms.
async fn with_retry(mut attempt: impl FnMut() -> Result<(), SendError>) -> Result<(), Failure> {
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut backoff = Duration::from_millis(1);
    loop {
        match attempt() {
            Ok(()) => return Ok(()),
            Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                if Instant::now() >= deadline {
                    return Err(Failure::Stalled);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            }
            Err(SendError::Serialize(e)) => {
                tracing::warn!(error = %e, "Could not encode an outbound packet");
                return Ok(());
            }
            Err(SendError::Socket(_)) => return Err(Failure::Closed),
        }
    }
}

/// Drains `rx` into the socket. Holds only a weak reference, so an idle writer never keeps
/// a closed socket alive; it ends when the queue's senders are gone or the socket is.
pub async fn writer(
    socket: Weak<Socket<LocalAdapter>>,
    mut rx: mpsc::Receiver<Queued>,
    bytes: Arc<QueuedBytes>,
    hub: Arc<Hub>,
) {
    while let Some(Queued { item, size }) = rx.recv().await {
        // Handed to the socket (or dropped) below: no longer held by this queue.
        bytes.sub(size);
        let Some(s) = socket.upgrade() else { break };
        match item {
            Outbound::Emit {
                event,
                data,
                origin,
            } => match with_retry(|| s.emit(event, &data)).await {
                Ok(()) => {
                    if origin.is_some() {
                        hub.metrics.relayed(event);
                    }
                }
                Err(f) => {
                    let closed = matches!(f, Failure::Closed);
                    if let Some(o) = origin {
                        let msg = if closed {
                            "the target peer disconnected before delivery"
                        } else {
                            "the target peer is not reading; event not delivered"
                        };
                        let code = if closed {
                            ErrorCode::UnknownPeer
                        } else {
                            ErrorCode::RateLimited
                        };
                        hub.metrics.error(code.as_str());
                        let body = Refusal::new(code, msg).event(o.event);
                        hub.notify(&o.sender, "error", body).await;
                    }
                    if closed {
                        break;
                    }
                }
            },
            Outbound::Ack { ack_id, data } => {
                let res = with_retry(|| {
                    let mut none = socketioxide::handler::Value::Str("".into(), None);
                    let ack = match AckSender::from_message_parts(&s, &mut none, &Some(ack_id)) {
                        Ok(a) => a,
                        Err(never) => match never {},
                    };
                    ack.send(&data)
                })
                .await;
                if matches!(res, Err(Failure::Closed)) {
                    break;
                }
            }
        }
    }
}
