//! The decisions of our layer in front of the `turn` crate, sans I/O: each client packet
//! and each packet the crate sends is classified here, with the clock passed in; the I/O
//! layer (`conn`) only executes the outcome.
//!
//! - STUN Binding is answered here (RFC 8489 section 6.3).
//! - Only what MESSAGE-INTEGRITY covers is used or handed on (RFC 8489 section 14.5).
//! - Requests without valid credentials get 401/438 with our stateless NONCE (RFC 8489
//!   section 9.2.4): the crate never sees them, so its nonce table cannot grow, and it never
//!   answers 400 for bad credentials. A request on an allocation made by another USERNAME
//!   gets 441 (RFC 8656 section 5).
//! - A request larger than the crate reads gets 400 before anything is recorded; every
//!   request we follow sits in a table bounded in time and count (SPEC section 3.1).
//! - Authenticated requests are re-signed with the crate's one current nonce.
//! - CreatePermission/ChannelBind naming a denied peer get 403 (RFC 8656 sections 9.1,
//!   12.1); Send indications to one are dropped; Allocate is checked against quotas (486);
//!   permissions against the per-allocation cap (508); channel numbers against the range
//!   (400).
//! - ChannelData and Send indications never come here: the data plane relays them from
//!   its workers' tables, which the gate fills as the crate's success responses pass.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use stun::message::{
    CLASS_REQUEST, METHOD_ALLOCATE, METHOD_BINDING, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION,
    METHOD_REFRESH, Message,
};

use crate::control::auth::Credentials;
use crate::control::nonce::NonceIssuer;
use crate::control::tables::{AllocState, ClientKey, Tables};
use crate::metrics::Metrics;
use crate::policy::PeerPolicy;
use crate::policy::quota::{AllocationQuota, SourceLimiter};
use crate::transport::ClientTransport;
use crate::wire;

mod outbound;
mod pending;
mod request;

pub use pending::{PENDING_CAP, PENDING_TIMEOUT, PendingKey, PendingTable};

/// Where our synthetic request to the crate "comes from" (TEST-NET-1, never a client).
pub const SYNTHETIC_CLIENT: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)), 9);
/// The most the `turn` crate reads of one message: its read loop's buffer is 1,500 bytes
/// (`INBOUND_MTU` in turn 0.17 `src/server/mod.rs`) and it silently drops the rest. Anything
/// bigger is answered 400 by us before any state is kept for it.
pub const CRATE_READ_LIMIT: usize = 1500;
/// Most source addresses the unauthenticated-request limiter remembers.
const LIMITER_CAP: usize = 65_536;

/// What to do with one packet from a client.
#[derive(Debug)]
pub enum Inbound {
    /// Hand these bytes to the crate.
    ToCrate(Vec<u8>),
    /// Answer the client with these bytes.
    Reply(Vec<u8>),
    Drop,
}

/// What to do with one packet the crate sends to a client.
#[derive(Debug)]
pub enum Outbound {
    Forward,
    /// Forward: a successful Allocate. The I/O layer tells the transport that this client
    /// now holds an allocation (a TCP/TLS connection that never makes one is closed).
    Allocated,
    Replace(Vec<u8>),
    Swallow,
}

/// A request handed to the crate, awaiting its answer.
#[derive(Debug)]
enum Pending {
    /// Holds one quota reservation of `user` until answered or expired.
    Allocate {
        transport: Arc<dyn ClientTransport>,
        client: SocketAddr,
        credential: (String, Vec<u8>),
        user: String,
    },
    Permission {
        alloc: Arc<AllocState>,
        ips: Vec<IpAddr>,
    },
    Channel {
        alloc: Arc<AllocState>,
        number: u16,
        peer: SocketAddr,
    },
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
    /// Peers (permissions) per allocation; beyond: 508.
    pub max_permissions_per_allocation: usize,
    /// Requests followed at once ([`PENDING_CAP`] in service).
    pub pending_cap: usize,
    /// `relay.strict_expiry`: `false` lets an allocation's own credential keep refreshing it
    /// (and adding permissions and channels) after the credential's expiry time.
    pub strict_expiry: bool,
}

#[derive(Debug)]
pub struct Gate {
    cfg: GateConfig,
    pub creds: Arc<Credentials>,
    nonces: NonceIssuer,
    pub tables: Arc<Tables>,
    quota: Mutex<AllocationQuota>,
    limiter: Mutex<SourceLimiter>,
    pending: Mutex<PendingTable<Pending>>,
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
        let pending = Mutex::new(PendingTable::new(cfg.pending_cap, PENDING_TIMEOUT));
        Self {
            cfg,
            creds,
            nonces: NonceIssuer::new(nonce_key),
            tables: Arc::new(Tables::default()),
            quota: Mutex::new(quota),
            limiter: Mutex::new(limiter),
            pending,
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

    /// Classifies one packet from `client` on the listener `local` as the control plane
    /// sees it (ChannelData and Send indications are the data plane's: dropped here).
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
            return Inbound::Drop;
        }
        // Everything after MESSAGE-INTEGRITY is cut off here, before any decision.
        let Some(m) = wire::parse_client(packet) else {
            return Inbound::Drop;
        };
        self.handle_control(&m, transport, local, client, now, unix)
    }

    /// Decides on one parsed STUN message from `client`: Binding is answered here,
    /// Allocate/Refresh/CreatePermission/ChannelBind checked and handed to the crate, the
    /// rest dropped.
    pub fn handle_control(
        &self,
        m: &Message,
        transport: &Arc<dyn ClientTransport>,
        local: SocketAddr,
        client: SocketAddr,
        now: Instant,
        unix: u64,
    ) -> Inbound {
        if m.typ.class != CLASS_REQUEST {
            return Inbound::Drop;
        }
        match m.typ.method {
            METHOD_BINDING => Inbound::Reply(wire::binding_success(m, client)),
            METHOD_ALLOCATE | METHOD_REFRESH | METHOD_CREATE_PERMISSION | METHOD_CHANNEL_BIND => {
                self.request(m, transport, local, client, now, unix)
            }
            _ => Inbound::Drop,
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
}

#[cfg(test)]
mod tests;
