//! The permissions of one allocation (RFC 8656 section 9): peer IP → expiry, bounded.
//!
//! Sans-IO, time as an argument. A permission lasts [`PERMISSION_LIFETIME`] from its last
//! install or refresh; expired ones are removed whenever the table is consulted for
//! admission. [`Permissions::admit`] is asked before a CreatePermission or ChannelBind goes
//! to the crate, so at most `cap` peers ever reach either table (SPEC section 3.1: beyond,
//! 508 Insufficient Capacity, RFC 8656 section 10.2).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::policy::canonical;

/// RFC 8656 section 9: a permission lasts 300 s (refreshed by CreatePermission/ChannelBind).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);

/// More peers than the allocation may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the allocation holds its maximum number of permissions")]
pub struct OverCapacity;

/// Keyed by foldhash (seeded per process) rather than SipHash: the data plane asks on every
/// peer datagram, and the table holds at most the allocation's cap of peers (64 by default),
/// so flooding one bucket gains an attacker nothing.
#[derive(Debug, Default)]
pub struct Permissions {
    by_ip: HashMap<IpAddr, Instant, foldhash::fast::RandomState>,
}

impl Permissions {
    /// Whether installing or refreshing `ips` keeps the allocation within `cap` live peers
    /// at `now` (expired permissions are removed first; refreshing a live one is free).
    pub fn admit(&mut self, ips: &[IpAddr], cap: usize, now: Instant) -> Result<(), OverCapacity> {
        self.purge(now);
        let mut new: Vec<IpAddr> = ips
            .iter()
            .map(|ip| canonical(*ip))
            .filter(|ip| !self.by_ip.contains_key(ip))
            .collect();
        new.sort_unstable();
        new.dedup();
        if self.by_ip.len() + new.len() > cap {
            return Err(OverCapacity);
        }
        Ok(())
    }

    /// Installs or refreshes a permission for `ip` (after the crate confirmed it).
    pub fn install(&mut self, ip: IpAddr, now: Instant) {
        self.by_ip.insert(canonical(ip), now + PERMISSION_LIFETIME);
    }

    /// Whether a permission for `ip` is live at `now`.
    #[must_use]
    pub fn allows(&self, ip: IpAddr, now: Instant) -> bool {
        self.by_ip.get(&canonical(ip)).is_some_and(|exp| *exp > now)
    }

    /// Removes permissions expired at `now`.
    pub fn purge(&mut self, now: Instant) {
        self.by_ip.retain(|_, exp| *exp > now);
    }

    /// Entries held (live or not yet purged).
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(i: u32) -> IpAddr {
        IpAddr::from((0x0808_0000 + i).to_be_bytes())
    }

    /// SPEC section 3.1 / RFC 8656 section 10.2: a CreatePermission that would take the
    /// allocation beyond its cap is refused (508) as a whole; refreshing live ones is not.
    #[test]
    fn peers_beyond_the_cap_are_refused_and_refreshes_are_free() {
        let t0 = Instant::now();
        let mut p = Permissions::default();
        let first: Vec<IpAddr> = (0..4).map(ip).collect();
        p.admit(&first, 4, t0).expect("four fit");
        for a in &first {
            p.install(*a, t0);
        }
        assert_eq!(p.admit(&[ip(9)], 4, t0), Err(OverCapacity));
        assert_eq!(p.admit(&first, 4, t0), Ok(()), "refresh of live peers");
        // Duplicates and the IPv4-mapped form count once.
        let mapped: IpAddr = "::ffff:8.8.0.0".parse().expect("ip");
        assert_eq!(p.admit(&[ip(0), mapped, ip(0)], 4, t0), Ok(()));
        assert_eq!(p.admit(&[ip(5), ip(6)], 5, t0), Err(OverCapacity));
        assert_eq!(p.admit(&[ip(5), ip(5)], 5, t0), Ok(()));
    }

    /// RFC 8656 section 9: a permission not refreshed for 300 s expires; expired ones are
    /// removed and their room given to new peers.
    #[test]
    fn expired_permissions_are_removed_and_free_their_room() {
        let t0 = Instant::now();
        let mut p = Permissions::default();
        for i in 0..3 {
            p.install(ip(i), t0);
        }
        assert!(p.allows(ip(0), t0 + PERMISSION_LIFETIME - Duration::from_secs(1)));
        let later = t0 + PERMISSION_LIFETIME;
        assert!(!p.allows(ip(0), later));
        assert_eq!(p.len(), 3, "not yet purged");
        p.admit(&[ip(7), ip(8), ip(9)], 3, later)
            .expect("the expired ones made room");
        assert!(p.is_empty(), "purged on admission");
    }
}
