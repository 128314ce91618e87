//! Room passwords: stored as argon2id PHC strings (RustCrypto `argon2`, default parameters:
//! 19 MiB, 2 passes), so a leaked or guessed-at table costs an attacker the same slow hash per
//! guess. Hashing and checking are slow on purpose: callers run them off the async runtime
//! (see [`crate::passwords`]), never under the room lock.

use argon2::password_hash::{PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, PasswordHash as Phc};

/// A salted argon2id hash of a room password (PHC string: algorithm, parameters, salt, hash).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    phc: String,
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

impl PasswordHash {
    /// Hashes `password` with `salt` (random per room; given by the caller). Slow.
    /// `None` only if argon2 refuses the input (it takes passwords up to 4 GiB).
    #[must_use]
    pub fn new(password: &str, salt: [u8; 16]) -> Option<Self> {
        let salt = SaltString::encode_b64(&salt).ok()?;
        let phc = Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .ok()?
            .to_string();
        Some(Self { phc })
    }

    /// The PHC string (stored in Redis in multi-instance mode; never logged).
    #[must_use]
    pub fn as_phc(&self) -> &str {
        &self.phc
    }

    /// A hash read back from the shared state.
    #[must_use]
    pub fn from_phc(phc: String) -> Self {
        Self { phc }
    }

    /// Whether `password` is the one hashed (argon2 compares in constant time). Slow.
    #[must_use]
    pub fn matches(&self, password: &str) -> bool {
        Phc::new(&self.phc).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(pw: &str, salt: u8) -> PasswordHash {
        PasswordHash::new(pw, [salt; 16]).expect("hash")
    }

    #[test]
    fn right_password_matches_and_wrong_or_empty_does_not() {
        let h = hash("open sesame", 7);
        assert!(h.matches("open sesame"));
        assert!(!h.matches("open sesamE"));
        assert!(!h.matches(""));
    }

    #[test]
    fn same_password_with_different_salts_gives_different_hashes() {
        assert_ne!(hash("pw", 1), hash("pw", 2));
    }

    #[test]
    fn the_hash_is_argon2id_and_debug_output_never_shows_it() {
        let h = hash("pw", 1);
        assert!(h.phc.starts_with("$argon2id$"), "{}", h.phc);
        assert_eq!(format!("{h:?}"), "PasswordHash(<redacted>)");
    }
}
