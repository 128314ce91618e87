//! The control plane's state: live allocations by client (owner, credential, permissions
//! for the per-allocation cap, the worker that relays its data), and the relayed sockets
//! our address generator created. Only requests and the engine's answers touch it: the
//! data path reads its worker's own table (`dataplane::table`) and the lock-free
//! [`RelayPorts`] set. Nothing here is held across an `.await`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::Notify;

use crate::dataplane::WorkerShared;
use crate::transport::ClientTransport;

mod permissions;

pub use crate::dataplane::table::CHANNEL_LIFETIME;
pub use permissions::{OverCapacity, PERMISSION_LIFETIME, Permissions};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

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

/// One live allocation as the control plane sees it.
#[derive(Debug)]
pub struct AllocState {
    pub client: SocketAddr,
    pub transport: Arc<dyn ClientTransport>,
    /// The worker whose table relays this allocation's data, and its key there.
    pub worker: Arc<WorkerShared>,
    pub key: ClientKey,
    pub user: String,
    /// USERNAME and long-term key of the Allocate, to release the allocation on behalf of
    /// a client whose stream closed.
    pub credential: OnceLock<(String, Vec<u8>)>,
    /// The transaction id of the Allocate that made this allocation and the crate's success
    /// answer to it: a retransmission of that Allocate gets the same answer again (RFC 8656
    /// section 7.2), never the crate's 437. One small answer per allocation.
    pub created_by: OnceLock<([u8; 12], Vec<u8>)>,
    permissions: Mutex<Permissions>,
}

impl AllocState {
    #[must_use]
    pub fn new(
        client: SocketAddr,
        transport: Arc<dyn ClientTransport>,
        worker: Arc<WorkerShared>,
        key: ClientKey,
        user: String,
    ) -> Self {
        Self {
            client,
            transport,
            worker,
            key,
            user,
            credential: OnceLock::new(),
            created_by: OnceLock::new(),
            permissions: Mutex::new(Permissions::default()),
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
        lock(&self.permissions).admit(ips, cap, now)
    }

    /// The engine confirmed permissions for `ips` (CreatePermission, or ChannelBind's
    /// peer): counted here for the cap, and installed in the worker's table for the data.
    pub fn permit(&self, ips: &[IpAddr], now: Instant) {
        {
            let mut p = lock(&self.permissions);
            for ip in ips {
                p.install(*ip, now);
            }
            p.purge(now);
        }
        if let Some(e) = self.worker.table().get_mut(&self.key) {
            e.permit(ips, now);
        }
    }

    /// The engine confirmed channel `number` for `peer` (RFC 8656 section 12.2: it also
    /// installs or refreshes the peer's permission).
    pub fn bind_channel(&self, number: u16, peer: SocketAddr, now: Instant) {
        {
            let mut p = lock(&self.permissions);
            p.install(peer.ip(), now);
            p.purge(now);
        }
        if let Some(e) = self.worker.table().get_mut(&self.key) {
            e.bind(number, peer, now);
        }
    }

    /// Whether a permission for `ip` is live at `now` (as the control plane counts them).
    #[must_use]
    pub fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        lock(&self.permissions).allows(ip, now)
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

/// The ports of our live relayed sockets, readable without a lock (the data path checks
/// every Send indication's peer against them: relaying to ourselves is refused).
#[derive(Debug)]
pub struct RelayPorts {
    bits: Vec<AtomicU64>,
}

impl Default for RelayPorts {
    fn default() -> Self {
        Self {
            bits: (0..1024).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl RelayPorts {
    fn slot(&self, port: u16) -> (&AtomicU64, u64) {
        (&self.bits[usize::from(port >> 6)], 1u64 << (port & 63))
    }

    pub fn set(&self, port: u16, on: bool) {
        let (word, bit) = self.slot(port);
        if on {
            word.fetch_or(bit, Ordering::AcqRel);
        } else {
            word.fetch_and(!bit, Ordering::AcqRel);
        }
    }

    #[must_use]
    pub fn contains(&self, port: u16) -> bool {
        let (word, bit) = self.slot(port);
        word.load(Ordering::Acquire) & bit != 0
    }
}

/// All live allocations and relayed sockets of one relay instance.
#[derive(Debug, Default)]
pub struct Tables {
    by_client: RwLock<HashMap<ClientKey, Arc<AllocState>>>,
    slots: RwLock<HashMap<u16, Arc<RelaySlot>>>,
    ports: RelayPorts,
}

impl Tables {
    pub fn add_slot(&self, slot: Arc<RelaySlot>) {
        let port = slot.advertised.port();
        write(&self.slots).insert(port, slot);
        self.ports.set(port, true);
    }

    #[must_use]
    pub fn slot_by_port(&self, port: u16) -> Option<Arc<RelaySlot>> {
        read(&self.slots).get(&port).cloned()
    }

    /// Whether `port` is one of our live relayed ports (for the own-address check).
    #[must_use]
    pub fn is_relay_port(&self, port: u16) -> bool {
        self.ports.contains(port)
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
                self.ports.set(slot.advertised.port(), false);
            }
        }
        let state = slot.state.get()?;
        {
            let mut by_client = write(&self.by_client);
            if by_client
                .get(&state.key)
                .is_some_and(|s| Arc::ptr_eq(s, state))
            {
                by_client.remove(&state.key);
            }
        }
        state.worker.remove(&state.key, &slot.socket);
        Some(Arc::clone(state))
    }

    #[must_use]
    pub fn allocations(&self) -> usize {
        read(&self.by_client).len()
    }
}
