//! The per-source-IP connection cap (`signaling.max_connections_per_ip`) as plain data, time
//! passed in: what counts is every live Socket.IO connection plus every Engine.IO session
//! opened and not yet connected (those stop counting after the connect timeout, when the
//! engine closes them), so neither finished nor half-open sessions can exceed the cap.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long an Engine.IO session may stay open without a Socket.IO CONNECT (and counts as
/// pending against the cap).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);

#[derive(Debug, Default)]
struct Entry {
    live: usize,
    /// When each not-yet-connected session was opened, oldest first.
    pending: VecDeque<Instant>,
}

impl Entry {
    fn prune(&mut self, now: Instant, ttl: Duration) {
        while self
            .pending
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= ttl)
        {
            self.pending.pop_front();
        }
    }

    fn total(&self) -> usize {
        self.live + self.pending.len()
    }
}

/// Connections per source IP, with a cap.
#[derive(Debug)]
pub struct PerIpConnections {
    cap: usize,
    pending_ttl: Duration,
    by_ip: HashMap<IpAddr, Entry>,
}

impl PerIpConnections {
    /// `pending_ttl`: how long an opened session counts before it connects (the engine's
    /// connect timeout).
    #[must_use]
    pub fn new(cap: usize, pending_ttl: Duration) -> Self {
        Self {
            cap,
            pending_ttl,
            by_ip: HashMap::new(),
        }
    }

    /// A new Engine.IO session from `ip`: `false` (refuse it) at the cap.
    pub fn handle_new_session(&mut self, ip: IpAddr, now: Instant) -> bool {
        let ttl = self.pending_ttl;
        let e = self.by_ip.entry(ip).or_default();
        e.prune(now, ttl);
        if e.total() >= self.cap {
            return false;
        }
        e.pending.push_back(now);
        true
    }

    /// A Socket.IO connection from `ip` completed its handshake: it takes the place of one of
    /// its pending sessions. `false` (refuse it) when it had none and `ip` is at the cap.
    pub fn handle_connected(&mut self, ip: IpAddr, now: Instant) -> bool {
        let ttl = self.pending_ttl;
        let e = self.by_ip.entry(ip).or_default();
        e.prune(now, ttl);
        if e.pending.pop_front().is_none() && e.total() >= self.cap {
            return false;
        }
        e.live += 1;
        true
    }

    /// A connection from `ip` ended.
    pub fn handle_closed(&mut self, ip: IpAddr, now: Instant) {
        let ttl = self.pending_ttl;
        if let Some(e) = self.by_ip.get_mut(&ip) {
            e.live = e.live.saturating_sub(1);
            e.prune(now, ttl);
            if e.total() == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }

    /// Live plus pending connections of `ip`.
    #[must_use]
    pub fn count(&self, ip: IpAddr) -> usize {
        self.by_ip.get(&ip).map_or(0, Entry::total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));
    const TTL: Duration = Duration::from_secs(45);

    #[test]
    fn live_and_half_open_sessions_together_are_capped_per_ip() {
        let t0 = Instant::now();
        let mut c = PerIpConnections::new(3, TTL);
        assert!(c.handle_new_session(IP, t0));
        assert!(c.handle_connected(IP, t0), "the pending one connects");
        assert!(c.handle_new_session(IP, t0));
        assert!(c.handle_new_session(IP, t0), "1 live + 2 pending = 3");
        assert!(!c.handle_new_session(IP, t0), "a fourth is refused");
        assert!(
            c.handle_new_session(OTHER, t0),
            "another address is not affected"
        );
        c.handle_closed(IP, t0);
        assert!(c.handle_new_session(IP, t0), "a closed one frees its place");
        assert_eq!(c.count(IP), 3);
    }

    #[test]
    fn a_session_that_never_connects_stops_counting_after_the_connect_timeout() {
        let t0 = Instant::now();
        let mut c = PerIpConnections::new(2, TTL);
        assert!(c.handle_new_session(IP, t0));
        assert!(c.handle_new_session(IP, t0));
        assert!(!c.handle_new_session(IP, t0 + TTL - Duration::from_millis(1)));
        assert!(c.handle_new_session(IP, t0 + TTL));
        c.handle_closed(IP, t0 + 3 * TTL);
        assert_eq!(c.count(IP), 0, "nothing left: the entry is removed");
    }

    #[test]
    fn a_connection_without_a_pending_session_counts_within_the_cap() {
        let t0 = Instant::now();
        let mut c = PerIpConnections::new(1, TTL);
        assert!(c.handle_connected(IP, t0));
        assert!(!c.handle_connected(IP, t0));
        assert!(!c.handle_new_session(IP, t0));
    }
}
