//! Stateless NONCEs (RFC 8489 section 9.2): `hex(issued_at) || hex(HMAC(key, issued_at ||
//! client ip))`. Verifying one needs no table, so a flood of unauthenticated requests
//! cannot grow memory (SPEC section 3).

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// How long a nonce stays fresh; afterwards the client gets 438 Stale Nonce.
pub const NONCE_LIFETIME_SECS: u64 = 3600;

/// Length of the MAC part, in hex characters.
const MAC_HEX: usize = 24;

/// Outcome of checking a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Fresh,
    /// Ours, but too old: answer 438 (RFC 8489 section 9.2.5).
    Stale,
    /// Not ours (or for another client address).
    Invalid,
}

/// Issues and verifies nonces with a per-process random key.
#[derive(Clone)]
pub struct NonceIssuer {
    key: [u8; 32],
}

impl std::fmt::Debug for NonceIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NonceIssuer")
    }
}

impl NonceIssuer {
    #[must_use]
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self, issued: u64, ip: IpAddr) -> HmacSha1 {
        let mut mac = <HmacSha1 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(&issued.to_be_bytes());
        match ip {
            IpAddr::V4(v4) => mac.update(&v4.octets()),
            IpAddr::V6(v6) => mac.update(&v6.octets()),
        }
        mac
    }

    /// A nonce for a client at `ip`, issued at `now_unix`.
    #[must_use]
    pub fn issue(&self, ip: IpAddr, now_unix: u64) -> String {
        let tag = self.mac(now_unix, ip).finalize().into_bytes();
        let mut out = format!("{now_unix:016x}");
        for b in &tag[..MAC_HEX / 2] {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// Checks a nonce presented by a client at `ip` at `now_unix`.
    #[must_use]
    pub fn check(&self, nonce: &str, ip: IpAddr, now_unix: u64) -> NonceCheck {
        if nonce.len() != 16 + MAC_HEX || !nonce.is_ascii() {
            return NonceCheck::Invalid;
        }
        let (ts, tag) = nonce.split_at(16);
        let Ok(issued) = u64::from_str_radix(ts, 16) else {
            return NonceCheck::Invalid;
        };
        let mut given = [0u8; MAC_HEX / 2];
        for (i, chunk) in tag.as_bytes().chunks(2).enumerate() {
            let Some(b) = std::str::from_utf8(chunk)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
            else {
                return NonceCheck::Invalid;
            };
            given[i] = b;
        }
        if self.mac(issued, ip).verify_truncated_left(&given).is_err() {
            return NonceCheck::Invalid;
        }
        if issued > now_unix.saturating_add(5)
            || now_unix.saturating_sub(issued) >= NONCE_LIFETIME_SECS
        {
            return NonceCheck::Stale;
        }
        NonceCheck::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_fresh_nonce_verifies_for_the_client_it_was_issued_to() {
        let n = NonceIssuer::new([7; 32]);
        let nonce = n.issue(ip("192.0.2.1"), 1000);
        assert_eq!(n.check(&nonce, ip("192.0.2.1"), 1000), NonceCheck::Fresh);
        assert_eq!(n.check(&nonce, ip("192.0.2.2"), 1000), NonceCheck::Invalid);
    }

    /// RFC 8489 section 9.2.5: an expired nonce gets 438 Stale Nonce, not 401.
    #[test]
    fn an_old_nonce_is_stale_not_invalid() {
        let n = NonceIssuer::new([7; 32]);
        let nonce = n.issue(ip("::1"), 1000);
        assert_eq!(
            n.check(&nonce, ip("::1"), 1000 + NONCE_LIFETIME_SECS),
            NonceCheck::Stale
        );
    }

    #[test]
    fn forged_or_garbage_nonces_are_invalid() {
        let n = NonceIssuer::new([7; 32]);
        let other = NonceIssuer::new([8; 32]).issue(ip("10.0.0.1"), 5);
        assert_eq!(n.check(&other, ip("10.0.0.1"), 5), NonceCheck::Invalid);
        for g in ["", "abc", &"z".repeat(40), "é"] {
            assert_eq!(n.check(g, ip("10.0.0.1"), 5), NonceCheck::Invalid);
        }
    }
}
