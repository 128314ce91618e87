//! The writer: one task per connected socket, draining its outbound queue
//! ([`crate::peers`]) into the socket.
//!
//! Only the writer emits to its socket, so packets leave in the order they were queued.
//! socketioxide's `emit` fails when the socket's engine.io buffer (`max_buffer_size`) is
//! full; the writer then waits and retries (backpressure) instead of dropping, and if the
//! socket stays full past [`DELIVERY_TIMEOUT`] the original sender gets an `error`.
//!
//! The `events_relayed` metric is counted here, when a relayed event is handed to the
//! target's socket (never when queued), for every event [`ServerEvent::is_relayed`] names.

use std::sync::{Arc, Weak};
use std::time::Duration;

use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::AckSender;
use socketioxide::handler::FromMessageParts;
use socketioxide::socket::Socket;
use socketioxide::{SendError, SocketError};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::core::ServerEvent;
use crate::hub::Hub;
use crate::peers::{Body, DELIVERY_TIMEOUT, Packet, Queued, QueuedBytes};
use crate::protocol::ErrorCode;

enum Failure {
    /// The socket's buffer stayed full.
    Stalled,
    /// The socket is gone.
    Closed,
}

/// Emits, with retry while the engine.io buffer is full. The first attempt runs inline; only
/// a full buffer pays for the boxed retry loop, which keeps the writer's future (held by
/// every idle socket) small.
async fn with_retry(mut attempt: impl FnMut() -> Result<(), SendError>) -> Result<(), Failure> {
    match attempt() {
        Ok(()) => Ok(()),
        Err(SendError::Socket(SocketError::InternalChannelFull)) => Box::pin(retry(attempt)).await,
        Err(SendError::Serialize(e)) => {
            tracing::warn!(error = %e, "Could not encode an outbound packet");
            Ok(())
        }
        Err(SendError::Socket(_)) => Err(Failure::Closed),
    }
}

/// Retries while the engine.io buffer is full. Backoff 1 ms doubling to 50 ms.
async fn retry(mut attempt: impl FnMut() -> Result<(), SendError>) -> Result<(), Failure> {
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

fn is_relayed(event: &str, body: &Body) -> bool {
    match body {
        Body::Event(e) => ServerEvent::is_relayed(e),
        Body::Remote(_) => ServerEvent::name_is_relayed(event),
        _ => false,
    }
}

/// Drains `rx` into the socket. Holds only a weak reference, so an idle writer never keeps
/// a closed socket alive; it ends when the queue's senders are gone or the socket is.
pub async fn writer(
    socket: Weak<Socket<LocalAdapter>>,
    mut rx: mpsc::Receiver<Box<Queued>>,
    bytes: Arc<QueuedBytes>,
    hub: Arc<Hub>,
) {
    while let Some(queued) = rx.recv().await {
        let Queued { packet, size } = *queued;
        // Handed to the socket (or dropped) below: no longer held by this queue.
        bytes.sub(size);
        let Some(s) = socket.upgrade() else {
            Box::pin(answer_lost(&hub, packet)).await;
            break;
        };
        match packet {
            Packet::Emit {
                event,
                body,
                origin,
            } => match with_retry(|| s.emit(event, &body)).await {
                Ok(()) => {
                    if is_relayed(event, &body) {
                        hub.metrics.relayed(event);
                    }
                }
                Err(Failure::Closed) => {
                    let packet = Packet::Emit {
                        event,
                        body,
                        origin,
                    };
                    Box::pin(answer_lost(&hub, packet)).await;
                    break;
                }
                Err(Failure::Stalled) => {
                    if let Some(o) = origin {
                        let msg = "the target peer is not reading; event not delivered";
                        Box::pin(hub.answer_origin(&o, ErrorCode::RateLimited, msg)).await;
                    }
                }
            },
            Packet::Ack { ack_id, body } => {
                let res = with_retry(|| {
                    let mut none = socketioxide::handler::Value::Str("".into(), None);
                    let ack = match AckSender::from_message_parts(&s, &mut none, &Some(ack_id)) {
                        Ok(a) => a,
                        Err(never) => match never {},
                    };
                    ack.send(&body)
                })
                .await;
                if matches!(res, Err(Failure::Closed)) {
                    break;
                }
            }
        }
    }
    // The socket is gone: what is still queued will never be written.
    Box::pin(answer_undelivered(&hub, &mut rx, &bytes)).await;
}

/// Every packet still queued when a connection ended (either transport): no longer held,
/// and a relayed event is answered to its sender.
pub(crate) async fn answer_undelivered(
    hub: &Hub,
    rx: &mut mpsc::Receiver<Box<Queued>>,
    bytes: &QueuedBytes,
) {
    rx.close();
    while let Some(q) = rx.recv().await {
        let Queued { packet, size } = *q;
        bytes.sub(size);
        answer_lost(hub, packet).await;
    }
}

/// A relayed event that will never be written: its sender gets `unknown-peer`.
pub(crate) async fn answer_lost(hub: &Hub, packet: Packet) {
    if let Packet::Emit {
        origin: Some(o), ..
    } = packet
    {
        let msg = "the target peer disconnected before delivery";
        Box::pin(hub.answer_origin(&o, ErrorCode::UnknownPeer, msg)).await;
    }
}
