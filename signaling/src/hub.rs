//! The state every connection and REST handler shares: configuration, the room store, the
//! outbound queue of every connected peer, metrics and the authenticator.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use socketioxide::adapter::LocalAdapter;
use socketioxide::socket::Socket;
use switchboard_config::ice::{IceUris, ice_uris};
use switchboard_config::{Config, unix_now};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendTimeoutError;

use crate::auth::origin_allowed;
use crate::conn_limit::PerIpConnections;
use crate::ice::{IceServersResponse, ice_servers};
use crate::live::{Live, needs_restart};
use crate::metrics::Metrics;
use crate::passwords::Passwords;
use crate::protocol::{ErrorCode, Refusal};
use crate::rooms::Rooms;
use crate::socket::inbound::QueuedBytes;
use crate::socket::outbound::{Outbound, Queued};
use crate::store::{MemoryStore, RoomStore};

/// How long a sender waits for room in a target's outbound queue (the target's connection
/// is not draining) before the event is refused with `rate-limited`.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A connected peer's outbound queue: its sender, the bytes it holds (capped), and the
/// socket, to close when it stops reading.
#[derive(Clone)]
pub struct PeerQueue {
    pub tx: mpsc::Sender<Queued>,
    pub bytes: Arc<QueuedBytes>,
    pub socket: Weak<Socket<LocalAdapter>>,
}

/// Shared service state.
pub struct Hub {
    pub cfg: Arc<Config>,
    pub store: Arc<dyn RoomStore>,
    pub metrics: Metrics,
    /// What SIGHUP can change: auth, TURN secrets, admin token, CORS origins.
    live: RwLock<Arc<Live>>,
    /// Room-password hashing (off the runtime) and the failed-attempt limiter.
    pub passwords: Passwords,
    ice_uris: IceUris,
    /// peer id → that peer's outbound queue.
    peers: RwLock<HashMap<String, PeerQueue>>,
    /// Source IP → its open Socket.IO connections (`signaling.max_connections_per_ip`).
    per_ip: Mutex<PerIpConnections>,
    ready: AtomicBool,
    started: Instant,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Hub {
    /// Builds the state with the in-memory store.
    #[must_use]
    pub fn new(cfg: Arc<Config>) -> Arc<Self> {
        let rooms = Rooms::new(
            cfg.signaling.max_peers_per_room,
            cfg.signaling.max_rooms_per_socket,
        )
        .with_max_persistent(cfg.signaling.max_persistent_rooms);
        let store = Arc::new(MemoryStore::from_rooms(rooms));
        Self::with_store(cfg, store)
    }

    /// Builds the state on any [`RoomStore`].
    #[must_use]
    pub fn with_store(cfg: Arc<Config>, store: Arc<dyn RoomStore>) -> Arc<Self> {
        let live = RwLock::new(Arc::new(Live::from_config(&cfg)));
        let ice_uris = ice_uris(&cfg.turn, &cfg.relay);
        let per_ip = PerIpConnections::new(
            cfg.signaling.max_connections_per_ip,
            crate::socket::CONNECT_TIMEOUT,
        );
        Arc::new(Self {
            cfg,
            store,
            metrics: Metrics::new(),
            live,
            passwords: Passwords::default(),
            ice_uris,
            peers: RwLock::new(HashMap::new()),
            per_ip: Mutex::new(per_ip),
            ready: AtomicBool::new(true),
            started: Instant::now(),
        })
    }

    /// `false` once shutdown has begun (`/ready` answers 503).
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn set_not_ready(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }

    #[must_use]
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The hot-reloadable settings now in force.
    #[must_use]
    pub fn live(&self) -> Arc<Live> {
        self.live
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Applies the hot-reloadable settings of `new` (SIGHUP); the keys that differ from the
    /// start-up configuration but need a restart.
    pub fn reload(&self, new: &Config) -> Vec<&'static str> {
        let live = Arc::new(Live::from_config(new));
        *self
            .live
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = live;
        needs_restart(&self.cfg, new)
    }

    /// Whether a browser at `origin` may use this server (the live `cors_origins`).
    #[must_use]
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        origin_allowed(&self.live().cors_origins, origin)
    }

    /// A fresh ICE server answer for `user_id`.
    #[must_use]
    pub fn ice_servers(&self, user_id: &str) -> IceServersResponse {
        ice_servers(
            &self.ice_uris,
            self.live().secrets.signing(),
            self.cfg.turn.credential_ttl,
            user_id,
            unix_now(),
        )
    }

    /// A new Engine.IO session from `ip`: `false` at `signaling.max_connections_per_ip`.
    #[must_use]
    pub fn open_session(&self, ip: IpAddr) -> bool {
        self.per_ip_map().handle_new_session(ip, Instant::now())
    }

    /// A Socket.IO connection from `ip` is established: `false` (refuse it) at the cap.
    #[must_use]
    pub fn add_connection(&self, ip: IpAddr) -> bool {
        self.per_ip_map().handle_connected(ip, Instant::now())
    }

    /// Forgets one connection from `ip`.
    pub fn remove_connection(&self, ip: IpAddr) {
        self.per_ip_map().handle_closed(ip, Instant::now());
    }

    fn per_ip_map(&self) -> std::sync::MutexGuard<'_, PerIpConnections> {
        self.per_ip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn register_peer(&self, peer_id: &str, queue: PeerQueue) {
        self.peers_mut().insert(peer_id.to_string(), queue);
    }

    pub fn unregister_peer(&self, peer_id: &str) {
        self.peers_mut().remove(peer_id);
    }

    #[must_use]
    pub fn connected_peers(&self) -> usize {
        self.peers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    fn peers_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, PeerQueue>> {
        self.peers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn queue_of(&self, peer_id: &str) -> Option<PeerQueue> {
        self.peers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(peer_id)
            .cloned()
    }

    /// Queues `item` for `peer_id`, waiting (bounded by [`DELIVERY_TIMEOUT`]) while its queue
    /// is full: backpressure on the sender rather than loss. A peer whose queue would pass
    /// its byte cap is not reading: it is disconnected (logged and counted), so a slow reader
    /// cannot grow the server's memory.
    pub async fn send_to(&self, peer_id: &str, item: Outbound) -> Result<(), Refusal> {
        let Some(q) = self.queue_of(peer_id) else {
            return Err(Refusal::new(ErrorCode::UnknownPeer, "no such peer"));
        };
        let size = item.encoded_size();
        if !q.bytes.try_add(size) {
            self.close_slow_reader(peer_id, &q);
            return Err(Refusal::new(
                ErrorCode::UnknownPeer,
                "the target peer was not reading and was disconnected",
            ));
        }
        let res =
            q.tx.send_timeout(Queued { item, size }, DELIVERY_TIMEOUT)
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

    fn close_slow_reader(&self, peer_id: &str, q: &PeerQueue) {
        // Once per peer: later sends find it unregistered or its socket gone.
        self.peers_mut().remove(peer_id);
        self.metrics.slow_readers_closed.inc();
        tracing::warn!(
            peer = %peer_id,
            cap_bytes = q.bytes.max(),
            "Slow reader disconnected: its outbound queue passed its byte cap"
        );
        if let Some(s) = q.socket.upgrade()
            && let Err(e) = s.disconnect()
        {
            tracing::debug!(peer = %peer_id, error = %e, "Slow reader already gone");
        }
    }

    /// Best-effort notification (presence events): failures are logged, not answered.
    pub async fn notify(&self, peer_id: &str, event: &'static str, data: Value) {
        if let Err(e) = self.send_to(peer_id, Outbound::emit(event, data)).await {
            tracing::debug!(peer = %peer_id, event, code = e.code.as_str(), "Notification not queued");
        }
    }

    /// Tells `to` that `left` left `room_id`.
    pub async fn notify_left(&self, to: &[String], room_id: &str, left: &str) {
        for peer in to {
            self.notify(
                peer,
                "user-left",
                json!({"roomId": room_id, "peerId": left}),
            )
            .await;
        }
    }

    /// Refreshes the room/peer gauges from the store.
    pub async fn refresh_gauges(&self) -> (usize, usize) {
        let (rooms, peers) = self.store.counts().await;
        self.metrics
            .rooms
            .set(i64::try_from(rooms).unwrap_or(i64::MAX));
        self.metrics
            .peers
            .set(i64::try_from(peers).unwrap_or(i64::MAX));
        (rooms, peers)
    }
}
