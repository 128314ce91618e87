//! Open TCP/TLS connections per source (SPEC section 3.1: at most
//! `relay.max_stream_connections_per_ip` from one source IP, on top of the global cap), so
//! one address cannot fill the global cap with idle connections.
//!
//! A source is an IPv4 address (IPv4-mapped IPv6 counts as the IPv4 address) or an IPv6
//! /64: one subscriber line or host usually gets a whole /64, so counting single IPv6
//! addresses would let one host open 2^64 × the cap. Sans-IO.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};

use crate::policy::canonical;

/// The source a connection from `ip` counts against.
#[must_use]
pub fn source_of(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Connections open per source, each at most `cap`. Only sources with an open connection
/// are kept, so the table is bounded by the global connection cap.
#[derive(Debug)]
pub struct SourceCounts {
    cap: usize,
    open: HashMap<IpAddr, usize>,
}

impl SourceCounts {
    #[must_use]
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            open: HashMap::new(),
        }
    }

    /// Counts one more connection from `ip`; `false` (nothing counted) at the cap.
    pub fn try_add(&mut self, ip: IpAddr) -> bool {
        let n = self.open.entry(source_of(ip)).or_insert(0);
        if *n >= self.cap {
            return false;
        }
        *n += 1;
        true
    }

    /// A connection from `ip` closed.
    pub fn remove(&mut self, ip: IpAddr) {
        let key = source_of(ip);
        if let Some(n) = self.open.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.open.remove(&key);
            }
        }
    }

    /// Connections open from `ip`'s source.
    #[must_use]
    pub fn open(&self, ip: IpAddr) -> usize {
        self.open.get(&source_of(ip)).copied().unwrap_or(0)
    }

    /// Sources with an open connection.
    #[must_use]
    pub fn sources(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// SPEC section 3.1: the cap is per source; other sources are unaffected and a closed
    /// connection frees its place.
    #[test]
    fn a_source_gets_at_most_cap_connections_and_a_close_frees_one() {
        let mut c = SourceCounts::new(2);
        assert!(c.try_add(ip("192.0.2.1")));
        assert!(c.try_add(ip("192.0.2.1")));
        assert!(!c.try_add(ip("192.0.2.1")));
        assert!(c.try_add(ip("192.0.2.2")));
        c.remove(ip("192.0.2.1"));
        assert!(c.try_add(ip("192.0.2.1")));
        assert_eq!(c.open(ip("192.0.2.1")), 2);
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_count_and_mapped_ipv4_is_ipv4() {
        let mut c = SourceCounts::new(2);
        assert!(c.try_add(ip("2001:db8:1:2::1")));
        assert!(c.try_add(ip("2001:db8:1:2:ffff::9")));
        assert!(!c.try_add(ip("2001:db8:1:2::3")), "same /64");
        assert!(c.try_add(ip("2001:db8:1:3::1")), "another /64");
        assert!(c.try_add(ip("::ffff:192.0.2.7")));
        assert!(c.try_add(ip("192.0.2.7")));
        assert!(
            !c.try_add(ip("192.0.2.7")),
            "the mapped form counted against the IPv4"
        );
    }

    #[test]
    fn sources_without_open_connections_are_forgotten() {
        let mut c = SourceCounts::new(5);
        for i in 0..100u8 {
            let a = IpAddr::from([198, 51, 100, i]);
            assert!(c.try_add(a));
            c.remove(a);
        }
        assert_eq!(c.sources(), 0);
        c.remove(ip("192.0.2.1"));
        assert_eq!(c.sources(), 0, "removing an unknown source changes nothing");
    }
}
