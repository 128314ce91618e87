//! Multi-instance mode (`signaling.redis_url`, SPEC section 4): several signaling processes
//! act as one through Redis.
//!
//! ```text
//!  instance A                         Redis                          instance B
//!  session ─ plan ─▶ EVALSHA state.lua (one atomic step) ─▶ answer
//!                    └─ target on B: XADD P:q:B ─────────▶ inbox reader ─▶ target's queue
//!  error event ◀──── inbox reader ◀── XADD P:q:A ◀──────── undeliverable: answer to sender
//! ```
//!
//! - **State** (rooms, membership, capacity, passwords as argon2 PHC strings, peer state,
//!   REST rooms) lives in Redis; every [`Step`] of the core is one call of one Lua script
//!   (`cluster/state.lua`), so capacity and membership are atomic across instances. The
//!   rules around the step ([`crate::core::Rules`]) are the same code as in memory.
//! - **Events between instances** go through a Redis Stream per instance (its inbox), not
//!   pub/sub: an entry stays until the owner has handed it to the target's queue (trimmed in
//!   batches), so a reader that reconnects resumes where it was, and entries left by a dead
//!   instance are answered to their senders. A relayed event's reach check and its XADD are one script call, so it is
//!   one round trip and per (sender, target) order is the stream's order. Each inbox is
//!   capped ([`MAX_INBOX`]): a full one answers `rate-limited`.
//! - **Liveness**: each instance registers with a TTL ([`REGISTRATION_TTL`]) refreshed every
//!   [`HEARTBEAT`]; every instance looks for dead ones every [`REAP_EVERY`] and the first to
//!   claim one removes its peers (`user-left` to their room-mates). Bound: a killed
//!   instance's peers are gone everywhere within TTL + one scan + the time to run it, about
//!   12 s (stated: 15 s).
//! - **Redis lost**: every event that needs it is answered `unavailable`, `/ready` is 503.
//!   An instance whose registration expired meanwhile (or was wiped by a Redis restart
//!   without persistence) fences itself: the scripts refuse its writes, it disconnects its
//!   sockets (their peers may already have been removed by others) and registers again under
//!   a new id.

mod inbox;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::core::{Delivery, Origin, PasswordStep, Step, StepError, StepOutput};
use crate::hub::Hub;
use crate::rooms::{JoinError, Joined, Left, PasswordHash, Peer, RoomInfo, RoomLock};

/// An instance's registration lives this long without a heartbeat.
pub const REGISTRATION_TTL: Duration = Duration::from_secs(10);
/// How often an instance refreshes its registration.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often each instance looks for dead ones.
pub const REAP_EVERY: Duration = Duration::from_secs(1);
/// The bound we state for removing a dead instance's peers everywhere else.
pub const DEAD_INSTANCE_BOUND: Duration = Duration::from_secs(15);
/// Longest a Redis command may take before it counts as failed (`unavailable`).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Entries an instance's inbox stream may hold unread; beyond, senders get `rate-limited`.
/// Entries are events of at most twice `max_payload_bytes`, and the owner drains its inbox
/// into its peers' byte-capped queues as fast as it reads, so it stays near empty unless
/// the instance is stalled.
pub const MAX_INBOX: usize = 20_000;

const SCRIPT: &str = include_str!("cluster/state.lua");

/// Script calls waiting for the committer; beyond, a call fails at once (`unavailable`).
const MAX_WAITING_CALLS: usize = 65_536;
/// Most script calls sent in one pipeline.
const MAX_BATCH: usize = 256;
/// Pipelines sent before the first answers: while they are out, new calls gather into the
/// next one. Calls of one session are never in two at once (each waits for its answer).
const BATCHES_IN_FLIGHT: usize = 2;

/// One call of the script, waiting for the committer.
struct Call {
    argv: Vec<String>,
    tx: tokio::sync::oneshot::Sender<redis::RedisResult<String>>,
}

/// Group commit: sends every call waiting as one pipeline (one write, one read, one wake-up
/// of Redis for the lot) while the previous one is in flight, so the cost per call falls as
/// the load rises instead of paying a system call and a context switch each. A script
/// Redis no longer has (restarted: NOSCRIPT) is loaded again and its calls retried.
async fn commit(conn: ConnectionManager, sha: String, mut rx: tokio::sync::mpsc::Receiver<Call>) {
    let in_flight = Arc::new(tokio::sync::Semaphore::new(BATCHES_IN_FLIGHT));
    let sha: Arc<str> = Arc::from(sha);
    while let Some(first) = rx.recv().await {
        // Wait for a slot first: calls arriving meanwhile join this batch.
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let mut batch: Vec<Call> = Vec::with_capacity(MAX_BATCH);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let (conn, sha) = (conn.clone(), sha.clone());
        tokio::spawn(async move {
            run_and_answer(&conn, &sha, batch).await;
            drop(permit);
        });
    }
}

/// Runs one batch (loading the script again on NOSCRIPT) and answers each call.
async fn run_and_answer(conn: &ConnectionManager, sha: &str, mut batch: Vec<Call>) {
    let mut results = run_batch(conn, sha, &batch).await;
    let no_script = matches!(&results, Ok(r) if r.iter().any(|x| matches!(x, Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript))));
    if no_script {
        let mut c = conn.clone();
        let loaded: redis::RedisResult<String> = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(SCRIPT)
            .query_async(&mut c)
            .await;
        if let Err(e) = loaded {
            tracing::warn!(error = %e, "Could not load the state script into Redis");
        }
        results = run_batch(conn, sha, &batch).await;
    }
    match results {
        Ok(answers) => {
            for (call, answer) in batch.drain(..).zip(answers) {
                let _ = call.tx.send(answer);
            }
        }
        Err(e) => {
            for call in batch.drain(..) {
                let _ = call.tx.send(Err(e.clone()));
            }
        }
    }
}

async fn run_batch(
    conn: &ConnectionManager,
    sha: &str,
    batch: &[Call],
) -> redis::RedisResult<Vec<redis::RedisResult<String>>> {
    let mut pipe = redis::pipe();
    pipe.ignore_errors();
    for call in batch {
        pipe.cmd("EVALSHA").arg(sha).arg(0).arg(&call.argv);
    }
    let mut c = conn.clone();
    pipe.query_async(&mut c).await
}

/// A Redis failure or a refusal from the script.
#[derive(Debug)]
enum Fail {
    /// Redis could not be reached, or answered with an error.
    Redis(String),
    /// The script refused (`room-full`, `not-in-room`, ...).
    Refused(String),
}

/// The connection to the shared state, this instance's identity in it, and its health.
pub struct Cluster {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    /// This instance's id; a new one after fencing.
    instance: RwLock<Arc<str>>,
    /// The last heartbeat succeeded and the registration is valid.
    up: AtomicBool,
    default_max_peers: usize,
    max_rooms_per_peer: usize,
    max_persistent: usize,
    /// Operations for the committer ([`commit`]): every call of the script goes through it.
    calls: tokio::sync::mpsc::Sender<Call>,
    /// Peers that disconnected while Redis was unreachable: removed from their rooms once
    /// it answers (bounded: beyond, the instance fences itself instead).
    pending_leaves: std::sync::Mutex<Vec<String>>,
}

/// Most disconnects kept for a retry while Redis is unreachable.
const MAX_PENDING_LEAVES: usize = 100_000;

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("prefix", &self.prefix)
            .field("instance", &self.instance())
            .finish_non_exhaustive()
    }
}

/// A room member as the script reports it.
#[derive(Debug, Deserialize)]
struct Member {
    id: String,
    #[serde(default)]
    home: String,
    #[serde(default)]
    peer: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

impl Member {
    /// The stored peer object with its current state.
    fn to_peer(&self) -> Option<Peer> {
        let mut p: Peer = serde_json::from_str(self.peer.as_deref()?).ok()?;
        if let Some(s) = &self.state {
            p.state = serde_json::from_str(s).unwrap_or(Value::Object(serde_json::Map::new()));
        }
        Some(p)
    }
}

#[derive(Debug, Deserialize)]
struct LeftRaw {
    room: String,
    #[serde(default, deserialize_with = "seq")]
    rest: Vec<Member>,
    removed: bool,
}

#[derive(Debug, Deserialize)]
struct RoomRaw {
    id: String,
    name: String,
    max: String,
    locked: u8,
    persist: String,
    created: String,
    #[serde(default, deserialize_with = "seq")]
    members: Vec<Member>,
}

impl RoomRaw {
    fn info(&self) -> RoomInfo {
        RoomInfo {
            id: self.id.clone(),
            name: (!self.name.is_empty()).then(|| self.name.clone()),
            max_peers: self.max.parse().unwrap_or(0),
            has_password: self.locked == 1,
            persistent: self.persist == "1",
            created_at: self.created.parse().unwrap_or(0),
            peers: self.members.iter().filter_map(Member::to_peer).collect(),
        }
    }
}

/// cjson encodes an empty Lua table as `{}`: read it as an empty list.
fn seq<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    match Value::deserialize(d)? {
        Value::Array(a) => a
            .into_iter()
            .map(|v| serde_json::from_value(v).map_err(serde::de::Error::custom))
            .collect(),
        Value::Object(o) if o.is_empty() => Ok(Vec::new()),
        Value::Null => Ok(Vec::new()),
        other => Err(serde::de::Error::custom(format!(
            "expected a list, got {other}"
        ))),
    }
}

/// One event for a peer on another instance.
#[derive(Debug, Clone)]
pub struct Remote {
    pub home: Arc<str>,
    pub to: String,
    pub event: &'static str,
    pub body: String,
    pub origin: Option<Origin>,
}

/// Whether a step's result came with the homes of the peers it names.
#[derive(Debug, Default)]
pub struct Homes(pub HashMap<String, Arc<str>>);

impl Homes {
    fn add(&mut self, m: &Member) {
        if !m.home.is_empty() {
            self.0.insert(m.id.clone(), Arc::from(m.home.as_str()));
        }
    }

    /// Sets each delivery's home.
    pub fn route(&self, deliveries: &mut [Delivery]) {
        for d in deliveries {
            if d.home.is_none() {
                d.home = self.0.get(&d.to).cloned();
            }
        }
    }
}

/// What a cluster step returns besides its output.
#[derive(Debug)]
pub struct StepDone {
    pub result: Result<StepOutput, StepError>,
    pub homes: Homes,
    /// A relayed event was already queued on the target's instance by the step itself.
    pub sent: bool,
}

impl Cluster {
    /// Connects (bounded by [`COMMAND_TIMEOUT`] per try, a few tries) and registers.
    pub async fn connect(cfg: &switchboard_config::Config) -> anyhow::Result<Arc<Self>> {
        let sig = &cfg.signaling;
        let url = sig
            .redis_url
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("signaling.redis_url is not set"))?;
        // rediss:// uses rustls; it asks for the process-wide provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = match &sig.redis_ca_file {
            None => redis::Client::open(url.expose_secret()),
            Some(ca) => {
                let pem = std::fs::read(ca).map_err(|e| {
                    anyhow::anyhow!("signaling.redis_ca_file: cannot read {}: {e}", ca.display())
                })?;
                redis::Client::build_with_tls(
                    url.expose_secret(),
                    redis::TlsCertificates {
                        client_tls: None,
                        root_cert: Some(pem),
                    },
                )
            }
        }
        .map_err(|e| anyhow::anyhow!("signaling.redis_url: {e}"))?;
        let mgr_cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let mut last = None;
        let mut conn = None;
        for _ in 0..5 {
            match ConnectionManager::new_with_config(client.clone(), mgr_cfg.clone()).await {
                Ok(c) => {
                    conn = Some(c);
                    break;
                }
                Err(e) => {
                    last = Some(e);
                    // Start-up retry pacing, not synchronisation.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        let Some(conn) = conn else {
            anyhow::bail!(
                "could not reach Redis at signaling.redis_url ({}): {}",
                redacted(url.expose_secret()),
                last.map_or_else(|| "no answer".to_string(), |e| e.to_string())
            );
        };
        let (calls, calls_rx) = tokio::sync::mpsc::channel(MAX_WAITING_CALLS);
        let sha = redis::Script::new(SCRIPT).get_hash().to_string();
        tokio::spawn(commit(conn.clone(), sha, calls_rx));
        let me = Arc::new(Self {
            client,
            conn,
            calls,
            prefix: sig.redis_prefix.clone(),
            instance: RwLock::new(new_instance_id()),
            up: AtomicBool::new(false),
            default_max_peers: sig.max_peers_per_room,
            max_rooms_per_peer: sig.max_rooms_per_socket,
            max_persistent: sig.max_persistent_rooms,
            pending_leaves: std::sync::Mutex::new(Vec::new()),
        });
        me.register()
            .await
            .map_err(|e| anyhow::anyhow!("could not register in Redis: {e:?}"))?;
        tracing::info!(
            redis = %redacted(url.expose_secret()),
            prefix = %me.prefix,
            instance = %me.instance(),
            "Multi-instance mode: state in Redis"
        );
        Ok(me)
    }

    /// This instance's current id.
    #[must_use]
    pub fn instance(&self) -> Arc<str> {
        self.instance
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Redis answers and this instance's registration is valid.
    #[must_use]
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn inbox_key(&self, instance: &str) -> String {
        format!("{}:q:{instance}", self.prefix)
    }

    /// Runs one operation of the script; its JSON answer.
    async fn call<T: DeserializeOwned>(&self, op: &str, args: &[&str]) -> Result<T, Fail> {
        // While Redis is known to be down, answer at once (`unavailable`) instead of making
        // every event wait for a timeout; the heartbeat probes and clears it.
        if !self.is_up() && !matches!(op, "heartbeat" | "register" | "unregister") {
            return Err(Fail::Redis("redis is unreachable".into()));
        }
        let instance = self.instance();
        let mut argv = Vec::with_capacity(3 + args.len());
        argv.push(op.to_string());
        argv.push(self.prefix.clone());
        argv.push(instance.to_string());
        argv.extend(args.iter().map(|a| (*a).to_string()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.calls.try_send(Call { argv, tx }).is_err() {
            return Err(Fail::Redis("too many Redis operations waiting".into()));
        }
        let answer = rx.await.unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::Client,
                "committer gone",
            )))
        });
        let raw: String = match answer {
            Ok(r) => r,
            Err(e) => {
                // Only a lost connection marks Redis down; a script error (a bug, or Redis
                // out of memory) fails this one call.
                if e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                {
                    self.up.store(false, Ordering::SeqCst);
                } else {
                    tracing::warn!(op, error = %e, "Redis refused a state operation");
                }
                return Err(Fail::Redis(e.to_string()));
            }
        };
        let v: Value = serde_json::from_str(&raw).map_err(|e| Fail::Redis(e.to_string()))?;
        if let Some(code) = v.get("err").and_then(Value::as_str) {
            return Err(Fail::Refused(code.to_string()));
        }
        serde_json::from_value(v).map_err(|e| Fail::Redis(format!("{op}: {e}")))
    }

    async fn register(&self) -> Result<(), Fail> {
        let ttl = ms(REGISTRATION_TTL);
        let now = crate::clock::unix_ms().to_string();
        let _: Value = self.call("register", &[&ttl, &now]).await?;
        self.up.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Removes this instance's registration (graceful shutdown, after its sessions left):
    /// another instance reaps what is left within one scan.
    pub async fn unregister(&self) {
        if let Err(e) = self.call::<Value>("unregister", &[]).await {
            tracing::warn!(error = ?e, "Could not remove this instance's registration");
        }
        self.up.store(false, Ordering::SeqCst);
    }

    /// Runs `step` for `peer_id`. For a relayed event, `relay` is its name and body: when
    /// the target is on another instance the script queues it there in the same call.
    pub async fn step(
        &self,
        peer_id: &str,
        step: &Step,
        relay: Option<(&'static str, String)>,
    ) -> StepDone {
        let mut homes = Homes::default();
        let mut sent = false;
        let result = match step {
            Step::Join(req) => {
                let peer_json = serde_json::to_string(&req.peer).unwrap_or_default();
                let max = self.default_max_peers.to_string();
                let rooms = self.max_rooms_per_peer.to_string();
                let verified = req.verified.as_ref().map_or("", PasswordHash::as_phc);
                let new_pw = req.new_password.as_ref().map_or("", PasswordHash::as_phc);
                let now = req.peer.joined_at.to_string();
                #[derive(Deserialize)]
                struct J {
                    new: u8,
                    polite: u8,
                    me: Option<Member>,
                    #[serde(default, deserialize_with = "seq")]
                    others: Vec<Member>,
                }
                let r: Result<J, Fail> = self
                    .call(
                        "join",
                        &[
                            &req.room_id,
                            &req.peer.peer_id,
                            &peer_json,
                            &max,
                            &rooms,
                            verified,
                            new_pw,
                            &now,
                        ],
                    )
                    .await;
                r.map_err(|f| step_error(&f)).map(|j| {
                    for m in &j.others {
                        homes.add(m);
                    }
                    let me =
                        j.me.as_ref()
                            .and_then(Member::to_peer)
                            .unwrap_or_else(|| req.peer.clone());
                    StepOutput::Joined(Joined {
                        me,
                        others: j.others.iter().filter_map(Member::to_peer).collect(),
                        polite: j.polite == 1,
                        is_new: j.new == 1,
                    })
                })
            }
            Step::Leave { room_id } => {
                #[derive(Deserialize)]
                struct L {
                    #[serde(deserialize_with = "seq")]
                    left: Vec<LeftRaw>,
                }
                let r: Result<L, Fail> = self.call("leave", &[room_id.as_str(), peer_id]).await;
                match r {
                    Ok(l) => l
                        .left
                        .into_iter()
                        .next()
                        .map(|left| StepOutput::Left(to_left(left, &mut homes)))
                        .ok_or(StepError::NotInRoom),
                    Err(f) => Err(step_error(&f)),
                }
            }
            Step::Reach { target, room_id } => {
                #[derive(Deserialize)]
                struct R {
                    home: String,
                    sent: u8,
                }
                let maxq = MAX_INBOX.to_string();
                let room = room_id.as_deref().unwrap_or("");
                let mut args = vec![peer_id, target.as_str(), room, maxq.as_str()];
                if let Some((event, body)) = &relay {
                    args.push(event);
                    args.push(body);
                }
                match self.call::<R>("reach", &args).await {
                    Ok(r) => {
                        homes.0.insert(target.clone(), Arc::from(r.home.as_str()));
                        sent = r.sent == 1;
                        Ok(StepOutput::Reached)
                    }
                    Err(f) => Err(step_error(&f)),
                }
            }
            Step::Others { room_id } => self
                .others("others", &[peer_id, room_id.as_str()], &mut homes)
                .await
                .map(StepOutput::Others),
            Step::SetState { room_id, state } => {
                let state = state.to_string();
                self.others("state", &[peer_id, room_id.as_str(), &state], &mut homes)
                    .await
                    .map(StepOutput::Others)
            }
        };
        StepDone {
            result,
            homes,
            sent,
        }
    }

    async fn others(
        &self,
        op: &str,
        args: &[&str],
        homes: &mut Homes,
    ) -> Result<Vec<String>, StepError> {
        #[derive(Deserialize)]
        struct O {
            #[serde(deserialize_with = "seq")]
            others: Vec<Member>,
        }
        let o: O = self.call(op, args).await.map_err(|f| step_error(&f))?;
        Ok(o.others
            .into_iter()
            .map(|m| {
                homes.add(&m);
                m.id
            })
            .collect())
    }

    /// The peer leaves every room (disconnect, or its instance was reaped).
    pub async fn leave_all(&self, peer_id: &str) -> Result<(Vec<Left>, Homes), ()> {
        #[derive(Deserialize)]
        struct L {
            #[serde(deserialize_with = "seq")]
            left: Vec<LeftRaw>,
        }
        let mut homes = Homes::default();
        match self.call::<L>("leave_all", &[peer_id]).await {
            Ok(l) => Ok((
                l.left.into_iter().map(|x| to_left(x, &mut homes)).collect(),
                homes,
            )),
            Err(e) => {
                tracing::warn!(peer = %peer_id, error = ?e, "Could not remove a peer from its rooms in Redis");
                Err(())
            }
        }
    }

    /// Remembers a peer whose removal failed (Redis unreachable), for the heartbeat to retry.
    pub fn defer_leave(&self, peer_id: &str) {
        let mut p = self
            .pending_leaves
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if p.len() < MAX_PENDING_LEAVES {
            p.push(peer_id.to_string());
        } else {
            // Bounded: beyond, a peer stays listed in its rooms until this instance stops
            // (its room-mates' events to it are answered `unknown-peer`).
            tracing::error!(
                peer = %peer_id,
                "Too many disconnects waiting for Redis: this one is not replayed"
            );
        }
    }

    fn take_pending_leaves(&self) -> Vec<String> {
        std::mem::take(
            &mut *self
                .pending_leaves
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// What a join must do about the room's password.
    pub async fn lock_of(&self, room_id: &str) -> Result<RoomLock, StepError> {
        #[derive(Deserialize)]
        struct K {
            lock: String,
            pw: Option<String>,
        }
        let k: K = self
            .call("lock", &[room_id])
            .await
            .map_err(|f| step_error(&f))?;
        Ok(match (k.lock.as_str(), k.pw) {
            ("locked", Some(pw)) => RoomLock::Locked(PasswordHash::from_phc(pw)),
            ("absent", _) => RoomLock::Absent,
            _ => RoomLock::Open,
        })
    }

    /// The password step of a join, from the cluster's view of the room.
    pub async fn password_step(
        &self,
        room_id: &str,
        password: Option<String>,
    ) -> Result<PasswordStep, StepError> {
        Ok(match (self.lock_of(room_id).await?, password) {
            (RoomLock::Locked(hash), password) => PasswordStep::Verify { hash, password },
            (RoomLock::Absent, Some(password)) => PasswordStep::Hash { password },
            (RoomLock::Absent | RoomLock::Open, _) => PasswordStep::None,
        })
    }

    /// Whether the peer is in a room (`None`: Redis could not say).
    pub async fn in_any_room(&self, peer_id: &str) -> Option<bool> {
        #[derive(Deserialize)]
        struct N {
            n: u64,
        }
        self.call::<N>("in_room", &[peer_id])
            .await
            .ok()
            .map(|n| n.n > 0)
    }

    /// Queues events for peers on other instances, in order; per entry, `None` when queued
    /// or the refusal code.
    pub async fn push(&self, entries: &[Remote]) -> Result<Vec<Option<String>>, ()> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let maxq = MAX_INBOX.to_string();
        let mut args: Vec<&str> = Vec::with_capacity(1 + entries.len() * 6);
        args.push(&maxq);
        for e in entries {
            let (o, oh) = match &e.origin {
                Some(o) => (o.sender.as_str(), o.home.as_deref().unwrap_or("")),
                None => ("", ""),
            };
            args.extend_from_slice(&[&e.home, &e.to, e.event, &e.body, o, oh]);
        }
        #[derive(Deserialize)]
        struct S {
            #[serde(deserialize_with = "seq")]
            status: Vec<String>,
        }
        match self.call::<S>("push", &args).await {
            Ok(s) => Ok(s
                .status
                .into_iter()
                .map(|c| (!c.is_empty()).then_some(c))
                .collect()),
            Err(e) => {
                tracing::warn!(error = ?e, entries = entries.len(), "Events for other instances not queued");
                Err(())
            }
        }
    }

    /// REST `POST /api/rooms`.
    pub async fn create_room(
        &self,
        id: &str,
        name: Option<&str>,
        max_peers: Option<usize>,
        password: Option<&PasswordHash>,
        now_ms: u64,
    ) -> Result<RoomInfo, StepError> {
        let max = max_peers
            .unwrap_or(self.default_max_peers)
            .clamp(1, self.default_max_peers)
            .to_string();
        let pw = password.map_or("", PasswordHash::as_phc);
        let now = now_ms.to_string();
        let cap = self.max_persistent.to_string();
        #[derive(Deserialize)]
        struct C {
            room: RoomRaw,
        }
        let c: C = self
            .call("create", &[id, name.unwrap_or(""), &max, pw, &now, &cap])
            .await
            .map_err(|f| step_error(&f))?;
        Ok(c.room.info())
    }

    /// REST `GET /api/rooms/{id}`: `Ok(None)` when there is no such room.
    pub async fn get_room(&self, id: &str) -> Result<Option<RoomInfo>, StepError> {
        #[derive(Deserialize)]
        struct G {
            room: RoomRaw,
        }
        match self.call::<G>("get", &[id]).await {
            Ok(g) => Ok(Some(g.room.info())),
            Err(Fail::Refused(c)) if c == "not-found" => Ok(None),
            Err(f) => Err(step_error(&f)),
        }
    }

    /// REST `GET /api/rooms`: every room of the cluster, sorted by id.
    pub async fn list_rooms(&self) -> Result<Vec<RoomInfo>, StepError> {
        #[derive(Deserialize)]
        struct L {
            #[serde(deserialize_with = "seq")]
            rooms: Vec<RoomRaw>,
        }
        let l: L = self.call("list", &[]).await.map_err(|f| step_error(&f))?;
        let mut out: Vec<RoomInfo> = l.rooms.iter().map(RoomRaw::info).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// REST `DELETE /api/rooms/{id}`: the members (with their homes), `Ok(None)` when absent.
    pub async fn delete_room(&self, id: &str) -> Result<Option<(Vec<String>, Homes)>, StepError> {
        #[derive(Deserialize)]
        struct D {
            #[serde(deserialize_with = "seq")]
            members: Vec<Member>,
        }
        match self.call::<D>("delete", &[id]).await {
            Ok(d) => {
                let mut homes = Homes::default();
                for m in &d.members {
                    homes.add(m);
                }
                Ok(Some((d.members.into_iter().map(|m| m.id).collect(), homes)))
            }
            Err(Fail::Refused(c)) if c == "not-found" => Ok(None),
            Err(f) => Err(step_error(&f)),
        }
    }

    /// Removes persistent rooms empty for `idle_ms`; their ids.
    pub async fn expire_idle(&self, now_ms: u64, idle_ms: u64) -> Vec<String> {
        #[derive(Deserialize)]
        struct E {
            #[serde(deserialize_with = "seq")]
            gone: Vec<String>,
        }
        let now = now_ms.to_string();
        let idle = idle_ms.to_string();
        match self.call::<E>("expire", &[&now, &idle]).await {
            Ok(e) => e.gone,
            Err(e) => {
                tracing::debug!(error = ?e, "Idle room sweep skipped");
                Vec::new()
            }
        }
    }

    /// (rooms, peers in rooms, live instances) of the whole cluster.
    pub async fn counts(&self) -> Option<(usize, usize, usize)> {
        #[derive(Deserialize)]
        struct C {
            rooms: usize,
            peers: usize,
            instances: usize,
        }
        self.call::<C>("counts", &[])
            .await
            .ok()
            .map(|c| (c.rooms, c.peers, c.instances))
    }

    /// PeerJS: claims `id` for this instance (cluster-wide ids); the messages queued for it.
    pub async fn peerjs_claim(
        &self,
        id: &str,
        token: &str,
    ) -> Result<(crate::peerjs::Claim, Vec<Arc<str>>), ()> {
        #[derive(Deserialize)]
        struct C {
            replaced: u8,
            #[serde(deserialize_with = "seq")]
            queued: Vec<String>,
        }
        match self.call::<C>("pj_claim", &[id, token]).await {
            Ok(c) => Ok((
                if c.replaced == 1 {
                    crate::peerjs::Claim::Replaced
                } else {
                    crate::peerjs::Claim::Open
                },
                c.queued.into_iter().map(Arc::from).collect(),
            )),
            Err(Fail::Refused(code)) if code == "taken" => {
                Ok((crate::peerjs::Claim::Taken, Vec::new()))
            }
            Err(e) => {
                tracing::debug!(error = ?e, "PeerJS id not claimed");
                Err(())
            }
        }
    }

    /// PeerJS: the id is no longer connected here.
    pub async fn peerjs_release(&self, id: &str) {
        if let Err(e) = self.call::<Value>("pj_release", &[id]).await {
            tracing::warn!(error = ?e, "PeerJS id not released in Redis (it is reaped with this instance)");
        }
    }

    /// PeerJS: `frame` from `src` for `dst`, which is not connected here: to its instance, or
    /// queued in Redis when it is connected nowhere (if `queueable`).
    pub async fn peerjs_send(
        &self,
        dst: &str,
        src: &str,
        frame: &str,
        queueable: bool,
    ) -> Result<crate::peerjs::Sent, ()> {
        use crate::peerjs::Sent;
        #[derive(Deserialize)]
        struct S {
            r: String,
        }
        let maxq = crate::peerjs::MAX_QUEUED.to_string();
        let maxqueues = crate::peerjs::MAX_QUEUES.to_string();
        let maxinbox = MAX_INBOX.to_string();
        let now = crate::clock::unix_ms().to_string();
        let maxbytes = crate::peerjs::MAX_QUEUED_BYTES.to_string();
        let maxtotal = crate::peerjs::MAX_QUEUED_BYTES_TOTAL.to_string();
        let q = if queueable { "1" } else { "0" };
        let s: S = self
            .call(
                "pj_send",
                &[
                    dst, src, frame, q, &maxq, &maxqueues, &maxinbox, &now, &maxbytes, &maxtotal,
                ],
            )
            .await
            .map_err(|_| ())?;
        Ok(match s.r.as_str() {
            "sent" | "local" => Sent::Delivered,
            "queued" => Sent::Queued,
            "dropped" => Sent::Dropped,
            _ => Sent::QueueFull,
        })
    }

    /// PeerJS: queues in Redis unread for `expire`, removed; each id with its senders.
    pub async fn peerjs_expire(&self, expire: Duration) -> Vec<(String, Vec<String>)> {
        #[derive(Deserialize)]
        struct G {
            dst: String,
            #[serde(deserialize_with = "seq")]
            srcs: Vec<String>,
        }
        #[derive(Deserialize)]
        struct E {
            #[serde(deserialize_with = "seq")]
            gone: Vec<G>,
        }
        let cutoff = crate::clock::unix_ms()
            .saturating_sub(u64::try_from(expire.as_millis()).unwrap_or(u64::MAX))
            .to_string();
        match self.call::<E>("pj_expire", &[&cutoff]).await {
            Ok(e) => e.gone.into_iter().map(|g| (g.dst, g.srcs)).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// PeerJS discovery: every id connected in the cluster.
    pub async fn peerjs_ids(&self) -> Result<Vec<String>, ()> {
        #[derive(Deserialize)]
        struct I {
            #[serde(deserialize_with = "seq")]
            ids: Vec<String>,
        }
        let mut ids = self.call::<I>("pj_ids", &[]).await.map_err(|_| ())?.ids;
        ids.sort();
        Ok(ids)
    }

    /// Starts the heartbeat, the reaper and the inbox reader; they end with the hub.
    pub fn spawn_tasks(self: &Arc<Self>, hub: &Arc<Hub>) {
        tokio::spawn(heartbeat(Arc::downgrade(hub), self.clone()));
        tokio::spawn(reaper(Arc::downgrade(hub), self.clone()));
        tokio::spawn(inbox::run(Arc::downgrade(hub), self.clone()));
    }
}

fn to_left(raw: LeftRaw, homes: &mut Homes) -> Left {
    for m in &raw.rest {
        homes.add(m);
    }
    Left {
        room_id: raw.room,
        remaining: raw.rest.into_iter().map(|m| m.id).collect(),
        room_removed: raw.removed,
    }
}

fn step_error(f: &Fail) -> StepError {
    match f {
        Fail::Redis(e) => {
            tracing::debug!(error = %e, "Redis step failed");
            StepError::Unavailable
        }
        Fail::Refused(code) => match code.as_str() {
            "room-full" => StepError::Join(JoinError::RoomFull),
            "wrong-password" => StepError::Join(JoinError::WrongPassword),
            "too-many-rooms" => StepError::Join(JoinError::TooManyRooms),
            "not-in-room" => StepError::NotInRoom,
            "unknown-peer" => StepError::UnknownPeer,
            "rate-limited" => StepError::Busy,
            // "fenced" and anything unexpected: the shared state refused this instance.
            _ => StepError::Unavailable,
        },
    }
}

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

fn new_instance_id() -> Arc<str> {
    Arc::from(uuid::Uuid::new_v4().simple().to_string().as_str())
}

/// The URL without its password, for logs.
fn redacted(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_string(),
        },
        None => "<invalid url>".to_string(),
    }
}

/// Refreshes the registration every [`HEARTBEAT`]. A registration found expired fences the
/// instance: its sockets are disconnected (others may have removed their peers already) and
/// it registers again under a new id.
async fn heartbeat(hub: Weak<Hub>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ttl = ms(REGISTRATION_TTL);
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { break };
        if !hub.is_ready() {
            // Shutting down.
            continue;
        }
        #[derive(Deserialize)]
        struct H {
            alive: u8,
        }
        let was_up = cluster.is_up();
        match cluster.call::<H>("heartbeat", &[&ttl]).await {
            Ok(h) if h.alive == 1 => {
                if !was_up {
                    tracing::info!(instance = %cluster.instance(), "Redis reachable again");
                }
                cluster.up.store(true, Ordering::SeqCst);
                for peer in cluster.take_pending_leaves() {
                    let deliveries = match cluster.leave_all(&peer).await {
                        Ok((lefts, homes)) => {
                            let mut d: Vec<Delivery> = lefts
                                .iter()
                                .flat_map(|l| crate::core::rules::user_left(&peer, l))
                                .collect();
                            homes.route(&mut d);
                            d
                        }
                        Err(()) => {
                            cluster.defer_leave(&peer);
                            continue;
                        }
                    };
                    let _ = hub.deliver(deliveries).await;
                }
            }
            Ok(_) => fence(&hub, &cluster).await,
            Err(e) => {
                if was_up {
                    tracing::warn!(error = ?e, "Redis unreachable: events that need it answer `unavailable`, /ready is 503");
                }
                cluster.up.store(false, Ordering::SeqCst);
            }
        }
        hub.metrics.redis_up.set(i64::from(cluster.is_up()));
    }
}

async fn fence(hub: &Arc<Hub>, cluster: &Arc<Cluster>) {
    let old = cluster.instance();
    cluster.up.store(false, Ordering::SeqCst);
    let closed = hub.peers.close_all() + hub.peerjs.close_all();
    hub.metrics.fenced.inc();
    tracing::warn!(
        instance = %old,
        sockets = closed,
        "This instance's registration in Redis expired (Redis was unreachable too long, or restarted without its data): fenced, every socket disconnected"
    );
    *cluster
        .instance
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = new_instance_id();
    match cluster.register().await {
        Ok(()) => tracing::info!(instance = %cluster.instance(), "Registered again"),
        Err(e) => tracing::warn!(error = ?e, "Could not register again; retrying"),
    }
}

/// Every [`REAP_EVERY`], claims the dead instances nobody reaps yet, removes their peers
/// from every room (`user-left` to room-mates) and answers their undelivered events.
async fn reaper(hub: Weak<Hub>, cluster: Arc<Cluster>) {
    let mut tick = tokio::time::interval(REAP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let claim = ms(Duration::from_secs(30));
    loop {
        tick.tick().await;
        let Some(hub) = hub.upgrade() else { break };
        if !cluster.is_up() {
            continue;
        }
        #[derive(Deserialize)]
        struct Dead {
            id: String,
            #[serde(deserialize_with = "seq")]
            peers: Vec<String>,
        }
        #[derive(Deserialize)]
        struct Claim {
            #[serde(deserialize_with = "seq")]
            dead: Vec<Dead>,
        }
        let Ok(c) = cluster.call::<Claim>("reap_claim", &[&claim]).await else {
            continue;
        };
        for dead in c.dead {
            reap(&hub, &cluster, &dead.id, &dead.peers).await;
        }
    }
}

async fn reap(hub: &Arc<Hub>, cluster: &Arc<Cluster>, dead: &str, peers: &[String]) {
    let mut removed = 0usize;
    for peer in peers {
        let Ok((lefts, homes)) = cluster.leave_all(peer).await else {
            // Claim expires and another scan retries.
            return;
        };
        let mut deliveries: Vec<Delivery> = lefts
            .iter()
            .flat_map(|l| crate::core::rules::user_left(peer, l))
            .collect();
        homes.route(&mut deliveries);
        let _ = hub.deliver(deliveries).await;
        removed += 1;
    }
    #[derive(Deserialize)]
    struct U {
        o: String,
        oh: String,
        e: String,
    }
    #[derive(Deserialize)]
    struct Done {
        #[serde(deserialize_with = "seq")]
        undelivered: Vec<U>,
    }
    let undelivered = match cluster.call::<Done>("reap_done", &[dead]).await {
        Ok(d) => d.undelivered,
        Err(_) => return,
    };
    for u in &undelivered {
        let origin = Origin {
            sender: u.o.clone(),
            event: crate::protocol::static_event_name(&u.e).unwrap_or("signal"),
            home: (!u.oh.is_empty()).then(|| Arc::from(u.oh.as_str())),
        };
        hub.answer_origin(
            &origin,
            crate::protocol::ErrorCode::UnknownPeer,
            "the target peer's signaling instance died before delivery",
        )
        .await;
    }
    hub.metrics.instances_reaped.inc();
    tracing::warn!(
        instance = %dead,
        peers = removed,
        undelivered = undelivered.len(),
        "A signaling instance stopped heartbeating: its peers were removed from their rooms"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_lua_table_reads_as_an_empty_list() {
        #[derive(Deserialize)]
        struct S {
            #[serde(deserialize_with = "seq")]
            v: Vec<String>,
        }
        let empty: S = serde_json::from_str(r#"{"v":{}}"#).expect("{} is an empty list");
        assert!(empty.v.is_empty());
        let full: S = serde_json::from_str(r#"{"v":["a","b"]}"#).expect("a list");
        assert_eq!(full.v, ["a", "b"]);
        assert!(serde_json::from_str::<S>(r#"{"v":{"x":1}}"#).is_err());
    }

    #[test]
    fn a_member_keeps_the_clients_json_and_takes_its_current_state() {
        let m = Member {
            id: "p".into(),
            home: "i".into(),
            peer: Some(
                r#"{"peerId":"p","userId":"u","displayName":null,"metadata":[],"state":{},"joinedAt":7}"#
                    .into(),
            ),
            state: Some(r#"{"muted":true}"#.into()),
        };
        let p = m.to_peer().expect("peer");
        // cjson never sees it: an empty array stays an array.
        assert_eq!(p.metadata, serde_json::json!([]));
        assert_eq!(p.state, serde_json::json!({"muted": true}));
        assert_eq!(p.joined_at, 7);
    }

    #[test]
    fn the_trim_point_is_the_id_after_the_last_one_read() {
        assert_eq!(inbox::next_id("1700000000000-0"), "1700000000000-1");
        assert_eq!(inbox::next_id("5-41"), "5-42");
    }

    #[test]
    fn logged_urls_hide_the_password() {
        assert_eq!(
            redacted("redis://:s3cret@10.0.0.5:6379/0"),
            "redis://***@10.0.0.5:6379/0"
        );
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert!(!redacted("rediss://user:pw@h:1").contains("pw"));
    }

    #[test]
    fn script_refusals_map_to_the_protocols_codes() {
        let r = |c: &str| step_error(&Fail::Refused(c.into()));
        assert_eq!(r("room-full"), StepError::Join(JoinError::RoomFull));
        assert_eq!(
            r("wrong-password"),
            StepError::Join(JoinError::WrongPassword)
        );
        assert_eq!(r("not-in-room"), StepError::NotInRoom);
        assert_eq!(r("unknown-peer"), StepError::UnknownPeer);
        assert_eq!(r("rate-limited"), StepError::Busy);
        assert_eq!(r("fenced"), StepError::Unavailable);
        assert_eq!(
            step_error(&Fail::Redis("connection refused".into())),
            StepError::Unavailable
        );
    }
}
