//! The state every connection and REST handler shares: configuration, the signaling core
//! (rooms behind one mutex, held only for a synchronous step), the outbound queue of every
//! connected peer, metrics and the authenticator; and the execution of the core's
//! deliveries.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use switchboard_config::Config;
use switchboard_config::ice::{IceUris, ice_uris};

use crate::auth::origin_allowed;
use crate::clock;
use crate::conn_limit::{CONNECT_TIMEOUT, PerIpConnections};
use crate::core::{Core, Delivery, Rules};
use crate::ice::{IceServersResponse, ice_servers};
use crate::live::{Live, needs_restart};
use crate::metrics::Metrics;
use crate::passwords::Passwords;
use crate::peers::{Body, Packet, PeerQueue, Peers};
use crate::protocol::Refusal;
use crate::rooms::Rooms;

/// Shared service state.
pub struct Hub {
    pub cfg: Arc<Config>,
    /// Rooms, membership and the rules ([`Core`]).
    core: Mutex<Core>,
    pub metrics: Metrics,
    /// What SIGHUP can change: auth, TURN secrets, admin token, CORS origins.
    live: RwLock<Arc<Live>>,
    /// Room-password hashing (off the runtime) and the failed-attempt limiter.
    pub passwords: Passwords,
    ice_uris: IceUris,
    /// peer id → that peer's outbound queue.
    pub peers: Peers,
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
    /// Builds the state with in-memory rooms.
    #[must_use]
    pub fn new(cfg: Arc<Config>) -> Arc<Self> {
        let rooms = Rooms::new(
            cfg.signaling.max_peers_per_room,
            cfg.signaling.max_rooms_per_socket,
        )
        .with_max_persistent(cfg.signaling.max_persistent_rooms);
        let rules = Rules {
            max_rooms_per_peer: cfg.signaling.max_rooms_per_socket,
        };
        let core = Mutex::new(Core::new(rules, rooms));
        let live = RwLock::new(Arc::new(Live::from_config(&cfg)));
        let ice_uris = ice_uris(&cfg.turn, &cfg.relay);
        let per_ip = PerIpConnections::new(cfg.signaling.max_connections_per_ip, CONNECT_TIMEOUT);
        Arc::new(Self {
            cfg,
            core,
            metrics: Metrics::new(),
            live,
            passwords: Passwords::default(),
            ice_uris,
            peers: Peers::default(),
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

    /// The core, for one synchronous step (never held across an await).
    pub fn core(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock leaves consistent data (every step is one call).
        self.core
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
            clock::unix_secs(),
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
        self.peers.register(peer_id, queue);
    }

    pub fn unregister_peer(&self, peer_id: &str) {
        self.peers.unregister(peer_id);
    }

    #[must_use]
    pub fn connected_peers(&self) -> usize {
        self.peers.len()
    }

    /// Queues `packet` for `peer_id` (see [`Peers::send_to`]).
    pub async fn send_to(&self, peer_id: &str, packet: Packet) -> Result<(), Refusal> {
        self.peers.send_to(peer_id, packet, &self.metrics).await
    }

    /// Best-effort notification: failures are logged, not answered.
    pub async fn notify(&self, peer_id: &str, event: &'static str, body: Body) {
        if let Err(e) = self.send_to(peer_id, Packet::emit(event, body)).await {
            tracing::debug!(peer = %peer_id, event, code = e.code.as_str(), "Notification not queued");
        }
    }

    /// Queues the core's deliveries in order. A relayed event (with an origin) that cannot
    /// be queued stops nothing else but is the sender's answer: the first such refusal is
    /// returned. Presence events are best effort.
    pub async fn deliver(&self, deliveries: Vec<Delivery>) -> Result<(), Refusal> {
        let mut first_refusal = Ok(());
        for d in deliveries {
            let event = d.event.name();
            let relayed = d.origin.is_some();
            let packet = Packet::Emit {
                event,
                body: Body::Event(d.event),
                origin: d.origin,
            };
            match self.send_to(&d.to, packet).await {
                Ok(()) => {}
                Err(r) if relayed => {
                    if first_refusal.is_ok() {
                        first_refusal = Err(r);
                    }
                }
                Err(e) => {
                    tracing::debug!(peer = %d.to, event, code = e.code.as_str(), "Notification not queued");
                }
            }
        }
        first_refusal
    }

    /// Refreshes the room/peer gauges from the core.
    pub fn refresh_gauges(&self) -> (usize, usize) {
        let (rooms, peers) = self.core().counts();
        self.metrics
            .rooms
            .set(i64::try_from(rooms).unwrap_or(i64::MAX));
        self.metrics
            .peers
            .set(i64::try_from(peers).unwrap_or(i64::MAX));
        (rooms, peers)
    }
}
