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

use crate::protocol::{ErrorCode, Refusal};
use crate::ratelimit::EventLimiter;

/// One event, in arrival order.
#[derive(Debug)]
pub enum InboundItem {
    Event {
        event: String,
        ack_id: Option<i64>,
        /// The decoded payload, or why it was refused before decoding.
        body: Result<Value, Refusal>,
    },
    /// The socket disconnected: leave every room, then stop.
    Disconnect,
}

/// Capacity of a socket's inbound queue. The rate limit keeps a client far below it; it
/// fills only when the session is held up by a stalled target.
pub const QUEUE: usize = 4096;

/// What the extractor needs, stored in the socket's extensions.
#[derive(Clone)]
pub struct Inbox {
    pub tx: mpsc::Sender<InboundItem>,
    pub limiter: Arc<EventLimiter>,
    pub max_payload: usize,
}

/// Marker extractor: extracting it queues the event (see the module docs).
#[derive(Debug)]
pub struct Inbound;

impl FromMessage<LocalAdapter> for Inbound {
    type Error = Infallible;

    fn from_message(
        s: Arc<Socket<LocalAdapter>>,
        mut v: socketioxide_core::Value,
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
        let body = if !inbox.limiter.allow() {
            Err(Refusal::new(
                ErrorCode::RateLimited,
                "too many events; slow down",
            ))
        } else if size > inbox.max_payload {
            Err(Refusal::new(
                ErrorCode::PayloadTooLarge,
                format!("event is {size} bytes; the limit is {}", inbox.max_payload),
            ))
        } else {
            match TryData::<Value>::from_message_parts(&s, &mut v, &ack_id) {
                Ok(TryData(Ok(v))) => Ok(v),
                Ok(TryData(Err(_))) => Err(Refusal::bad("payload is not valid JSON data")),
                Err(never) => match never {},
            }
        };
        let item = InboundItem::Event {
            event: event.clone(),
            ack_id,
            body,
        };
        if inbox.tx.try_send(item).is_err() {
            // Queue full (the session is stalled on a target) or closing: answer now, best effort.
            let r = Refusal::new(ErrorCode::RateLimited, "too many events in flight");
            let sent = match ack_id {
                Some(_) => match AckSender::from_message_parts(&s, &mut v, &ack_id) {
                    Ok(a) => a.send(&r.ack()),
                    Err(never) => match never {},
                },
                None => s.emit("error", &r.event(&event)),
            };
            if sent.is_err() {
                tracing::warn!(sid = %s.id, %event, "Event refused and the refusal could not be sent");
            }
        }
        Ok(Inbound)
    }
}

/// Bytes of the encoded Socket.IO packet (text plus binary attachments).
fn packet_size(v: &socketioxide_core::Value) -> usize {
    match v {
        socketioxide_core::Value::Str(s, bins) => {
            s.len()
                + bins
                    .as_ref()
                    .map_or(0, |b| b.iter().map(bytes::Bytes::len).sum())
        }
        socketioxide_core::Value::Bytes(b) => b.len(),
    }
}
