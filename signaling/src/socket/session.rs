//! One task per socket: takes its events from the ordered inbound queue one at a time, runs
//! them, answers (ack or `error` event) through the socket's own outbound queue, refreshes
//! the TURN credentials of a socket in a room (`ice-servers`), and on disconnect leaves every
//! room.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::hub::Hub;
use crate::ice::IceServersEvent;
use crate::ice::refresh::CredentialRefresh;
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

/// Runs until the socket disconnects (or its inbound queue closes). The credential refresh
/// is a deadline in this loop, not a task of its own: it ends with the socket.
pub async fn run(
    hub: Arc<Hub>,
    me: PeerCtx,
    mut rx: mpsc::Receiver<InboundItem>,
    queued: Arc<QueuedBytes>,
) {
    let mut refresh = CredentialRefresh::new(hub.cfg.turn.credential_ttl);
    loop {
        let item = tokio::select! {
            item = rx.recv() => item,
            () = until(refresh.poll_timeout()) => {
                refresh_credentials(&hub, &me, &mut refresh).await;
                continue;
            }
        };
        let Some(item) = item else { break };
        match item {
            InboundItem::Disconnect => break,
            InboundItem::Event {
                event,
                ack_id,
                size,
                body,
            } => {
                let parsed = ClientEvent::parse(&event);
                let result = match (parsed, body) {
                    (_, Err(refusal)) => Err(refusal),
                    (None, Ok(_)) => {
                        Err(Refusal::bad(format!("unknown event `{}`", short(&event))))
                    }
                    (Some(ev), Ok(body)) => events::handle(&hub, &me, ev, body).await,
                };
                if result.is_ok() {
                    match parsed {
                        // The ack carried fresh credentials.
                        Some(ClientEvent::JoinRoom) => refresh.handle_issued(Instant::now()),
                        Some(ClientEvent::LeaveRoom) if !hub.store.in_any_room(&me.id).await => {
                            refresh.handle_no_room();
                        }
                        _ => {}
                    }
                }
                answer(&hub, &me, &event, ack_id, result).await;
                queued.sub(size);
            }
        }
    }
    cleanup(&hub, &me).await;
}

/// Sleeps until `due`; forever when nothing is due.
async fn until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// The refresh deadline passed: sends fresh credentials if the socket is still in a room
/// (a REST `DELETE` may have removed it from its last one), else disarms the timer.
async fn refresh_credentials(hub: &Hub, me: &PeerCtx, refresh: &mut CredentialRefresh) {
    if !hub.store.in_any_room(&me.id).await {
        refresh.handle_no_room();
        return;
    }
    // Not the client's `userId`: the connection's own TURN user (SPEC section 2).
    let ice = IceServersEvent::from(hub.ice_servers(&me.turn_user));
    refresh.handle_issued(Instant::now());
    match serde_json::to_value(ice) {
        Ok(body) => {
            hub.notify(&me.id, "ice-servers", body).await;
            hub.metrics.credential_refreshes.inc();
        }
        Err(e) => tracing::warn!(peer = %me.id, error = %e, "Credential refresh not encoded"),
    }
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
