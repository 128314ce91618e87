//! The fast path's state: live allocations by client, their permissions and channels
//! (mirrored from the requests and success responses that pass through our layer), and
//! the relayed sockets our address generator created. Reads take short `RwLock` read
//! guards; nothing here is held across an `.await`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::Notify;

use crate::quota::TokenBucket;
use crate::transport::ClientTransport;

mod permissions;

pub use permissions::{OverCapacity, PERMISSION_LIFETIME, Permissions};
/// RFC 8656 section 12: a channel binding lasts 600 s.
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Identifies a client: the kind of transport, the listener's local address and the client's
/// address on it (a TCP/TLS multiplexer gives each stream its own client address). UDP and
/// TCP listeners may share an address, and a UDP and a TCP client may share an ip:port, so
/// the transport kind is part of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub stream: bool,
    pub local: SocketAddr,
    pub client: SocketAddr,
}

impl ClientKey {
    #[must_use]
    pub fn new(transport: &dyn ClientTransport, local: SocketAddr, client: SocketAddr) -> Self {
        Self {
            stream: transport.is_stream(),
            local,
            client,
        }
    }
}

#[derive(Debug, Default)]
struct Channels {
    by_number: HashMap<u16, (SocketAddr, Instant)>,
    by_peer: HashMap<SocketAddr, u16>,
}

/// One live allocation as the fast path sees it.
#[derive(Debug)]
pub struct AllocState {
    pub client: SocketAddr,
    pub transport: Arc<dyn ClientTransport>,
    /// The relayed socket (not the slot: the slot holds this state).
    pub socket: Arc<UdpSocket>,
    pub user: String,
    /// USERNAME and long-term key of the Allocate, to release the allocation on behalf of
    /// a client whose stream closed.
    pub credential: OnceLock<(String, Vec<u8>)>,
    /// The transaction id of the Allocate that made this allocation and the crate's success
    /// answer to it: a retransmission of that Allocate gets the same answer again (RFC 8656
    /// section 7.2), never the crate's 437. One small answer per allocation.
    pub created_by: OnceLock<([u8; 12], Vec<u8>)>,
    permissions: RwLock<Permissions>,
    channels: RwLock<Channels>,
    bucket: Option<Mutex<TokenBucket>>,
}

impl AllocState {
    #[must_use]
    pub fn new(
        client: SocketAddr,
        transport: Arc<dyn ClientTransport>,
        socket: Arc<UdpSocket>,
        user: String,
        bytes_per_second: Option<u64>,
        now: Instant,
    ) -> Self {
        // Burst of a quarter second of traffic, at least one full-size datagram.
        let bucket = bytes_per_second.map(|r| {
            let rate = r as f64;
            Mutex::new(TokenBucket::new(rate, (rate / 4.0).max(1500.0), now))
        });
        Self {
            client,
            transport,
            socket,
            user,
            credential: OnceLock::new(),
            created_by: OnceLock::new(),
            permissions: RwLock::new(Permissions::default()),
            channels: RwLock::new(Channels::default()),
            bucket,
        }
    }

    /// The USERNAME the allocation was made with (RFC 8656 section 5: every later request
    /// must carry it).
    #[must_use]
    pub fn username(&self) -> Option<&str> {
        self.credential.get().map(|(u, _)| u.as_str())
    }

    /// Whether installing or refreshing `ips` keeps this allocation within `cap` peers.
    pub fn admit_permissions(
        &self,
        ips: &[IpAddr],
        cap: usize,
        now: Instant,
    ) -> Result<(), OverCapacity> {
        write(&self.permissions).admit(ips, cap, now)
    }

    /// Installs or refreshes a permission for `ip` (RFC 8656 section 9).
    pub fn add_permission(&self, ip: IpAddr, now: Instant) {
        write(&self.permissions).install(ip, now);
    }

    /// Whether a permission for `ip` is live at `now`.
    #[must_use]
    pub fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        read(&self.permissions).allows(ip, now)
    }

    /// Binds or refreshes `number` to `peer` (also refreshing its permission, RFC 8656
    /// section 12.2).
    pub fn bind_channel(&self, number: u16, peer: SocketAddr, now: Instant) {
        {
            let mut ch = write(&self.channels);
            ch.by_number.insert(number, (peer, now + CHANNEL_LIFETIME));
            ch.by_peer.insert(peer, number);
            let expired: Vec<u16> = ch
                .by_number
                .iter()
                .filter(|(_, (_, exp))| *exp <= now)
                .map(|(n, _)| *n)
                .collect();
            for n in expired {
                if let Some((p, _)) = ch.by_number.remove(&n) {
                    ch.by_peer.remove(&p);
                }
            }
        }
        let mut perms = write(&self.permissions);
        perms.install(peer.ip(), now);
        perms.purge(now);
    }

    /// The peer bound to `number`, if live.
    #[must_use]
    pub fn channel_peer(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        read(&self.channels)
            .by_number
            .get(&number)
            .filter(|(_, exp)| *exp > now)
            .map(|(p, _)| *p)
    }

    /// The channel bound to `peer`, if live.
    #[must_use]
    pub fn channel_of(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        let ch = read(&self.channels);
        let n = *ch.by_peer.get(&peer)?;
        ch.by_number
            .get(&n)
            .filter(|(p, exp)| *p == peer && *exp > now)
            .map(|_| n)
    }

    /// Takes `bytes` from the bitrate budget; `true` when unlimited or within budget.
    pub fn within_bitrate(&self, bytes: usize, now: Instant) -> bool {
        match &self.bucket {
            None => true,
            Some(b) => b
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .try_take(bytes as f64, now),
        }
    }
}

/// A relayed UDP socket our generator bound, shared by the crate's allocation (through
/// `RelayConn`) and our fast path.
#[derive(Debug)]
pub struct RelaySlot {
    pub socket: Arc<UdpSocket>,
    /// What clients see (`external_ip`:port).
    pub advertised: SocketAddr,
    pub state: OnceLock<Arc<AllocState>>,
    pub closed: AtomicBool,
    pub close_notify: Notify,
}

impl RelaySlot {
    #[must_use]
    pub fn new(socket: UdpSocket, advertised: SocketAddr) -> Self {
        Self {
            socket: Arc::new(socket),
            advertised,
            state: OnceLock::new(),
            closed: AtomicBool::new(false),
            close_notify: Notify::new(),
        }
    }

    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// All live allocations and relayed sockets of one relay instance.
#[derive(Debug, Default)]
pub struct Tables {
    by_client: RwLock<HashMap<ClientKey, Arc<AllocState>>>,
    slots: RwLock<HashMap<u16, Arc<RelaySlot>>>,
}

impl Tables {
    pub fn add_slot(&self, slot: Arc<RelaySlot>) {
        write(&self.slots).insert(slot.advertised.port(), slot);
    }

    #[must_use]
    pub fn slot_by_port(&self, port: u16) -> Option<Arc<RelaySlot>> {
        read(&self.slots).get(&port).cloned()
    }

    /// Whether `port` is one of our live relayed ports (for the own-address check).
    #[must_use]
    pub fn is_relay_port(&self, port: u16) -> bool {
        read(&self.slots).contains_key(&port)
    }

    pub fn insert(&self, key: ClientKey, state: Arc<AllocState>) {
        write(&self.by_client).insert(key, state);
    }

    #[must_use]
    pub fn get(&self, key: &ClientKey) -> Option<Arc<AllocState>> {
        read(&self.by_client).get(key).cloned()
    }

    /// Forgets a closed relayed socket and the allocation that used it; returns that
    /// allocation's state.
    pub fn remove_slot(&self, slot: &Arc<RelaySlot>) -> Option<Arc<AllocState>> {
        {
            let mut slots = write(&self.slots);
            if slots
                .get(&slot.advertised.port())
                .is_some_and(|s| Arc::ptr_eq(s, slot))
            {
                slots.remove(&slot.advertised.port());
            }
        }
        let state = slot.state.get()?;
        let key = ClientKey::new(
            state.transport.as_ref(),
            state.transport.local_addr().ok()?,
            state.client,
        );
        let mut by_client = write(&self.by_client);
        if by_client.get(&key).is_some_and(|s| Arc::ptr_eq(s, state)) {
            by_client.remove(&key);
        }
        Some(Arc::clone(state))
    }

    #[must_use]
    pub fn allocations(&self) -> usize {
        read(&self.by_client).len()
    }
}
