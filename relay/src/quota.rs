//! Quotas and rate limits (SPEC section 3), as plain state machines with time as input:
//! allocations in total and per user (486 Allocation Quota Reached, RFC 8656 section
//! 7.2), a token bucket (bitrate per allocation), and a per-source limiter for
//! unauthenticated requests whose table is capped.
//!
//! Written by hand rather than with `governor`: these take the clock as an argument (house
//! style) and the source table must stay bounded under a flood of distinct addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Which allocation quota refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaError {
    Total,
    PerUser,
}

/// How long an Allocate may stay reserved without a response from the TURN engine.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(10);

/// Allocation counts: live allocations plus Allocates in flight (reserved at request,
/// committed at the success response, released at the error response or on close).
#[derive(Debug)]
pub struct AllocationQuota {
    max_total: usize,
    max_per_user: usize,
    per_user: HashMap<String, usize>,
    total: usize,
    /// Transaction id -> (user, deadline).
    pending: HashMap<[u8; 12], (String, Instant)>,
}

impl AllocationQuota {
    #[must_use]
    pub fn new(max_total: usize, max_per_user: usize) -> Self {
        Self {
            max_total,
            max_per_user,
            per_user: HashMap::new(),
            total: 0,
            pending: HashMap::new(),
        }
    }

    /// Reserves one allocation for `user` for the Allocate with transaction id `tid`.
    pub fn reserve(&mut self, user: &str, tid: [u8; 12], now: Instant) -> Result<(), QuotaError> {
        self.expire(now);
        if self.pending.contains_key(&tid) {
            // A retransmission of the same Allocate: already counted.
            return Ok(());
        }
        if self.total >= self.max_total {
            return Err(QuotaError::Total);
        }
        let n = self.per_user.get(user).copied().unwrap_or(0);
        if n >= self.max_per_user {
            return Err(QuotaError::PerUser);
        }
        self.per_user.insert(user.to_owned(), n + 1);
        self.total += 1;
        self.pending
            .insert(tid, (user.to_owned(), now + PENDING_TIMEOUT));
        Ok(())
    }

    /// The Allocate succeeded: the reservation becomes a live allocation. Returns its user.
    pub fn commit(&mut self, tid: &[u8; 12]) -> Option<String> {
        self.pending.remove(tid).map(|(user, _)| user)
    }

    /// The Allocate failed: give the reservation back.
    pub fn cancel(&mut self, tid: &[u8; 12]) {
        if let Some((user, _)) = self.pending.remove(tid) {
            self.release(&user);
        }
    }

    /// A live allocation of `user` ended.
    pub fn release(&mut self, user: &str) {
        if let Some(n) = self.per_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(user);
            }
            self.total = self.total.saturating_sub(1);
        }
    }

    /// Drops reservations whose response never came.
    pub fn expire(&mut self, now: Instant) {
        let expired: Vec<[u8; 12]> = self
            .pending
            .iter()
            .filter(|(_, (_, deadline))| *deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            self.cancel(&t);
        }
    }

    /// Live plus in-flight allocations.
    #[must_use]
    pub fn total(&self) -> usize {
        self.total
    }
}

/// A token bucket in units (bytes or requests).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `rate` units per second, holding at most `burst` units; starts full.
    #[must_use]
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes `n` units if available.
    pub fn try_take(&mut self, n: f64, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled completely by `now`.
    #[must_use]
    pub fn is_full(&self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + dt * self.rate >= self.burst
    }
}

/// Per-source-IP limit on unauthenticated requests, in a table of at most `cap` entries.
#[derive(Debug)]
pub struct SourceLimiter {
    rate: f64,
    burst: f64,
    cap: usize,
    table: HashMap<IpAddr, TokenBucket>,
}

impl SourceLimiter {
    #[must_use]
    pub fn new(per_second: u32, cap: usize) -> Self {
        let rate = f64::from(per_second.max(1));
        Self {
            rate,
            burst: rate * 2.0,
            cap: cap.max(1),
            table: HashMap::new(),
        }
    }

    /// Whether one more request from `ip` is allowed at `now`.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.table.contains_key(&ip) && self.table.len() >= self.cap {
            // Forget sources that are back to a full bucket; if every one is still busy
            // (a spoofed flood), start over rather than grow.
            self.table.retain(|_, b| !b.is_full(now));
            if self.table.len() >= self.cap {
                self.table.clear();
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        self.table
            .entry(ip)
            .or_insert_with(|| TokenBucket::new(rate, burst, now))
            .try_take(1.0, now)
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.table.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tid(n: u8) -> [u8; 12] {
        [n; 12]
    }

    /// RFC 8656 section 7.2 step 7: 486 once a user holds its quota.
    #[test]
    fn the_n_plus_first_allocation_of_a_user_is_refused() {
        let now = Instant::now();
        let mut q = AllocationQuota::new(100, 2);
        assert_eq!(q.reserve("alice", tid(1), now), Ok(()));
        assert_eq!(q.reserve("alice", tid(2), now), Ok(()));
        assert_eq!(q.reserve("alice", tid(3), now), Err(QuotaError::PerUser));
        assert_eq!(q.reserve("bob", tid(4), now), Ok(()));
    }

    #[test]
    fn a_retransmitted_allocate_is_not_counted_twice() {
        let now = Instant::now();
        let mut q = AllocationQuota::new(100, 1);
        assert_eq!(q.reserve("alice", tid(1), now), Ok(()));
        assert_eq!(q.reserve("alice", tid(1), now), Ok(()));
        assert_eq!(q.total(), 1);
    }

    #[test]
    fn the_total_quota_spans_users() {
        let now = Instant::now();
        let mut q = AllocationQuota::new(2, 10);
        assert_eq!(q.reserve("a", tid(1), now), Ok(()));
        assert_eq!(q.reserve("b", tid(2), now), Ok(()));
        assert_eq!(q.reserve("c", tid(3), now), Err(QuotaError::Total));
    }

    #[test]
    fn failed_expired_and_closed_allocations_give_their_slot_back() {
        let now = Instant::now();
        let mut q = AllocationQuota::new(100, 1);
        q.reserve("alice", tid(1), now).expect("first");
        q.cancel(&tid(1));
        q.reserve("alice", tid(2), now).expect("after cancel");
        assert_eq!(q.commit(&tid(2)).as_deref(), Some("alice"));
        assert!(q.reserve("alice", tid(3), now).is_err());
        q.release("alice");
        q.reserve("alice", tid(4), now).expect("after release");
        // Never answered: expires.
        assert!(q.reserve("alice", tid(5), now).is_err());
        q.reserve("alice", tid(6), now + PENDING_TIMEOUT)
            .expect("after expiry");
    }

    #[test]
    fn a_token_bucket_refills_at_its_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000.0, 1000.0, t0);
        assert!(b.try_take(1000.0, t0));
        assert!(!b.try_take(1.0, t0));
        assert!(b.try_take(500.0, t0 + Duration::from_millis(500)));
        assert!(!b.try_take(10.0, t0 + Duration::from_millis(500)));
    }

    #[test]
    fn a_source_is_limited_but_others_are_not() {
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let mut l = SourceLimiter::new(10, 100);
        let allowed = (0..100).filter(|_| l.allow(a, t0)).count();
        assert_eq!(allowed, 20, "burst is twice the rate");
        assert!(l.allow(b, t0));
        assert!(l.allow(a, t0 + Duration::from_secs(1)));
    }

    #[test]
    fn the_source_table_never_exceeds_its_cap() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new(10, 1000);
        for i in 0..100_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            l.allow(ip, t0);
            assert!(l.len() <= 1000);
        }
    }
}
