//! One worker's forwarding table, sans I/O: the allocations whose client packets reach this
//! worker, each with its permissions, channels and bitrate budget, and the decisions the
//! data path takes on them. Time is an argument; `S` is whatever the worker keeps beside
//! each entry to do the I/O (its relayed socket, the client's leg), `()` in tests.
//!
//! The control plane (the gate) writes here when the engine confirms a request (Allocate,
//! CreatePermission, ChannelBind) and when an allocation ends; the worker reads once per
//! received batch. Keys hash with foldhash (seeded per process): the table holds only
//! authenticated allocations, bounded by `max_allocations`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::control::tables::{ClientKey, Permissions};
use crate::policy::quota::TokenBucket;

/// RFC 8656 section 12: a channel binding lasts 600 s.
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Why a data packet was not relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// No allocation for this client on this worker.
    NoAllocation,
    /// ChannelData on a channel that is not bound (or expired).
    NoChannel,
    /// No live permission for the peer (RFC 8656 sections 9, 11.3).
    NoPermission,
    /// Over the allocation's bitrate budget (SPEC section 3.1).
    Bitrate,
}

/// How a peer's datagram travels to the client (RFC 8656 sections 11.4, 12.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToClient {
    Channel(u16),
    Indication,
}

#[derive(Debug, Default)]
struct Channels {
    by_number: Map<u16, (SocketAddr, Instant)>,
    by_peer: Map<SocketAddr, u16>,
}

/// One allocation as the data path sees it.
#[derive(Debug)]
pub struct Entry<S> {
    pub io: S,
    permissions: Permissions,
    channels: Channels,
    bucket: Option<TokenBucket>,
}

impl<S> Entry<S> {
    /// `bytes_per_second`: the allocation's budget (both directions), `None` = unlimited.
    #[must_use]
    pub fn new(io: S, bytes_per_second: Option<u64>, now: Instant) -> Self {
        // Burst of a quarter second of traffic, at least one full-size datagram.
        let bucket = bytes_per_second.map(|r| {
            let rate = r as f64;
            TokenBucket::new(rate, (rate / 4.0).max(1500.0), now)
        });
        Self {
            io,
            permissions: Permissions::default(),
            channels: Channels::default(),
            bucket,
        }
    }

    /// Installs or refreshes permissions for `ips` (the engine confirmed them).
    pub fn permit(&mut self, ips: &[IpAddr], now: Instant) {
        for ip in ips {
            self.permissions.install(*ip, now);
        }
        self.permissions.purge(now);
    }

    /// Binds or refreshes `number` to `peer`, and the peer's permission (RFC 8656 section
    /// 12.2). Expired bindings are removed; a number or peer bound elsewhere before is
    /// rebound (the gate refuses conflicting binds before the engine sees them).
    pub fn bind(&mut self, number: u16, peer: SocketAddr, now: Instant) {
        let ch = &mut self.channels;
        if let Some((old, _)) = ch.by_number.insert(number, (peer, now + CHANNEL_LIFETIME))
            && old != peer
            && ch.by_peer.get(&old) == Some(&number)
        {
            ch.by_peer.remove(&old);
        }
        ch.by_peer.insert(peer, number);
        ch.by_number.retain(|_, (_, exp)| *exp > now);
        let by_number = &ch.by_number;
        ch.by_peer
            .retain(|p, n| by_number.get(n).is_some_and(|(q, _)| q == p));
        self.permissions.install(peer.ip(), now);
        self.permissions.purge(now);
    }

    fn spend(&mut self, len: usize, now: Instant) -> Result<(), Dropped> {
        match &mut self.bucket {
            Some(b) => {
                if b.try_take(len as f64, now) {
                    Ok(())
                } else {
                    Err(Dropped::Bitrate)
                }
            }
            None => Ok(()),
        }
    }

    /// The peer bound to `number`, if live at `now`.
    #[must_use]
    pub fn channel_peer(&self, number: u16, now: Instant) -> Option<SocketAddr> {
        self.channels
            .by_number
            .get(&number)
            .filter(|(_, exp)| *exp > now)
            .map(|(p, _)| *p)
    }

    /// The live channel bound to `peer`, if any.
    #[must_use]
    pub fn channel_of(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        let ch = &self.channels;
        let n = *ch.by_peer.get(&peer)?;
        ch.by_number
            .get(&n)
            .filter(|(p, exp)| *p == peer && *exp > now)
            .map(|_| n)
    }

    /// Whether a permission for `ip` is live at `now`.
    #[must_use]
    pub fn has_permission(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.allows(ip, now)
    }

    /// RFC 8656 section 12.5: ChannelData of `len` bytes on `number` goes to the bound peer.
    pub fn channel_to_peer(
        &mut self,
        number: u16,
        len: usize,
        now: Instant,
    ) -> Result<SocketAddr, Dropped> {
        let peer = self.channel_peer(number, now).ok_or(Dropped::NoChannel)?;
        self.spend(len, now)?;
        Ok(peer)
    }

    /// RFC 8656 section 11.2: a Send indication's data goes to `peer` if a permission
    /// exists (the peer policy is checked by the caller first).
    pub fn send_to_peer(
        &mut self,
        peer: SocketAddr,
        len: usize,
        now: Instant,
    ) -> Result<(), Dropped> {
        if !self.permissions.allows(peer.ip(), now) {
            return Err(Dropped::NoPermission);
        }
        self.spend(len, now)
    }

    /// RFC 8656 sections 11.3, 12.6: a datagram from `peer` goes to the client only with a
    /// permission, as ChannelData on its live channel or else as a Data indication.
    pub fn peer_to_client(
        &mut self,
        peer: SocketAddr,
        len: usize,
        now: Instant,
    ) -> Result<ToClient, Dropped> {
        if !self.permissions.allows(peer.ip(), now) {
            return Err(Dropped::NoPermission);
        }
        self.spend(len, now)?;
        Ok(self
            .channel_of(peer, now)
            .map_or(ToClient::Indication, ToClient::Channel))
    }

    /// Live channel bindings (for tests and metrics).
    #[must_use]
    pub fn channels(&self) -> usize {
        self.channels.by_number.len()
    }
}

/// The allocations one worker serves, by client.
#[derive(Debug)]
pub struct Table<S> {
    by_client: Map<ClientKey, Entry<S>>,
}

impl<S> Default for Table<S> {
    fn default() -> Self {
        Self {
            by_client: Map::default(),
        }
    }
}

impl<S> Table<S> {
    /// Adds the allocation of `key`; returns the entry it replaced, if any.
    pub fn insert(&mut self, key: ClientKey, entry: Entry<S>) -> Option<Entry<S>> {
        self.by_client.insert(key, entry)
    }

    pub fn remove(&mut self, key: &ClientKey) -> Option<Entry<S>> {
        self.by_client.remove(key)
    }

    #[must_use]
    pub fn get(&self, key: &ClientKey) -> Option<&Entry<S>> {
        self.by_client.get(key)
    }

    pub fn get_mut(&mut self, key: &ClientKey) -> Option<&mut Entry<S>> {
        self.by_client.get_mut(key)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.by_client.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// Every entry, for shutdown.
    pub fn drain(&mut self) -> impl Iterator<Item = (ClientKey, Entry<S>)> + '_ {
        self.by_client.drain()
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
