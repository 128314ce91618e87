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
use crate::cluster::{Cluster, Remote};
use crate::conn_limit::{CONNECT_TIMEOUT, PerIpConnections};
use crate::core::rules::Then;
use crate::core::{
    ClientEvent, Core, Delivery, JoinRoom, Origin, Outcome, PasswordStep, PeerInfo, Rules, Step,
};
use crate::ice::{IceServersResponse, ice_servers};
use crate::live::{Live, needs_restart};
use crate::metrics::Metrics;
use crate::passwords::Passwords;
use crate::peers::{Body, Packet, PeerQueue, Peers};
use crate::protocol::{ErrorCode, Refusal};
use crate::rooms::{PasswordHash, RoomInfo, Rooms, TooManyRooms};

/// Where rooms and membership live.
enum Shared {
    /// One instance: in memory, one mutex held for one synchronous step.
    Local(Mutex<Core>),
    /// Several instances: in Redis ([`crate::cluster`]); the same rules around each step.
    Cluster { cluster: Arc<Cluster>, rules: Rules },
}

/// Why a REST room operation failed.
#[derive(Debug)]
pub enum RoomsError {
    TooMany(TooManyRooms),
    /// Redis could not be reached.
    Unavailable,
}

/// Shared service state.
pub struct Hub {
    pub cfg: Arc<Config>,
    /// Rooms, membership and the rules.
    shared: Shared,
    pub metrics: Metrics,
    /// What SIGHUP can change: auth, TURN secrets, admin token, CORS origins.
    live: RwLock<Arc<Live>>,
    /// Room-password hashing (off the runtime) and the failed-attempt limiter.
    pub passwords: Passwords,
    ice_uris: IceUris,
    /// peer id → that peer's outbound queue.
    pub peers: Peers,
    /// The PeerJS endpoint's clients and queues (`[signaling.peerjs]`).
    pub peerjs: crate::peerjs::Registry,
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
        Self::build(cfg, Shared::Local(Mutex::new(Core::new(rules, rooms))))
    }

    /// Builds the state of one instance of a cluster (rooms in Redis), and starts the
    /// cluster's heartbeat, reaper and inbox reader.
    #[must_use]
    pub fn with_cluster(cfg: Arc<Config>, cluster: Arc<Cluster>) -> Arc<Self> {
        let rules = Rules {
            max_rooms_per_peer: cfg.signaling.max_rooms_per_socket,
        };
        let hub = Self::build(
            cfg,
            Shared::Cluster {
                cluster: cluster.clone(),
                rules,
            },
        );
        hub.metrics.redis_up.set(i64::from(cluster.is_up()));
        cluster.spawn_tasks(&hub);
        hub
    }

    fn build(cfg: Arc<Config>, shared: Shared) -> Arc<Self> {
        let live = RwLock::new(Arc::new(Live::from_config(&cfg)));
        let ice_uris = ice_uris(&cfg.turn, &cfg.relay);
        let per_ip = PerIpConnections::new(cfg.signaling.max_connections_per_ip, CONNECT_TIMEOUT);
        Arc::new(Self {
            cfg,
            shared,
            metrics: Metrics::new(),
            live,
            passwords: Passwords::default(),
            ice_uris,
            peers: Peers::default(),
            peerjs: crate::peerjs::Registry::default(),
            per_ip: Mutex::new(per_ip),
            ready: AtomicBool::new(true),
            started: Instant::now(),
        })
    }

    /// `false` once shutdown has begun.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Whether `/ready` answers 200: not shutting down, and in multi-instance mode Redis
    /// answers and this instance's registration is valid. The reason when not.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if !self.is_ready() {
            return Err("shutting down");
        }
        match self.cluster() {
            Some(c) if !c.is_up() => Err("redis unreachable"),
            _ => Ok(()),
        }
    }

    /// The cluster, in multi-instance mode.
    #[must_use]
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match &self.shared {
            Shared::Local(_) => None,
            Shared::Cluster { cluster, .. } => Some(cluster),
        }
    }

    pub fn set_not_ready(&self) {
        self.ready.store(false, Ordering::SeqCst);
    }

    #[must_use]
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The in-memory core, for one synchronous step (never held across an await); `None`
    /// in multi-instance mode.
    fn local(&self) -> Option<MutexGuard<'_, Core>> {
        match &self.shared {
            // A panic while holding the lock leaves consistent data (every step is one call).
            Shared::Local(core) => Some(
                core.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            ),
            Shared::Cluster { .. } => None,
        }
    }

    /// Runs one client event from `peer` at `now_ms`: one step of the core, in memory or in
    /// Redis. In Redis mode the deliveries carry their targets' instances.
    pub async fn handle_event(&self, peer: &PeerInfo, event: ClientEvent, now_ms: u64) -> Outcome {
        let (cluster, rules) = match &self.shared {
            Shared::Local(core) => {
                return core
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .handle(peer, event, now_ms);
            }
            Shared::Cluster { cluster, rules } => (cluster, rules),
        };
        let plan = match rules.plan(peer, event, now_ms) {
            Ok(p) => p,
            Err(r) => return Outcome::refused(r),
        };
        // A relayed event to another instance is queued there by the reach step itself.
        let relay = match (&plan.step, &plan.then) {
            (Step::Reach { .. }, Then::Relay { event, .. }) => serde_json::to_string(&**event)
                .ok()
                .map(|body| (event.name(), body)),
            _ => None,
        };
        let done = cluster.step(&peer.id, &plan.step, relay).await;
        let mut outcome = rules.finish(peer, plan.then, done.result);
        if done.sent {
            outcome.deliveries.clear();
            self.metrics.cluster_events_out.inc();
        }
        done.homes.route(&mut outcome.deliveries);
        outcome
    }

    /// The password work a join needs before [`Hub::handle_event`].
    pub async fn password_step(
        &self,
        peer: &PeerInfo,
        join: &JoinRoom,
    ) -> Result<PasswordStep, Refusal> {
        let cluster = match &self.shared {
            Shared::Local(core) => {
                return core
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .password_step(peer, join);
            }
            Shared::Cluster { cluster, rules } => {
                crate::core::rules::join_user_id(peer, join.user_id.as_deref())?;
                let _ = rules;
                cluster
            }
        };
        let password = join.given_password().map(str::to_string);
        cluster
            .password_step(join.room_id.as_str(), password)
            .await
            .map_err(|e| self.refusal(e))
    }

    fn refusal(&self, e: crate::core::StepError) -> Refusal {
        match &self.shared {
            Shared::Local(core) => core
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .rules()
                .refusal(e),
            Shared::Cluster { rules, .. } => rules.refusal(e),
        }
    }

    /// Whether the peer is in at least one room (owed credential refreshes). When Redis
    /// cannot say: `true` (the refresh checks again).
    pub async fn in_any_room(&self, peer_id: &str) -> bool {
        if let Some(core) = self.local() {
            return core.in_any_room(peer_id);
        }
        match self.cluster() {
            Some(c) => c.in_any_room(peer_id).await.unwrap_or(true),
            None => false,
        }
    }

    /// The peer disconnected: it leaves every room; `user-left` for its room-mates. In Redis
    /// mode a removal that fails is retried by the heartbeat once Redis answers.
    pub async fn handle_disconnect(&self, peer: &PeerInfo) -> Vec<Delivery> {
        if let Some(mut core) = self.local() {
            return core.handle_disconnect(peer);
        }
        let Some(cluster) = self.cluster() else {
            return Vec::new();
        };
        match cluster.leave_all(&peer.id).await {
            Ok((lefts, homes)) => {
                let mut out: Vec<Delivery> = lefts
                    .iter()
                    .flat_map(|l| crate::core::rules::user_left(&peer.id, l))
                    .collect();
                homes.route(&mut out);
                out
            }
            Err(()) => {
                cluster.defer_leave(&peer.id);
                Vec::new()
            }
        }
    }

    /// REST `POST /api/rooms`: a persistent room.
    pub async fn create_room(
        &self,
        id: String,
        name: Option<String>,
        max_peers: Option<usize>,
        password: Option<PasswordHash>,
        now_ms: u64,
    ) -> Result<RoomInfo, RoomsError> {
        if let Some(mut core) = self.local() {
            return core
                .create_room(id, name, max_peers, password, now_ms)
                .map_err(RoomsError::TooMany);
        }
        let Some(cluster) = self.cluster() else {
            return Err(RoomsError::Unavailable);
        };
        cluster
            .create_room(&id, name.as_deref(), max_peers, password.as_ref(), now_ms)
            .await
            .map_err(|e| match e {
                crate::core::StepError::Join(_) => {
                    RoomsError::TooMany(TooManyRooms(self.cfg.signaling.max_persistent_rooms))
                }
                _ => RoomsError::Unavailable,
            })
    }

    /// REST `GET /api/rooms/{id}`.
    pub async fn get_room(&self, id: &str) -> Result<Option<RoomInfo>, RoomsError> {
        if let Some(core) = self.local() {
            return Ok(core.get_room(id));
        }
        match self.cluster() {
            Some(c) => c.get_room(id).await.map_err(|_| RoomsError::Unavailable),
            None => Ok(None),
        }
    }

    /// REST `GET /api/rooms`: every room (of the cluster in Redis mode), sorted by id.
    pub async fn list_rooms(&self) -> Result<Vec<RoomInfo>, RoomsError> {
        if let Some(core) = self.local() {
            return Ok(core.list_rooms());
        }
        match self.cluster() {
            Some(c) => c.list_rooms().await.map_err(|_| RoomsError::Unavailable),
            None => Ok(Vec::new()),
        }
    }

    /// REST `DELETE /api/rooms/{id}`: `user-left` deliveries for every member (`None`: no
    /// such room).
    pub async fn delete_room(&self, id: &str) -> Result<Option<Vec<Delivery>>, RoomsError> {
        if let Some(mut core) = self.local() {
            return Ok(core.delete_room(id));
        }
        let Some(cluster) = self.cluster() else {
            return Ok(None);
        };
        let Some((members, homes)) = cluster
            .delete_room(id)
            .await
            .map_err(|_| RoomsError::Unavailable)?
        else {
            return Ok(None);
        };
        let mut out = crate::core::delete_deliveries(id, &members);
        homes.route(&mut out);
        Ok(Some(out))
    }

    /// Removes persistent rooms empty for `idle_ms`; their ids.
    pub async fn expire_idle(&self, now_ms: u64, idle_ms: u64) -> Vec<String> {
        if let Some(mut core) = self.local() {
            return core.expire_idle(now_ms, idle_ms);
        }
        match self.cluster() {
            Some(c) => c.expire_idle(now_ms, idle_ms).await,
            None => Vec::new(),
        }
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

    /// Tells the sender of an undelivered relayed event (`error {event, code, message}`),
    /// on whichever instance it is.
    pub async fn answer_origin(&self, o: &Origin, code: ErrorCode, message: &str) {
        self.metrics.error(code.as_str());
        let body = Refusal::new(code, message).event(o.event);
        match (&o.home, self.cluster()) {
            (Some(home), Some(cluster)) if **home != *cluster.instance() => {
                let remote = Remote {
                    home: home.clone(),
                    to: o.sender.clone(),
                    event: "error",
                    body: body.to_string(),
                    origin: None,
                };
                if cluster.push(&[remote]).await.is_err() {
                    tracing::warn!(peer = %o.sender, "Delivery error not sent to the sender's instance");
                }
            }
            _ => self.notify(&o.sender, "error", Body::Json(body)).await,
        }
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
        let me = self.cluster().map(|c| c.instance());
        let mut remote: Vec<Remote> = Vec::new();
        let mut encoded: Option<(Arc<crate::core::ServerEvent>, String)> = None;
        for d in deliveries {
            if let (Some(home), Some(me)) = (&d.home, &me)
                && **home != **me
            {
                // Encoded once per fan-out (every target shares the event).
                let body = match &encoded {
                    Some((e, b)) if Arc::ptr_eq(e, &d.event) => b.clone(),
                    _ => {
                        let b = serde_json::to_string(&*d.event).unwrap_or_default();
                        encoded = Some((d.event.clone(), b.clone()));
                        b
                    }
                };
                remote.push(Remote {
                    home: home.clone(),
                    to: d.to,
                    event: d.event.name(),
                    body,
                    origin: d.origin.map(|mut o| {
                        o.home = Some(me.clone());
                        o
                    }),
                });
                continue;
            }
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
        if let (false, Some(cluster)) = (remote.is_empty(), self.cluster()) {
            let n = remote.len() as u64;
            match cluster.push(&remote).await {
                Ok(statuses) => {
                    self.metrics.cluster_events_out.inc_by(n);
                    for (r, status) in remote.iter().zip(statuses) {
                        let Some(code) = status else { continue };
                        let refusal = match code.as_str() {
                            "rate-limited" => Refusal::new(
                                ErrorCode::RateLimited,
                                "the target's signaling instance has too many events waiting",
                            ),
                            _ => Refusal::new(ErrorCode::UnknownPeer, "peer has left"),
                        };
                        if r.origin.is_some() && first_refusal.is_ok() {
                            first_refusal = Err(refusal);
                        }
                    }
                }
                Err(()) => {
                    if remote.iter().any(|r| r.origin.is_some()) && first_refusal.is_ok() {
                        first_refusal = Err(Refusal::new(
                            ErrorCode::Unavailable,
                            "the shared state could not be reached; the event was not delivered",
                        ));
                    }
                }
            }
        }
        first_refusal
    }

    /// Refreshes the room/peer gauges (the cluster's in Redis mode; the last known figures
    /// when Redis does not answer).
    pub async fn refresh_gauges(&self) -> (usize, usize) {
        let counts = self.local().map(|core| core.counts());
        let (rooms, peers) = match (counts, self.cluster()) {
            (Some(c), _) => c,
            (None, Some(cluster)) => match cluster.counts().await {
                Some((rooms, peers, instances)) => {
                    self.metrics
                        .instances
                        .set(i64::try_from(instances).unwrap_or(i64::MAX));
                    (rooms, peers)
                }
                None => (
                    usize::try_from(self.metrics.rooms.get()).unwrap_or(0),
                    usize::try_from(self.metrics.peers.get()).unwrap_or(0),
                ),
            },
            (None, None) => (0, 0),
        };
        self.metrics
            .rooms
            .set(i64::try_from(rooms).unwrap_or(i64::MAX));
        self.metrics
            .peers
            .set(i64::try_from(peers).unwrap_or(i64::MAX));
        (rooms, peers)
    }
}
