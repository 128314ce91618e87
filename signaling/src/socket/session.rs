//! One task per socket: takes its events from the ordered inbound queue one at a time, runs
//! them through the core, queues the core's deliveries, answers (ack or `error` event) through the socket's own outbound queue, refreshes
//! the TURN credentials of a socket in a room (`ice-servers`), and on disconnect leaves every
//! room.

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::clock;
use crate::core::{AckBody, Admission, ClientEvent, JoinRoom, PasswordStep, PeerInfo};
use crate::hub::Hub;
use crate::ice::IceServersEvent;
use crate::ice::refresh::CredentialRefresh;
use crate::peers::{Body, Packet, QueuedBytes};
use crate::protocol::{ErrorCode, EventName, Refusal, short};
use crate::socket::inbound::InboundItem;

/// Who the session's socket is.
#[derive(Debug, Clone)]
pub struct PeerCtx {
    /// What the core knows of the peer: its id (random, never the Engine.IO sid, see
    /// [`crate::socket::new_peer_id`]), auth subject and fallback user id.
    pub info: PeerInfo,
    /// The TURN user id of this connection's credentials: the auth subject, else chosen by
    /// the server for this connection (never the client's `userId`).
    pub turn_user: String,
    /// The client's address (failed room-password attempts are counted per source IP).
    pub ip: std::net::IpAddr,
    /// The source address counted against `signaling.max_connections_per_ip` (released on
    /// disconnect); `None` when the transport gave none.
    pub counted_ip: Option<std::net::IpAddr>,
}

impl PeerCtx {
    #[must_use]
    pub fn id(&self) -> &str {
        &self.info.id
    }
}

/// Runs until the socket disconnects (or its inbound queue closes). The credential refresh
/// is a deadline in this loop, not a task of its own: it ends with the socket.
pub async fn run(
    hub: Arc<Hub>,
    me: PeerCtx,
    mut rx: mpsc::Receiver<Box<InboundItem>>,
    queued: Arc<QueuedBytes>,
) {
    let mut refresh = CredentialRefresh::new(hub.cfg.turn.credential_ttl);
    loop {
        let item = tokio::select! {
            item = rx.recv() => item,
            () = until(refresh.poll_timeout()) => {
                // Boxed here and below: a task's future is as large as its largest await,
                // and every idle socket holds this one (heaptrack); the rare, deep paths
                // (join with a password hash, the refresh) get their own allocation.
                Box::pin(refresh_credentials(&hub, &me, &mut refresh)).await;
                continue;
            }
        };
        let Some(item) = item else { break };
        match *item {
            InboundItem::Disconnect => break,
            InboundItem::Event {
                event,
                ack_id,
                size,
                body,
            } => {
                let parsed = EventName::parse(&event);
                let result = match (parsed, body) {
                    (_, Err(refusal)) => Err(refusal),
                    (None, Ok(_)) => {
                        Err(Refusal::bad(format!("unknown event `{}`", short(&event))))
                    }
                    (Some(name), Ok(body)) => Box::pin(run_event(&hub, &me, name, body)).await,
                };
                match &result {
                    // The ack carried fresh credentials.
                    Ok(AckBody::Joined { .. }) => refresh.handle_issued(Instant::now()),
                    Ok(AckBody::Left { .. }) if !Box::pin(hub.in_any_room(me.id())).await => {
                        refresh.handle_no_room();
                    }
                    _ => {}
                }
                Box::pin(answer(&hub, &me, &event, ack_id, result)).await;
                queued.sub(size);
            }
        }
    }
    Box::pin(cleanup(&hub, &me)).await;
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
    if !hub.in_any_room(me.id()).await {
        refresh.handle_no_room();
        return;
    }
    // Not the client's `userId`: the connection's own TURN user (SPEC section 2).
    let ice = IceServersEvent::from(hub.ice_servers(&me.turn_user));
    refresh.handle_issued(Instant::now());
    match serde_json::to_value(ice) {
        Ok(body) => {
            hub.notify(me.id(), "ice-servers", Body::Json(body)).await;
            hub.metrics.credential_refreshes.inc();
        }
        Err(e) => tracing::warn!(peer = %me.id(), error = %e, "Credential refresh not encoded"),
    }
}

/// Decodes and runs one event: the password step (slow, outside the core), then one
/// synchronous step of the core, then its deliveries in order. The answer is the core's
/// ack, or the refusal of a relayed event that could not be queued.
async fn run_event(
    hub: &Hub,
    me: &PeerCtx,
    name: EventName,
    body: Value,
) -> Result<AckBody, Refusal> {
    let mut event = ClientEvent::decode(name, body)?;
    let mut joining = None;
    if let ClientEvent::JoinRoom(j) = &mut event {
        prepare_join(hub, me, j).await?;
        joining = Some(j.room_id.clone());
    }
    let outcome = hub.handle_event(&me.info, event, clock::unix_ms()).await;
    if let (Some(room), Err(r)) = (&joining, &outcome.ack)
        && r.code == ErrorCode::WrongPassword
    {
        hub.passwords.handle_failure(room.as_str(), me.ip);
    }
    if let (Some(room), Ok(AckBody::Joined { peers, .. })) = (&joining, &outcome.ack) {
        tracing::debug!(peer = %me.id(), room = %room, others = peers.len(), "Joined room");
    }
    let queued = hub.deliver(outcome.deliveries).await;
    let ack = outcome.ack?;
    queued?;
    Ok(ack)
}

/// The password step of a join (argon2 on the blocking pool, only while the source has
/// attempts left), and the credentials for its ack.
async fn prepare_join(hub: &Hub, me: &PeerCtx, j: &mut JoinRoom) -> Result<(), Refusal> {
    let step = hub.password_step(&me.info, j).await?;
    j.admission = match step {
        PasswordStep::None => Admission::Unverified,
        PasswordStep::Verify { hash, password } => {
            if !hub.passwords.may_try(j.room_id.as_str(), me.ip) {
                return Err(Refusal::new(
                    ErrorCode::RateLimited,
                    "too many wrong passwords; try again later",
                ));
            }
            match password {
                Some(p) => {
                    admit_hash(hub, me)?;
                    if hub.passwords.verify(hash.clone(), p).await {
                        Admission::Verified(hash)
                    } else {
                        Admission::Unverified
                    }
                }
                None => Admission::Unverified,
            }
        }
        PasswordStep::Hash { password } => {
            admit_hash(hub, me)?;
            let hash = hub
                .passwords
                .hash(password)
                .await
                .ok_or_else(|| Refusal::bad("the password could not be hashed"))?;
            Admission::NewPassword(hash)
        }
    };
    // Not the join's user id: with auth off that is the client's word (SPEC section 2).
    j.ice_servers = hub.ice_servers(&me.turn_user).ice_servers;
    Ok(())
}

/// One slow hash from this source's budget, else `rate-limited`.
fn admit_hash(hub: &Hub, me: &PeerCtx) -> Result<(), Refusal> {
    if hub.passwords.admit_hash(me.ip) {
        Ok(())
    } else {
        Err(Refusal::new(
            ErrorCode::RateLimited,
            "too many room passwords from this address; try again later",
        ))
    }
}

async fn answer(
    hub: &Hub,
    me: &PeerCtx,
    event: &str,
    ack_id: Option<i64>,
    result: Result<AckBody, Refusal>,
) {
    if let Err(r) = &result {
        hub.metrics.error(r.code.as_str());
        if r.code == ErrorCode::RateLimited {
            hub.metrics.rate_limited.inc();
        }
        tracing::debug!(peer = %me.id(), event = %short(event), code = r.code.as_str(), "Event refused");
    }
    let packet = match (ack_id, result) {
        (Some(ack_id), Ok(ack)) => Packet::Ack {
            ack_id,
            body: Body::Ack(ack),
        },
        (Some(ack_id), Err(r)) => Packet::Ack {
            ack_id,
            body: Body::Json(r.ack()),
        },
        (None, Ok(_)) => return,
        (None, Err(r)) => Packet::emit("error", Body::Json(r.event(&short(event)))),
    };
    if hub.send_to(me.id(), packet).await.is_err() {
        tracing::debug!(peer = %me.id(), "Answer not queued: the socket is gone");
    }
}

async fn cleanup(hub: &Hub, me: &PeerCtx) {
    let deliveries = hub.handle_disconnect(&me.info).await;
    // Presence only: nothing to answer.
    let _ = hub.deliver(deliveries).await;
    hub.unregister_peer(me.id());
    if let Some(ip) = me.counted_ip {
        hub.remove_connection(ip);
    }
    hub.metrics.connections.dec();
    hub.metrics.disconnections.inc();
    tracing::debug!(peer = %me.id(), "Disconnected");
}
