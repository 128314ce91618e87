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
use std::time::Instant;

use stun::attributes::{
    ATTR_CHANNEL_NUMBER, ATTR_DATA, ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME,
};
use stun::message::{
    CLASS_INDICATION, CLASS_REQUEST, METHOD_ALLOCATE, METHOD_BINDING, METHOD_CHANNEL_BIND,
    METHOD_CREATE_PERMISSION, METHOD_REFRESH, METHOD_SEND, Message,
};

use crate::auth::{Credentials, split_username, verify_message};
use crate::metrics::Metrics;
use crate::nonce::{NonceCheck, NonceIssuer};
use crate::policy::PeerPolicy;
use crate::quota::{AllocationQuota, QuotaError, SourceLimiter};
use crate::tables::{AllocState, ClientKey, Tables};
use crate::transport::ClientTransport;
use crate::wire;

mod outbound;

/// Where our synthetic request to the crate "comes from" (TEST-NET-1, never a client).
pub const SYNTHETIC_CLIENT: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)), 9);
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
        credential: (String, Vec<u8>),
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

    /// The allocation of `client` on `local`, only if it was made over this very
    /// `transport`: UDP and TCP listeners share an address, and a (spoofable) UDP source
    /// must not reach the allocation of a TCP/TLS client with the same ip:port.
    fn client_alloc(
        &self,
        transport: &Arc<dyn ClientTransport>,
        local: SocketAddr,
        client: SocketAddr,
    ) -> Option<Arc<AllocState>> {
        self.tables
            .get(&ClientKey::new(transport.as_ref(), local, client))
            .filter(|a| std::ptr::addr_eq(Arc::as_ptr(&a.transport), Arc::as_ptr(transport)))
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
            return self.channel_data(transport, local, packet, client, now);
        }
        let Some(m) = wire::parse(packet) else {
            return Inbound::Drop;
        };
        if m.typ.class == CLASS_INDICATION && m.typ.method == METHOD_SEND {
            return self.send_indication(&m, transport, local, client, now);
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
        transport: &Arc<dyn ClientTransport>,
        local: SocketAddr,
        packet: &[u8],
        client: SocketAddr,
        now: Instant,
    ) -> Inbound {
        let Some((number, start, len)) = wire::channel_data(packet) else {
            return Inbound::Drop;
        };
        let Some(alloc) = self.client_alloc(transport, local, client) else {
            return Inbound::Drop;
        };
        let Some(peer) = alloc.channel_peer(number, now) else {
            return Inbound::Drop;
        };
        self.to_peer(alloc, peer, start, len, now)
    }

    /// RFC 8656 section 11.2: a Send indication goes to its peer if a permission exists;
    /// one to a denied peer is dropped and counted (SPEC section 3).
    fn send_indication(
        &self,
        m: &Message,
        transport: &Arc<dyn ClientTransport>,
        local: SocketAddr,
        client: SocketAddr,
        now: Instant,
    ) -> Inbound {
        let Some(alloc) = self.client_alloc(transport, local, client) else {
            return Inbound::Drop;
        };
        let Some(peers) = wire::peer_addresses(m) else {
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
        self.to_peer(alloc, peer, start, len, now)
    }

    /// Relays `len` bytes at `start` to `peer` if the allocation's bitrate budget allows.
    fn to_peer(
        &self,
        alloc: Arc<AllocState>,
        peer: SocketAddr,
        start: usize,
        len: usize,
        now: Instant,
    ) -> Inbound {
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
        let alloc = self.client_alloc(transport, local, client);
        // Requests from clients without an allocation are what a flood consists of. Stream
        // clients are bounded by the connection cap and idle timeout instead: a dropped
        // request on a stream would hang its client.
        if alloc.is_none() && !transport.is_stream() && !lock(&self.limiter).allow(client.ip(), now)
        {
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
                    credential: (username.clone(), key.clone()),
                    deadline,
                })
            }
            (METHOD_CREATE_PERMISSION | METHOD_CHANNEL_BIND, None) => {
                // RFC 8656 section 9.2/12.2: no allocation on this 5-tuple.
                return Inbound::Reply(wire::error_response(m, 437, None, Some(&key)));
            }
            (METHOD_CREATE_PERMISSION, Some(alloc)) => {
                let peers = match wire::peer_addresses(m) {
                    Some(p) if !p.is_empty() => p,
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

#[cfg(test)]
mod tests;
