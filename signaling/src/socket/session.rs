//! One task per socket: takes its events from the ordered inbound queue one at a time, runs
//! them, answers (ack or `error` event) through the socket's own outbound queue, and on
//! disconnect leaves every room.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::hub::Hub;
use crate::protocol::{ClientEvent, ErrorCode, Refusal};
use crate::socket::events;
use crate::socket::inbound::{InboundItem, QueuedBytes};
use crate::socket::outbound::Outbound;

/// Who the session's socket is.
#[derive(Debug, Clone)]
pub struct PeerCtx {
    /// Peer id: random, never the Engine.IO sid ([`crate::socket::new_peer_id`]).
    pub id: String,
    /// The auth subject (TURN user id) when auth is on.
    pub subject: Option<String>,
    /// User id used when auth is off and the client gives none.
    pub fallback_user: String,
    /// The TURN user id of this connection's credentials: the auth subject, else chosen by
    /// the server for this connection (never the client's `userId`).
    pub turn_user: String,
    /// The client's address (failed room-password attempts are counted per source IP).
    pub ip: std::net::IpAddr,
    /// The source address counted against `signaling.max_connections_per_ip` (released on
    /// disconnect); `None` when the transport gave none.
    pub counted_ip: Option<std::net::IpAddr>,
}

/// Runs until the socket disconnects (or its inbound queue closes).
pub async fn run(
    hub: Arc<Hub>,
    me: PeerCtx,
    mut rx: mpsc::Receiver<InboundItem>,
    queued: Arc<QueuedBytes>,
) {
    while let Some(item) = rx.recv().await {
        match item {
            InboundItem::Disconnect => break,
            InboundItem::Event {
                event,
                ack_id,
                size,
                body,
            } => {
                let result = match (ClientEvent::parse(&event), body) {
                    (_, Err(refusal)) => Err(refusal),
                    (None, Ok(_)) => {
                        Err(Refusal::bad(format!("unknown event `{}`", short(&event))))
                    }
                    (Some(ev), Ok(body)) => events::handle(&hub, &me, ev, body).await,
                };
                answer(&hub, &me, &event, ack_id, result).await;
                queued.sub(size);
            }
        }
    }
    cleanup(&hub, &me).await;
}

pub(crate) fn short(s: &str) -> String {
    s.chars().take(64).collect()
}

async fn answer(
    hub: &Hub,
    me: &PeerCtx,
    event: &str,
    ack_id: Option<i64>,
    result: Result<Value, Refusal>,
) {
    if let Err(r) = &result {
        hub.metrics.error(r.code.as_str());
        if r.code == ErrorCode::RateLimited {
            hub.metrics.rate_limited.inc();
        }
        tracing::debug!(peer = %me.id, event = %short(event), code = r.code.as_str(), "Event refused");
    }
    let item = match (ack_id, result) {
        (Some(ack_id), Ok(data)) => Outbound::Ack { ack_id, data },
        (Some(ack_id), Err(r)) => Outbound::Ack {
            ack_id,
            data: r.ack(),
        },
        (None, Ok(_)) => return,
        (None, Err(r)) => Outbound::emit("error", r.event(&short(event))),
    };
    if hub.send_to(&me.id, item).await.is_err() {
        tracing::debug!(peer = %me.id, "Answer not queued: the socket is gone");
    }
}

async fn cleanup(hub: &Hub, me: &PeerCtx) {
    for left in hub.store.leave_all(&me.id).await {
        hub.notify_left(&left.remaining, &left.room_id, &me.id)
            .await;
    }
    hub.unregister_peer(&me.id);
    if let Some(ip) = me.counted_ip {
        hub.remove_connection(ip);
    }
    hub.metrics.connections.dec();
    hub.metrics.disconnections.inc();
    tracing::debug!(peer = %me.id, "Disconnected");
}
