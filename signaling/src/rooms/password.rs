//! Room passwords: stored as salted SHA-256, compared in constant time.
//!
//! Room passwords are short-lived shared secrets for one call, not account passwords, so a
//! salted SHA-256 (no stretching) is what we keep: the plain text never stays in memory.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A salted digest of a room password.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    salt: [u8; 16],
    digest: [u8; 32],
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

impl PasswordHash {
    /// Hashes `password` with `salt` (random per room; given by the caller).
    #[must_use]
    pub fn new(password: &str, salt: [u8; 16]) -> Self {
        Self {
            salt,
            digest: digest(&salt, password),
        }
    }

    /// Constant-time comparison of the digests.
    #[must_use]
    pub fn matches(&self, password: &str) -> bool {
        digest(&self.salt, password).ct_eq(&self.digest).into()
    }
}

fn digest(salt: &[u8; 16], password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_password_matches_and_wrong_or_empty_does_not() {
        let h = PasswordHash::new("open sesame", [7; 16]);
        assert!(h.matches("open sesame"));
        assert!(!h.matches("open sesamE"));
        assert!(!h.matches(""));
    }

    #[test]
    fn same_password_with_different_salts_gives_different_digests() {
        assert_ne!(
            PasswordHash::new("pw", [1; 16]),
            PasswordHash::new("pw", [2; 16])
        );
    }

    #[test]
    fn debug_output_never_shows_the_digest() {
        assert_eq!(
            format!("{:?}", PasswordHash::new("pw", [1; 16])),
            "PasswordHash(<redacted>)"
        );
    }
}
