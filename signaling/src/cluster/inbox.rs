//! This instance's inbox: a Redis Stream that other instances append events to (one per
//! target peer here), read in order with a blocking XREAD on a connection of its own, and
//! trimmed once each batch is handed to the targets' queues.
//!
//! Handing over never blocks the reader on one slow target: an event goes straight into the
//! target's outbound queue when it has room; when it is full, that target gets a forwarder
//! (a task with a bounded queue) that waits for room the way a local sender would
//! ([`DELIVERY_TIMEOUT`]), and every later event for that target goes through it until it
//! has drained, so per (sender, target) order holds. Whatever cannot be delivered is
//! answered to its sender on its own instance.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use redis::AsyncCommands;
use redis::streams::{StreamReadOptions, StreamReadReply};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Cluster;
use crate::core::Origin;
use crate::hub::Hub;
use crate::peers::{Body, Packet, Reserved, TryPush};
use crate::protocol::{ErrorCode, Refusal, static_event_name};

/// Entries read per XREAD.
const BATCH: usize = 512;
/// How long one XREAD blocks waiting for entries.
const BLOCK: Duration = Duration::from_secs(1);
/// The inbox is trimmed once this many entries were handed over, or [`TRIM_AFTER`] after
/// the first of them, not after every read: a trim is a round trip and a wake-up of Redis.
/// Entries handed over but not yet trimmed when an instance dies are answered to their
/// senders as undelivered (an error, never a silent loss).
const TRIM_EVERY: usize = 1024;
const TRIM_AFTER: Duration = Duration::from_millis(200);
/// Events a forwarder holds for its target (beyond: `rate-limited` to the sender).
const FORWARDER_QUEUE: usize = 4096;

/// Target peer id → its forwarder's queue and task.
type Forwarders = HashMap<String, (mpsc::Sender<Reserved>, JoinHandle<()>)>;

/// Reads the inbox until the hub is gone.
pub async fn run(hub: Weak<Hub>, cluster: Arc<Cluster>) {
    let mut forwarders: Forwarders = HashMap::new();
    let mut backoff = Duration::from_millis(100);
    // (instance, last id read): a new instance id after fencing starts a new inbox.
    let mut at: (Arc<str>, String) = (cluster.instance(), "0-0".to_string());
    let (mut untrimmed, mut last_trim) = (0usize, std::time::Instant::now());
    'connect: loop {
        if hub.upgrade().is_none() {
            return;
        }
        let conn_cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(super::COMMAND_TIMEOUT))
            .set_response_timeout(Some(BLOCK + super::COMMAND_TIMEOUT));
        let mut conn = match cluster
            .client
            .get_multiplexed_async_connection_with_config(&conn_cfg)
            .await
        {
            Ok(c) => {
                backoff = Duration::from_millis(100);
                c
            }
            Err(e) => {
                tracing::debug!(error = %e, "Inbox reader: Redis unreachable; retrying");
                // Reconnect pacing, not synchronisation.
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue 'connect;
            }
        };
        loop {
            let Some(h) = hub.upgrade() else { return };
            let now = cluster.instance();
            if now != at.0 {
                at = (now, "0-0".to_string());
                untrimmed = 0;
            }
            drop(h);
            let key = cluster.inbox_key(&at.0);
            let opts = StreamReadOptions::default()
                .block(usize::try_from(BLOCK.as_millis()).unwrap_or(1000))
                .count(BATCH);
            let reply: Result<Option<StreamReadReply>, _> =
                conn.xread_options(&[&key], &[&at.1], &opts).await;
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(error = %e, "Inbox reader: XREAD failed; reconnecting");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue 'connect;
                }
            };
            let Some(hub) = hub.upgrade() else { return };
            if let Some(reply) = reply {
                for k in reply.keys {
                    for entry in k.ids {
                        handle(&hub, &mut forwarders, &entry).await;
                        untrimmed += 1;
                        at.1 = entry.id;
                    }
                }
                // Finished forwarders' targets go back to the direct path (bounds the map).
                forwarders.retain(|_, (_, task)| !task.is_finished());
            }
            if untrimmed > 0 && (untrimmed >= TRIM_EVERY || last_trim.elapsed() >= TRIM_AFTER) {
                trim(&cluster, &key, &at.1);
                untrimmed = 0;
                last_trim = std::time::Instant::now();
            }
        }
    }
}

/// Drops the entries up to `id`, handed over (MINID keeps those >= the next id). Not
/// awaited: the next read does not wait for the trim's round trip.
fn trim(cluster: &Cluster, key: &str, id: &str) {
    let mut mgr = cluster.conn.clone();
    let cmd = redis::cmd("XTRIM")
        .arg(key)
        .arg("MINID")
        .arg(next_id(id))
        .clone();
    tokio::spawn(async move {
        let r: Result<i64, _> = cmd.query_async(&mut mgr).await;
        if let Err(e) = r {
            tracing::debug!(error = %e, "Inbox trim failed (the next one covers it)");
        }
    });
}

/// The stream id right after `id` (`ms-seq` → `ms-(seq+1)`).
pub(super) fn next_id(id: &str) -> String {
    match id.split_once('-') {
        Some((ms, seq)) => match seq.parse::<u64>() {
            Ok(s) => format!("{ms}-{}", s.saturating_add(1)),
            Err(_) => id.to_string(),
        },
        None => id.to_string(),
    }
}

async fn handle(hub: &Arc<Hub>, forwarders: &mut Forwarders, entry: &redis::streams::StreamId) {
    let field = |name: &str| entry.get::<String>(name).unwrap_or_default();
    let (to, event_name, body) = (field("t"), field("e"), field("b"));
    let (sender, home) = (field("o"), field("oh"));
    match event_name.as_str() {
        "peerjs" => {
            hub.metrics.cluster_events_in.inc();
            if hub.peerjs.deliver_local(&to, Arc::from(body)) != Some(true) {
                hub.metrics.peerjs_dropped("unreachable");
            }
            return;
        }
        "peerjs-close" => {
            // The id connected again on another instance: this connection is replaced.
            hub.peerjs.close(&to);
            return;
        }
        _ => {}
    }
    let Some(event) = static_event_name(&event_name) else {
        tracing::warn!(event = %crate::protocol::short(&event_name), "Inbox entry with an unknown event dropped");
        return;
    };
    let origin = (!sender.is_empty()).then(|| Origin {
        sender,
        event,
        home: (!home.is_empty()).then(|| Arc::from(home.as_str())),
    });
    let raw = match serde_json::value::RawValue::from_string(body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "Inbox entry with a body that is not JSON dropped");
            return;
        }
    };
    hub.metrics.cluster_events_in.inc();
    let packet = Packet::Emit {
        event,
        body: Body::Remote(raw),
        origin,
    };
    // A forwarder already holds earlier events for this target: behind them.
    if let Some((tx, _)) = forwarders.get(&to) {
        match hub.peers.reserve(&to, packet, &hub.metrics) {
            Ok(r) => match tx.try_send(r) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(r)) => {
                    let origin = r.release();
                    answer(hub, origin.as_ref(), ErrorCode::RateLimited).await;
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(r)) => {
                    // It is draining its last events, or done: behind it, or direct.
                    let prev = forwarders.remove(&to).map(|(_, task)| task);
                    match prev.filter(|t| !t.is_finished()) {
                        Some(prev) => start_forwarder(hub, forwarders, &to, r, Some(prev)),
                        None => direct(hub, forwarders, &to, r).await,
                    }
                }
            },
            Err((refusal, origin)) => answer_refusal(hub, origin.as_ref(), &refusal).await,
        }
        return;
    }
    match hub.peers.reserve(&to, packet, &hub.metrics) {
        Ok(r) => direct(hub, forwarders, &to, r).await,
        Err((refusal, origin)) => answer_refusal(hub, origin.as_ref(), &refusal).await,
    }
}

/// Into the target's queue now, or behind a new forwarder when the queue is full.
async fn direct(hub: &Arc<Hub>, forwarders: &mut Forwarders, to: &str, r: Reserved) {
    match r.try_push() {
        TryPush::Done => {}
        TryPush::Gone(origin) => answer(hub, origin.as_ref(), ErrorCode::UnknownPeer).await,
        TryPush::Full(r) => start_forwarder(hub, forwarders, to, r, None),
    }
}

fn start_forwarder(
    hub: &Arc<Hub>,
    forwarders: &mut Forwarders,
    to: &str,
    first: Reserved,
    prev: Option<JoinHandle<()>>,
) {
    let (tx, rx) = mpsc::channel(FORWARDER_QUEUE);
    // Cannot fail: the channel is new and empty.
    let _ = tx.try_send(first);
    let task = tokio::spawn(forward(Arc::downgrade(hub), rx, prev));
    forwarders.insert(to.to_string(), (tx, task));
}

/// After `prev` (an earlier forwarder of the same target) has ended, waits for room in the
/// target's queue for each event in turn, and ends once empty.
async fn forward(hub: Weak<Hub>, mut rx: mpsc::Receiver<Reserved>, prev: Option<JoinHandle<()>>) {
    if let Some(prev) = prev {
        let _ = prev.await;
    }
    loop {
        let r = match rx.try_recv() {
            Ok(r) => r,
            Err(mpsc::error::TryRecvError::Empty) => {
                // Closed before the last look: anything sent before is still received.
                rx.close();
                match rx.recv().await {
                    Some(r) => r,
                    None => return,
                }
            }
            Err(mpsc::error::TryRecvError::Disconnected) => return,
        };
        let Some(hub) = hub.upgrade() else { return };
        if let Err((refusal, origin)) = r.push_wait().await {
            answer_refusal(&hub, origin.as_ref(), &refusal).await;
        }
    }
}

async fn answer(hub: &Hub, origin: Option<&Origin>, code: ErrorCode) {
    let msg = match code {
        ErrorCode::RateLimited => "the target peer is not reading; event not delivered",
        _ => "the target peer disconnected before delivery",
    };
    if let Some(o) = origin {
        hub.answer_origin(o, code, msg).await;
    }
}

async fn answer_refusal(hub: &Hub, origin: Option<&Origin>, r: &Refusal) {
    if let Some(o) = origin {
        hub.answer_origin(o, r.code, &r.message).await;
    }
}
