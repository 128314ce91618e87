//! When a socket gets fresh TURN credentials (the `ice-servers` event, SPEC section 4): plain
//! data with time passed in, driven by the socket's session task.

use std::time::{Duration, Instant};

/// The share of a credential's lifetime after which it is replaced: 9/10.
const REFRESH_AT_NUM: u32 = 9;
const REFRESH_AT_DEN: u32 = 10;

/// When credentials given at `issued_at` with lifetime `ttl` are due for replacement: once
/// 90 % of their lifetime has passed. `None` when that instant is not representable (never).
#[must_use]
pub fn refresh_due(issued_at: Instant, ttl: Duration) -> Option<Instant> {
    issued_at.checked_add(ttl * REFRESH_AT_NUM / REFRESH_AT_DEN)
}

/// One socket's refresh timer. Armed when the socket is given credentials (a `join-room` ack
/// or an `ice-servers` event), disarmed when it is in no room; so a socket that never joins
/// gets none, and each refresh comes at least 0.9 × ttl after the previous credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRefresh {
    ttl: Duration,
    due: Option<Instant>,
}

impl CredentialRefresh {
    /// A disarmed timer for credentials of lifetime `ttl` (`turn.credential_ttl`).
    #[must_use]
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, due: None }
    }

    /// The socket was given credentials at `now`: the next refresh is due after 90 % of their
    /// lifetime (earlier credentials no longer count).
    pub fn handle_issued(&mut self, now: Instant) {
        self.due = refresh_due(now, self.ttl);
    }

    /// The socket is in no room (it left its last one, or its rooms were deleted): no
    /// refresh until it is given credentials again.
    pub fn handle_no_room(&mut self) {
        self.due = None;
    }

    /// When the next refresh is due, `None` while disarmed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.due
    }

    /// Whether a refresh is due at `now`.
    #[must_use]
    pub fn is_due(&self, now: Instant) -> bool {
        self.due.is_some_and(|due| now >= due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(100);

    #[test]
    fn a_refresh_is_due_once_90_percent_of_the_lifetime_has_passed() {
        let t0 = Instant::now();
        assert_eq!(refresh_due(t0, TTL), Some(t0 + Duration::from_secs(90)));
        assert_eq!(
            refresh_due(t0, Duration::from_secs(86_400)),
            Some(t0 + Duration::from_secs(77_760))
        );
        // Sub-second precision: 10 s → 9 s, 15 s → 13.5 s.
        assert_eq!(
            refresh_due(t0, Duration::from_secs(15)),
            Some(t0 + Duration::from_millis(13_500))
        );
    }

    #[test]
    fn a_socket_never_given_credentials_has_nothing_due() {
        let t0 = Instant::now();
        let r = CredentialRefresh::new(TTL);
        assert_eq!(r.poll_timeout(), None);
        assert!(!r.is_due(t0 + TTL * 10));
    }

    #[test]
    fn credentials_from_a_join_ack_arm_the_timer_for_09_ttl_later() {
        let t0 = Instant::now();
        let mut r = CredentialRefresh::new(TTL);
        r.handle_issued(t0);
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(90)));
        assert!(!r.is_due(t0 + Duration::from_secs(89)));
        assert!(r.is_due(t0 + Duration::from_secs(90)));
    }

    #[test]
    fn the_last_credentials_given_decide_so_refreshes_are_at_least_09_ttl_apart() {
        let t0 = Instant::now();
        let mut r = CredentialRefresh::new(TTL);
        r.handle_issued(t0);
        // A second join (new credentials in its ack) 30 s later pushes the refresh back.
        r.handle_issued(t0 + Duration::from_secs(30));
        assert_eq!(r.poll_timeout(), Some(t0 + Duration::from_secs(120)));
        // The refresh itself counts as credentials given: the next one is 0.9 × ttl later.
        let sent = t0 + Duration::from_secs(121);
        assert!(r.is_due(sent));
        r.handle_issued(sent);
        assert_eq!(r.poll_timeout(), Some(sent + Duration::from_secs(90)));
        assert!(!r.is_due(sent + Duration::from_secs(89)));
    }

    #[test]
    fn leaving_every_room_disarms_the_timer_until_credentials_are_given_again() {
        let t0 = Instant::now();
        let mut r = CredentialRefresh::new(TTL);
        r.handle_issued(t0);
        r.handle_no_room();
        assert_eq!(r.poll_timeout(), None);
        assert!(!r.is_due(t0 + TTL * 10));
        let rejoined = t0 + TTL * 2;
        r.handle_issued(rejoined);
        assert_eq!(r.poll_timeout(), Some(rejoined + Duration::from_secs(90)));
    }

    #[test]
    fn the_refresh_comes_before_the_credentials_expire() {
        let t0 = Instant::now();
        for secs in [10, 60, 3_600, 86_400, 30 * 86_400] {
            let ttl = Duration::from_secs(secs);
            let due = refresh_due(t0, ttl).unwrap_or(t0);
            assert!(due > t0 && due < t0 + ttl, "ttl {secs} s");
            // At least 1 s of margin: credentials expire on a whole second (SPEC section 2).
            assert!(t0 + ttl - due >= Duration::from_secs(1), "ttl {secs} s");
        }
    }
}
