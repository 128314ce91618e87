//! Ordered intake of client events.
//!
//! socketioxide spawns every event handler as its own task, so two events from one socket can
//! run in either order. Its extractors, however, run inline in the receive loop, in arrival
//! order, before the task is spawned (`MessageHandler::call` in socketioxide 0.18). So the
//! [`Inbound`] extractor does all the work there: it checks the rate limit and the size,
//! decodes the payload and pushes the event into the socket's ordered queue, consumed by one
//! session task per socket. The handler socketioxide then spawns is empty.

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::Value;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{AckSender, Event, TryData};
use socketioxide::handler::{FromMessage, FromMessageParts};
use socketioxide::socket::Socket;
use tokio::sync::mpsc;

use crate::peers::QueuedBytes;
use crate::protocol::{ErrorCode, Refusal};
use crate::ratelimit::EventLimiter;

/// One event, in arrival order.
#[derive(Debug)]
pub enum InboundItem {
    Event {
        event: String,
        ack_id: Option<i64>,
        /// Bytes reserved in [`QueuedBytes`], released when handled.
        size: usize,
        /// The decoded payload, or why it was refused before decoding.
        body: Result<Value, Refusal>,
    },
    /// The socket disconnected: leave every room, then stop.
    Disconnect,
}

/// Capacity of a socket's inbound queue in events (bytes are capped by [`QueuedBytes`]). The
/// rate limit keeps a client far below it; it fills only when the session is held up by a
/// slow target.
pub const QUEUE: usize = 4096;

/// What the extractor needs, stored in the socket's extensions.
#[derive(Clone)]
pub struct Inbox {
    /// Boxed: a tokio channel allocates its first block of 32 slots up front, so the
    /// slot size is paid by every idle socket.
    pub tx: mpsc::Sender<Box<InboundItem>>,
    pub limiter: Arc<EventLimiter>,
    pub max_payload: usize,
    /// Bytes of events queued and not yet handled: bounds memory per socket while its
    /// session waits on a slow target.
    pub queued: Arc<QueuedBytes>,
}

impl Inbox {
    /// Takes one event of `size` bytes in arrival order: refuses it (as its answer, in
    /// order) when the client is over its rate or the event over `max_payload`, else
    /// decodes it, and queues it for the session. `Err` (with the event's name) only when
    /// it could not be queued at all (the session is held up by a slow target, or closing):
    /// the caller answers that at once, best effort.
    pub fn intake(
        &self,
        event: String,
        ack_id: Option<i64>,
        size: usize,
        decode: impl FnOnce() -> Result<Value, Refusal>,
    ) -> Result<(), (String, Refusal)> {
        let body = if !self.limiter.allow() {
            Err(Refusal::new(
                ErrorCode::RateLimited,
                "too many events; slow down",
            ))
        } else if size > self.max_payload {
            Err(Refusal::new(
                ErrorCode::PayloadTooLarge,
                format!("event is {size} bytes; the limit is {}", self.max_payload),
            ))
        } else {
            decode()
        };
        // Refused events carry no payload, so only accepted ones hold queue bytes.
        let size = if body.is_ok() { size } else { 0 };
        let item = Box::new(InboundItem::Event {
            event,
            ack_id,
            size,
            body,
        });
        let refused = if self.queued.try_add(size) {
            match self.tx.try_send(item) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.queued.sub(size);
                    e.into_inner()
                }
            }
        } else {
            item
        };
        let event = match *refused {
            InboundItem::Event { event, .. } => event,
            InboundItem::Disconnect => String::new(),
        };
        Err((
            event,
            Refusal::new(ErrorCode::RateLimited, "too many events in flight"),
        ))
    }
}

/// Marker extractor: extracting it queues the event (see the module docs).
#[derive(Debug)]
pub struct Inbound;

impl FromMessage<LocalAdapter> for Inbound {
    type Error = Infallible;

    fn from_message(
        s: Arc<Socket<LocalAdapter>>,
        mut v: socketioxide::handler::Value,
        ack_id: Option<i64>,
    ) -> Result<Self, Infallible> {
        let Some(inbox) = s.extensions.get::<Inbox>() else {
            return Ok(Inbound);
        };
        let event = match Event::from_message_parts(&s, &mut v, &ack_id) {
            Ok(Event(e)) => e,
            Err(_) => String::new(),
        };
        let size = packet_size(&v);
        let queued = inbox.intake(
            event,
            ack_id,
            size,
            || match TryData::<Value>::from_message_parts(&s, &mut v, &ack_id) {
                Ok(TryData(Ok(v))) => Ok(v),
                Ok(TryData(Err(_))) => Err(Refusal::bad("payload is not valid JSON data")),
                Err(never) => match never {},
            },
        );
        if let Err((event, r)) = queued {
            let sent = match ack_id {
                Some(_) => match AckSender::from_message_parts(&s, &mut v, &ack_id) {
                    Ok(a) => a.send(&r.ack()),
                    Err(never) => match never {},
                },
                None => s.emit("error", &r.event(&event)),
            };
            if sent.is_err() {
                tracing::debug!(sid = %s.id, %event, "Event refused and the refusal could not be sent");
            }
        }
        Ok(Inbound)
    }
}

/// Bytes of the encoded Socket.IO packet (text plus binary attachments).
fn packet_size(v: &socketioxide::handler::Value) -> usize {
    match v {
        socketioxide::handler::Value::Str(s, bins) => {
            s.len()
                + bins
                    .as_ref()
                    .map_or(0, |b| b.iter().map(bytes::Bytes::len).sum())
        }
        socketioxide::handler::Value::Bytes(b) => b.len(),
    }
}
