//! The decisions of our layer in front of the `turn` crate, sans I/O: each client packet
//! and each packet the crate sends is classified here, with the clock passed in; the I/O
//! layer (`conn`) only executes the outcome.
//!
//! - STUN Binding is answered here (RFC 8489 section 6.3).
//! - Requests without valid credentials get 401/438 with our stateless NONCE (RFC 8489
//!   section 9.2.4): the crate never sees them, so its nonce table cannot grow, and it never
//!   answers 400 for bad credentials.
//! - Authenticated requests are re-signed with the crate's one current nonce.
//! - CreatePermission/ChannelBind naming a denied peer get 403 (RFC 8656 sections 9.1,
//!   12.1); Send indications to one are dropped; Allocate is checked against quotas (486).
//! - ChannelData and Send indications are relayed by our fast path from our own tables,
//!   which follow the success responses the crate sends.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use stun::attributes::{
    ATTR_CHANNEL_NUMBER, ATTR_DATA, ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME,
};
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE,
    METHOD_BINDING, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_REFRESH, METHOD_SEND,
    Message,
};

use crate::auth::{Credentials, split_username, verify_message};
use crate::metrics::Metrics;
use crate::nonce::{NonceCheck, NonceIssuer};
use crate::policy::PeerPolicy;
use crate::quota::{AllocationQuota, QuotaError, SourceLimiter};
use crate::tables::{AllocState, RelaySlot, Tables};
use crate::transport::ClientTransport;
use crate::wire;

/// Where our synthetic request to the crate "comes from" (TEST-NET-1, never a client).
pub const SYNTHETIC_CLIENT: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)), 9);
/// The crate forgets its nonces after an hour; we fetch a new one well before.
const CRATE_NONCE_REFRESH: Duration = Duration::from_secs(30 * 60);
/// Most request transactions we follow at once.
const PENDING_CAP: usize = 65_536;
/// Most source addresses the unauthenticated-request limiter remembers.
const LIMITER_CAP: usize = 65_536;

/// What to do with one packet from a client.
#[derive(Debug)]
pub enum Inbound {
    /// Hand these bytes to the crate.
    ToCrate(Vec<u8>),
    /// Answer the client with these bytes.
    Reply(Vec<u8>),
    /// Relay `packet[start..start + len]` to `peer` from the allocation's relayed socket.
    ToPeer {
        alloc: Arc<AllocState>,
        peer: SocketAddr,
        start: usize,
        len: usize,
    },
    Drop,
}

/// What to do with one packet the crate sends to a client.
#[derive(Debug)]
pub enum Outbound {
    Forward,
    Replace(Vec<u8>),
    Swallow,
}

#[derive(Debug)]
enum Pending {
    Allocate {
        transport: Arc<dyn ClientTransport>,
        client: SocketAddr,
        deadline: Instant,
    },
    Permission {
        alloc: Arc<AllocState>,
        peers: Vec<SocketAddr>,
        deadline: Instant,
    },
    Channel {
        alloc: Arc<AllocState>,
        number: u16,
        peer: SocketAddr,
        deadline: Instant,
    },
}

impl Pending {
    fn deadline(&self) -> Instant {
        match self {
            Pending::Allocate { deadline, .. }
            | Pending::Permission { deadline, .. }
            | Pending::Channel { deadline, .. } => *deadline,
        }
    }
}

/// Settings of the gate.
#[derive(Debug, Clone)]
pub struct GateConfig {
    pub realm: String,
    pub policy: PeerPolicy,
    pub max_allocations: usize,
    pub max_allocations_per_user: usize,
    /// Bytes per second per allocation; `None` = unlimited.
    pub bytes_per_second: Option<u64>,
    pub unauth_requests_per_second: u32,
}

#[derive(Debug)]
pub struct Gate {
    cfg: GateConfig,
    pub creds: Arc<Credentials>,
    nonces: NonceIssuer,
    pub tables: Arc<Tables>,
    quota: Mutex<AllocationQuota>,
    limiter: Mutex<SourceLimiter>,
    pending: Mutex<HashMap<[u8; 12], Pending>>,
    crate_nonce: RwLock<Option<(String, Instant)>>,
    injecting_since: Mutex<Option<Instant>>,
    pub metrics: Arc<Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Gate {
    #[must_use]
    pub fn new(
        cfg: GateConfig,
        creds: Arc<Credentials>,
        nonce_key: [u8; 32],
        metrics: Arc<Metrics>,
    ) -> Self {
        let quota = AllocationQuota::new(cfg.max_allocations, cfg.max_allocations_per_user);
        let limiter = SourceLimiter::new(cfg.unauth_requests_per_second, LIMITER_CAP);
        Self {
            cfg,
            creds,
            nonces: NonceIssuer::new(nonce_key),
            tables: Arc::new(Tables::default()),
            quota: Mutex::new(quota),
            limiter: Mutex::new(limiter),
            pending: Mutex::new(HashMap::new()),
            crate_nonce: RwLock::new(None),
            injecting_since: Mutex::new(None),
            metrics,
        }
    }

    /// Whether a peer may be relayed to: the policy, plus our own live relayed sockets.
    #[must_use]
    pub fn peer_allowed(&self, peer: SocketAddr) -> bool {
        self.cfg
            .policy
            .check(peer, self.tables.is_relay_port(peer.port()))
            .is_ok()
    }

    /// Classifies one packet from `client` on the listener `local`.
    pub fn handle_client(
        &self,
        transport: &Arc<dyn ClientTransport>,
        local: SocketAddr,
        packet: &[u8],
        client: SocketAddr,
        now: Instant,
        unix: u64,
    ) -> Inbound {
        if wire::looks_like_channel_data(packet) {
            return self.channel_data(local, packet, client, now);
        }
        let Some(m) = wire::parse(packet) else {
            return Inbound::Drop;
        };
        if m.typ.class == CLASS_INDICATION && m.typ.method == METHOD_SEND {
            return self.send_indication(&m, local, client, now);
        }
        if m.typ.class != CLASS_REQUEST {
            return Inbound::Drop;
        }
        match m.typ.method {
            METHOD_BINDING => Inbound::Reply(wire::binding_success(&m, client)),
            METHOD_ALLOCATE | METHOD_REFRESH | METHOD_CREATE_PERMISSION | METHOD_CHANNEL_BIND => {
                self.request(&m, transport, local, client, now, unix)
            }
            _ => Inbound::Drop,
        }
    }

    /// RFC 8656 section 12.5: ChannelData on a bound channel goes to its peer.
    fn channel_data(
        &self,
        local: SocketAddr,
        packet: &[u8],
        client: SocketAddr,
        now: Instant,
    ) -> Inbound {
        let Some((number, start, len)) = wire::channel_data(packet) else {
            return Inbound::Drop;
        };
        let Some(alloc) = self.tables.get(&(local, client)) else {
            return Inbound::Drop;
        };
        let Some(peer) = alloc.channel_peer(number, now) else {
            return Inbound::Drop;
        };
        if !alloc.within_bitrate(len, now) {
            self.metrics.bitrate_dropped.inc();
            return Inbound::Drop;
        }
        Inbound::ToPeer {
            alloc,
            peer,
            start,
            len,
        }
    }

    /// RFC 8656 section 11.2: a Send indication goes to its peer if a permission exists;
    /// one to a denied peer is dropped and counted (SPEC section 3).
    fn send_indication(
        &self,
        m: &Message,
        local: SocketAddr,
        client: SocketAddr,
        now: Instant,
    ) -> Inbound {
        let Some(alloc) = self.tables.get(&(local, client)) else {
            return Inbound::Drop;
        };
        let Ok(peers) = wire::peer_addresses(m) else {
            return Inbound::Drop;
        };
        let [peer] = peers[..] else {
            return Inbound::Drop;
        };
        if !self.peer_allowed(peer) {
            self.metrics.denied_peer("send");
            return Inbound::Drop;
        }
        if !alloc.has_permission(peer.ip(), now) {
            return Inbound::Drop;
        }
        let Some((start, len)) = data_bounds(m) else {
            return Inbound::Drop;
        };
        if !alloc.within_bitrate(len, now) {
            self.metrics.bitrate_dropped.inc();
            return Inbound::Drop;
        }
        Inbound::ToPeer {
            alloc,
            peer,
            start,
            len,
        }
    }

    fn challenge(&self, m: &Message, code: u16, client: SocketAddr, unix: u64) -> Inbound {
        let nonce = self.nonces.issue(client.ip(), unix);
        Inbound::Reply(wire::error_response(
            m,
            code,
            Some((&nonce, &self.cfg.realm)),
            None,
        ))
    }

    fn unauthorized(
        &self,
        m: &Message,
        reason: &'static str,
        client: SocketAddr,
        unix: u64,
    ) -> Inbound {
        self.metrics.auth_failure(reason);
        self.challenge(m, 401, client, unix)
    }

    fn request(
        &self,
        m: &Message,
        transport: &Arc<dyn ClientTransport>,
        local: SocketAddr,
        client: SocketAddr,
        now: Instant,
        unix: u64,
    ) -> Inbound {
        let alloc = self.tables.get(&(local, client));
        // Requests from clients without an allocation are what a flood consists of.
        if alloc.is_none() && !lock(&self.limiter).allow(client.ip(), now) {
            self.metrics.rate_limited.inc();
            return Inbound::Drop;
        }
        if !m.contains(ATTR_MESSAGE_INTEGRITY) {
            return self.unauthorized(m, "missing", client, unix);
        }
        let (Some(username), Some(realm), Some(nonce)) = (
            wire::text(m, ATTR_USERNAME),
            wire::text(m, ATTR_REALM),
            wire::text(m, ATTR_NONCE),
        ) else {
            return self.unauthorized(m, "malformed", client, unix);
        };
        if realm != self.cfg.realm {
            return self.unauthorized(m, "wrong_realm", client, unix);
        }
        match self.nonces.check(&nonce, client.ip(), unix) {
            NonceCheck::Fresh => {}
            NonceCheck::Stale => {
                self.metrics.auth_failure("stale_nonce");
                return self.challenge(m, 438, client, unix);
            }
            NonceCheck::Invalid => return self.unauthorized(m, "bad_nonce", client, unix),
        }
        let secrets = self.creds.secrets();
        let key = match verify_message(m, secrets.all(), &username, &realm, unix) {
            Ok(key) => key,
            Err(e) => return self.unauthorized(m, e.reason(), client, unix),
        };
        let Ok((expiry, user)) = split_username(&username) else {
            return self.unauthorized(m, "malformed", client, unix);
        };
        self.creds.remember(&username, key.clone(), expiry, unix);
        let tid = m.transaction_id.0;
        let deadline = now + crate::quota::PENDING_TIMEOUT;
        let pending = match (m.typ.method, alloc) {
            (METHOD_ALLOCATE, None) => {
                if let Err(e) = lock(&self.quota).reserve(user, tid, now) {
                    // RFC 8656 section 7.2: 486 for a user's quota, 508 for capacity.
                    let (code, scope) = match e {
                        QuotaError::PerUser => (486, "user"),
                        QuotaError::Total => (508, "total"),
                    };
                    self.metrics.quota_rejected(scope);
                    return Inbound::Reply(wire::error_response(m, code, None, Some(&key)));
                }
                Some(Pending::Allocate {
                    transport: Arc::clone(transport),
                    client,
                    deadline,
                })
            }
            (METHOD_CREATE_PERMISSION | METHOD_CHANNEL_BIND, None) => {
                // RFC 8656 section 9.2/12.2: no allocation on this 5-tuple.
                return Inbound::Reply(wire::error_response(m, 437, None, Some(&key)));
            }
            (METHOD_CREATE_PERMISSION, Some(alloc)) => {
                let peers = match wire::peer_addresses(m) {
                    Ok(p) if !p.is_empty() => p,
                    _ => return Inbound::Reply(wire::error_response(m, 400, None, Some(&key))),
                };
                if !peers.iter().all(|p| self.peer_allowed(*p)) {
                    self.metrics.denied_peer("create_permission");
                    return Inbound::Reply(wire::error_response(m, 403, None, Some(&key)));
                }
                Some(Pending::Permission {
                    alloc,
                    peers,
                    deadline,
                })
            }
            (METHOD_CHANNEL_BIND, Some(alloc)) => {
                let peers = wire::peer_addresses(m).unwrap_or_default();
                let number = m
                    .get(ATTR_CHANNEL_NUMBER)
                    .ok()
                    .filter(|v| v.len() >= 2)
                    .map(|v| u16::from_be_bytes([v[0], v[1]]));
                let (&[peer], Some(number)) = (peers.as_slice(), number) else {
                    return Inbound::Reply(wire::error_response(m, 400, None, Some(&key)));
                };
                if !self.peer_allowed(peer) {
                    self.metrics.denied_peer("channel_bind");
                    return Inbound::Reply(wire::error_response(m, 403, None, Some(&key)));
                }
                Some(Pending::Channel {
                    alloc,
                    number,
                    peer,
                    deadline,
                })
            }
            _ => None,
        };
        if let Some(p) = pending {
            let mut table = lock(&self.pending);
            if table.len() >= PENDING_CAP {
                table.retain(|_, p| p.deadline() > now);
            }
            if table.len() < PENDING_CAP {
                table.insert(tid, p);
            }
        }
        let crate_nonce = self
            .crate_nonce
            .read()
            .ok()
            .and_then(|g| g.as_ref().map(|(n, _)| n.clone()));
        match crate_nonce.and_then(|n| wire::with_nonce(m, &n, &key)) {
            Some(bytes) => Inbound::ToCrate(bytes),
            None => Inbound::Drop,
        }
    }

    /// Whether the I/O layer should hand the crate our synthetic unauthenticated request
    /// now (to learn a fresh crate nonce). Claims the injection when it answers `true`.
    pub fn begin_injection(&self, now: Instant) -> bool {
        let fresh = self
            .crate_nonce
            .read()
            .ok()
            .and_then(|g| g.as_ref().map(|(_, at)| now.saturating_duration_since(*at)))
            .is_some_and(|age| age < CRATE_NONCE_REFRESH);
        if fresh {
            return false;
        }
        let mut since = lock(&self.injecting_since);
        if since.is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(2)) {
            return false;
        }
        *since = Some(now);
        true
    }

    /// The synthetic request: an Allocate without credentials, which the crate answers
    /// with 401 and a nonce of its own.
    #[must_use]
    pub fn synthetic_request() -> Vec<u8> {
        let mut m = Message::new();
        m.typ = stun::message::MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST);
        m.transaction_id = stun::agent::TransactionId::new();
        m.write_header();
        m.raw
    }

    /// Classifies one packet the crate sends to `client` on the listener `local`.
    pub fn handle_crate_output(
        &self,
        packet: &[u8],
        client: SocketAddr,
        now: Instant,
        unix: u64,
    ) -> Outbound {
        if wire::looks_like_channel_data(packet) {
            return Outbound::Forward;
        }
        let Some(m) = wire::parse(packet) else {
            return Outbound::Forward;
        };
        if client == SYNTHETIC_CLIENT {
            if let Some(nonce) = wire::text(&m, ATTR_NONCE) {
                if let Ok(mut g) = self.crate_nonce.write() {
                    *g = Some((nonce, now));
                }
                *lock(&self.injecting_since) = None;
            }
            return Outbound::Swallow;
        }
        let tid = m.transaction_id.0;
        let pending = lock(&self.pending).remove(&tid);
        if m.typ.class == CLASS_ERROR_RESPONSE {
            if matches!(pending, Some(Pending::Allocate { .. })) {
                lock(&self.quota).cancel(&tid);
            }
            let code = wire::error_code(&m);
            if matches!(code, Some(401 | 438)) {
                // The crate's nonce went stale: fetch a new one, and give the client ours.
                if let Ok(mut g) = self.crate_nonce.write() {
                    *g = None;
                }
                let nonce = self.nonces.issue(client.ip(), unix);
                return Outbound::Replace(wire::error_response(
                    &m,
                    438,
                    Some((&nonce, &self.cfg.realm)),
                    None,
                ));
            }
            return Outbound::Forward;
        }
        if m.typ.class == CLASS_SUCCESS_RESPONSE {
            match pending {
                Some(Pending::Allocate {
                    transport, client, ..
                }) => self.allocated(&m, tid, transport, client, now),
                Some(Pending::Permission { alloc, peers, .. }) => {
                    for p in &peers {
                        alloc.add_permission(p.ip(), now);
                    }
                    self.metrics.permissions_created.inc_by(peers.len() as u64);
                }
                Some(Pending::Channel {
                    alloc,
                    number,
                    peer,
                    ..
                }) => {
                    alloc.bind_channel(number, peer, now);
                    self.metrics.channels_bound.inc();
                }
                None => {}
            }
        }
        Outbound::Forward
    }

    fn allocated(
        &self,
        m: &Message,
        tid: [u8; 12],
        transport: Arc<dyn ClientTransport>,
        client: SocketAddr,
        now: Instant,
    ) {
        let slot = wire::relayed_address(m).and_then(|a| self.tables.slot_by_port(a.port()));
        let user = lock(&self.quota).commit(&tid);
        let (Some(slot), Some(user), Ok(local)) = (slot, user, transport.local_addr()) else {
            tracing::warn!(%client, "Allocate success without a matching relayed socket");
            return;
        };
        let state = Arc::new(AllocState::new(
            client,
            transport,
            Arc::clone(&slot.socket),
            user,
            self.cfg.bytes_per_second,
            now,
        ));
        if slot.state.set(Arc::clone(&state)).is_err() {
            return;
        }
        tracing::debug!(%client, relayed = %slot.advertised, "Allocation created");
        self.tables.insert((local, client), state);
        self.metrics.allocations.inc();
        self.metrics.allocations_created.inc();
    }

    /// A relayed socket was closed by the crate (expiry, Refresh 0, shutdown).
    pub fn slot_closed(&self, slot: &Arc<RelaySlot>) {
        tracing::debug!(relayed = %slot.advertised, "Relayed socket closed");
        if let Some(state) = self.tables.remove_slot(slot) {
            lock(&self.quota).release(&state.user);
            self.metrics.allocations.dec();
        }
    }

    /// RFC 8656 section 11.3/12.6: a datagram from `peer` on an allocation's relayed
    /// socket goes to the client as ChannelData (bound channel) or a Data indication,
    /// only if a permission exists. Writes the message into `out`; `false` = drop.
    pub fn from_peer(
        &self,
        alloc: &AllocState,
        payload: &[u8],
        peer: SocketAddr,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> bool {
        if !alloc.has_permission(peer.ip(), now) {
            return false;
        }
        if !alloc.within_bitrate(payload.len(), now) {
            self.metrics.bitrate_dropped.inc();
            return false;
        }
        match alloc.channel_of(peer, now) {
            Some(n) => wire::encode_channel_data(n, payload, out),
            None => wire::encode_data_indication(peer, payload, rand::random(), out),
        }
        true
    }
}

/// Where the DATA value sits in the raw message (RFC 8489 section 14: attributes are
/// TLVs padded to 4 bytes after a 20-byte header).
fn data_bounds(m: &Message) -> Option<(usize, usize)> {
    let mut offset = 20;
    for a in &m.attributes.0 {
        let len = a.value.len();
        if a.typ == ATTR_DATA {
            return Some((offset + 4, len));
        }
        offset += 4 + len.div_ceil(4) * 4;
    }
    None
}
