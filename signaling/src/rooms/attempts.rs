//! Failed room-password attempts, limited per (room, source IP) and per source IP in a fixed
//! window, and the slow hashes (create or check) each source IP may cause, in tables with a
//! hard cap on entries. Plain data: time comes in as an argument.
//!
//! IPv6 sources are counted per /64 (one host usually holds a whole /64), IPv4-mapped IPv6
//! as the IPv4 address.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// Length of one counting window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Failed attempts per (room, IP) per window; beyond: `rate-limited`.
pub const MAX_PER_ROOM_AND_IP: u32 = 5;
/// Failed attempts per IP (all rooms) per window; beyond: `rate-limited`.
pub const MAX_PER_IP: u32 = 20;
/// Slow hashes (a room created with a password, or a password checked) per IP per window:
/// argon2 costs tens of milliseconds and 19 MiB, so hashing on demand must be bounded too.
pub const MAX_HASHES_PER_IP: u32 = 60;
/// Most entries in each table; when full, expired entries go first, then the oldest.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    failures: u32,
}

impl Window {
    fn live(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.start) < WINDOW
    }
}

/// The source a failure is counted against.
#[must_use]
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// Both tables.
#[derive(Debug)]
pub struct FailedAttempts {
    by_room_ip: HashMap<(String, IpAddr), Window>,
    by_ip: HashMap<IpAddr, Window>,
    hashes_by_ip: HashMap<IpAddr, Window>,
    max_entries: usize,
}

impl Default for FailedAttempts {
    fn default() -> Self {
        Self::new(MAX_ENTRIES)
    }
}

impl FailedAttempts {
    #[must_use]
    pub fn new(max_entries: usize) -> Self {
        Self {
            by_room_ip: HashMap::new(),
            by_ip: HashMap::new(),
            hashes_by_ip: HashMap::new(),
            max_entries: max_entries.max(1),
        }
    }

    /// Whether `ip` may try a password on `room` now.
    #[must_use]
    pub fn allowed(&self, room: &str, ip: IpAddr, now: Instant) -> bool {
        let ip = source_key(ip);
        let under =
            |w: Option<&Window>, max: u32| w.is_none_or(|w| !w.live(now) || w.failures < max);
        under(self.by_ip.get(&ip), MAX_PER_IP)
            && under(
                self.by_room_ip.get(&(room.to_string(), ip)),
                MAX_PER_ROOM_AND_IP,
            )
    }

    /// Records a wrong (or missing) password from `ip` on `room`.
    pub fn handle_failure(&mut self, room: &str, ip: IpAddr, now: Instant) {
        let ip = source_key(ip);
        bump(&mut self.by_ip, ip, now, self.max_entries);
        bump(
            &mut self.by_room_ip,
            (room.to_string(), ip),
            now,
            self.max_entries,
        );
    }

    /// Takes one slow hash from `ip`'s budget; `false` (and nothing taken) when it is spent.
    pub fn try_hash(&mut self, ip: IpAddr, now: Instant) -> bool {
        let ip = source_key(ip);
        let spent = self
            .hashes_by_ip
            .get(&ip)
            .is_some_and(|w| w.live(now) && w.failures >= MAX_HASHES_PER_IP);
        if !spent {
            bump(&mut self.hashes_by_ip, ip, now, self.max_entries);
        }
        !spent
    }

    /// Entries held (all tables): never more than three times the cap.
    #[must_use]
    pub fn len(&self) -> usize {
        self.by_ip.len() + self.by_room_ip.len() + self.hashes_by_ip.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn bump<K: Hash + Eq + Clone>(map: &mut HashMap<K, Window>, key: K, now: Instant, max: usize) {
    if let Some(w) = map.get_mut(&key) {
        if w.live(now) {
            w.failures = w.failures.saturating_add(1);
        } else {
            *w = Window {
                start: now,
                failures: 1,
            };
        }
        return;
    }
    if map.len() >= max {
        map.retain(|_, w| w.live(now));
    }
    if map.len() >= max {
        // Still full of live entries (a spray from many sources): forget the oldest.
        if let Some(oldest) = map
            .iter()
            .min_by_key(|(_, w)| w.start)
            .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    map.insert(
        key,
        Window {
            start: now,
            failures: 1,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn five_failures_on_one_room_from_one_ip_block_that_pair_only_until_the_window_ends() {
        let mut a = FailedAttempts::default();
        let t0 = Instant::now();
        for _ in 0..MAX_PER_ROOM_AND_IP {
            assert!(a.allowed("r", ip("192.0.2.1"), t0));
            a.handle_failure("r", ip("192.0.2.1"), t0);
        }
        assert!(!a.allowed("r", ip("192.0.2.1"), t0));
        assert!(a.allowed("other", ip("192.0.2.1"), t0), "another room");
        assert!(a.allowed("r", ip("192.0.2.2"), t0), "another source");
        assert!(a.allowed("r", ip("192.0.2.1"), t0 + WINDOW));
    }

    #[test]
    fn twenty_failures_from_one_ip_across_rooms_block_that_ip_everywhere() {
        let mut a = FailedAttempts::default();
        let t0 = Instant::now();
        for i in 0..MAX_PER_IP {
            a.handle_failure(&format!("room-{i}"), ip("2001:db8::1"), t0);
        }
        assert!(!a.allowed("fresh", ip("2001:db8::1"), t0));
        assert!(
            !a.allowed("fresh", ip("2001:db8::2"), t0),
            "IPv6 is counted per /64"
        );
        assert!(a.allowed("fresh", ip("2001:db8:0:1::1"), t0));
    }

    #[test]
    fn each_ip_may_cause_a_bounded_number_of_slow_hashes_per_window() {
        let mut a = FailedAttempts::default();
        let t0 = Instant::now();
        for _ in 0..MAX_HASHES_PER_IP {
            assert!(a.try_hash(ip("192.0.2.1"), t0));
        }
        assert!(!a.try_hash(ip("192.0.2.1"), t0));
        assert!(a.try_hash(ip("192.0.2.2"), t0));
        assert!(a.try_hash(ip("192.0.2.1"), t0 + WINDOW));
    }

    #[test]
    fn the_tables_never_hold_more_than_the_cap_under_a_spray_of_sources_and_rooms() {
        let mut a = FailedAttempts::new(100);
        let t0 = Instant::now();
        for i in 0u32..5_000 {
            let src = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
            a.handle_failure(
                &format!("room-{i}"),
                src,
                t0 + Duration::from_millis(u64::from(i)),
            );
            assert!(a.len() <= 200, "{}", a.len());
        }
        // Expired entries are dropped first when the table is full.
        a.handle_failure("late", ip("192.0.2.9"), t0 + WINDOW * 10);
        assert!(a.len() <= 300);
        assert!(!a.is_empty());
    }
}
