//! Quotas and rate limits (SPEC section 3), as plain state machines with time as input:
//! allocations in total and per user (486 Allocation Quota Reached, RFC 8656 section
//! 7.2), a token bucket (bitrate per allocation), and a per-source limiter for
//! unauthenticated requests whose table is capped.
//!
//! Written by hand rather than with `governor`: these take the clock as an argument (house
//! style) and the source table must stay bounded under a flood of distinct addresses.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Which allocation quota refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaError {
    Total,
    PerUser,
}

/// Allocation counts: live allocations plus Allocates in flight. The gate reserves one at
/// the request and releases it at the error response, when the request expires unanswered,
/// or when the allocation closes; which transaction holds which reservation is the gate's
/// pending table's business (keyed by client 5-tuple and transaction id).
#[derive(Debug)]
pub struct AllocationQuota {
    max_total: usize,
    max_per_user: usize,
    per_user: HashMap<String, usize>,
    total: usize,
}

impl AllocationQuota {
    #[must_use]
    pub fn new(max_total: usize, max_per_user: usize) -> Self {
        Self {
            max_total,
            max_per_user,
            per_user: HashMap::new(),
            total: 0,
        }
    }

    /// Reserves one allocation for `user`.
    pub fn reserve(&mut self, user: &str) -> Result<(), QuotaError> {
        if self.total >= self.max_total {
            return Err(QuotaError::Total);
        }
        let n = self.per_user.get(user).copied().unwrap_or(0);
        if n >= self.max_per_user {
            return Err(QuotaError::PerUser);
        }
        self.per_user.insert(user.to_owned(), n + 1);
        self.total += 1;
        Ok(())
    }

    /// Gives back one reservation or live allocation of `user`.
    pub fn release(&mut self, user: &str) {
        if let Some(n) = self.per_user.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(user);
            }
            self.total = self.total.saturating_sub(1);
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
    use std::time::Duration;

    use super::*;

    /// RFC 8656 section 7.2 step 7: 486 once a user holds its quota.
    #[test]
    fn the_n_plus_first_allocation_of_a_user_is_refused() {
        let mut q = AllocationQuota::new(100, 2);
        assert_eq!(q.reserve("alice"), Ok(()));
        assert_eq!(q.reserve("alice"), Ok(()));
        assert_eq!(q.reserve("alice"), Err(QuotaError::PerUser));
        assert_eq!(q.reserve("bob"), Ok(()));
    }

    #[test]
    fn the_total_quota_spans_users() {
        let mut q = AllocationQuota::new(2, 10);
        assert_eq!(q.reserve("a"), Ok(()));
        assert_eq!(q.reserve("b"), Ok(()));
        assert_eq!(q.reserve("c"), Err(QuotaError::Total));
    }

    #[test]
    fn a_released_reservation_gives_its_slot_back_and_unknown_users_change_nothing() {
        let mut q = AllocationQuota::new(100, 1);
        q.reserve("alice").expect("first");
        assert!(q.reserve("alice").is_err());
        q.release("alice");
        q.reserve("alice").expect("after release");
        q.release("mallory");
        assert_eq!(q.total(), 1);
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
