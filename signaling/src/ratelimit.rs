//! Per-socket token bucket (`rate_limit_per_second`, `rate_limit_burst`), on `governor`.

use std::num::NonZeroU32;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// One socket's bucket. `C` is the clock, so tests can drive time by hand.
pub struct EventLimiter<C: Clock = DefaultClock> {
    inner: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
}

impl<C: Clock> std::fmt::Debug for EventLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventLimiter")
    }
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
    Quota::per_second(rate).allow_burst(burst)
}

impl EventLimiter<DefaultClock> {
    #[must_use]
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self::with_clock(per_second, burst, DefaultClock::default())
    }
}

impl<C: Clock> EventLimiter<C> {
    #[must_use]
    pub fn with_clock(per_second: u32, burst: u32, clock: C) -> Self {
        Self {
            inner: RateLimiter::direct_with_clock(quota(per_second, burst), clock),
        }
    }

    /// Takes one token; `false` when the bucket is empty (the event is refused).
    pub fn allow(&self) -> bool {
        self.inner.check().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn a_full_burst_is_allowed_then_the_next_event_is_refused() {
        let clock = FakeRelativeClock::default();
        let l = EventLimiter::with_clock(10, 50, clock.clone());
        for i in 0..50 {
            assert!(l.allow(), "event {i} of the burst");
        }
        assert!(!l.allow());
    }

    #[test]
    fn tokens_come_back_at_the_sustained_rate() {
        let clock = FakeRelativeClock::default();
        let l = EventLimiter::with_clock(10, 10, clock.clone());
        for _ in 0..10 {
            assert!(l.allow());
        }
        assert!(!l.allow());
        clock.advance(Duration::from_millis(100));
        assert!(l.allow(), "one token per 100 ms at 10/s");
        assert!(!l.allow());
        clock.advance(Duration::from_secs(1));
        let allowed = (0..20).filter(|_| l.allow()).count();
        assert_eq!(allowed, 10, "refill never exceeds the burst");
    }
}
