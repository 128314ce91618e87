//! The TURN REST API credential scheme (coturn `use-auth-secret`, draft-uberti-behave-turn-rest-00).
//!
//! username = `"{expiry_unix_seconds}:{user_id}"`, password = base64(HMAC-SHA1(secret, username)).
//! Pure functions: time comes in as an argument.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// Longest user id we mint. RFC 8489 section 14.3 caps USERNAME below 513 bytes; we keep
/// well under it, leaving room for the expiry prefix.
pub const MAX_USER_ID_LEN: usize = 128;

/// A minted credential.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub password: String,
    /// Unix seconds after which the relay refuses it.
    pub expires_at: u64,
    pub ttl: Duration,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// Why a credential was refused. The relay counts these by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("username is not of the form expiry:user")]
    Malformed,
    #[error("credential has expired")]
    Expired,
    #[error("password does not match any configured secret")]
    BadPassword,
}

impl VerifyError {
    /// A stable metric label.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            VerifyError::Malformed => "malformed",
            VerifyError::Expired => "expired",
            VerifyError::BadPassword => "bad_password",
        }
    }
}

/// A user id we are willing to put into a username: 1–128 printable characters, no `:`
/// (so that coturn and we split the username the same way), no whitespace.
#[must_use]
pub fn valid_user_id(user_id: &str) -> bool {
    !user_id.is_empty()
        && user_id.len() <= MAX_USER_ID_LEN
        && user_id
            .chars()
            .all(|c| !c.is_control() && !c.is_whitespace() && c != ':')
}

/// base64(HMAC-SHA1(secret, username)): the password for `username`.
#[must_use]
pub fn password_for(secret: &SecretString, username: &str) -> String {
    BASE64.encode(raw_mac(secret, username))
}

fn raw_mac(secret: &SecretString, username: &str) -> [u8; 20] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha1 as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(username.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Mints a credential for `user_id`, valid for `ttl` from `now_unix`, signed with `secret`
/// (the first configured secret).
#[must_use]
pub fn mint(secret: &SecretString, user_id: &str, ttl: Duration, now_unix: u64) -> Credential {
    let expires_at = now_unix.saturating_add(ttl.as_secs());
    let username = format!("{expires_at}:{user_id}");
    let password = password_for(secret, &username);
    Credential {
        username,
        password,
        expires_at,
        ttl,
    }
}

/// Splits a REST username into (expiry, user id). The expiry is the part before the first `:`.
pub fn parse_username(username: &str) -> Result<(u64, &str), VerifyError> {
    let (expiry, user) = username.split_once(':').ok_or(VerifyError::Malformed)?;
    if expiry.is_empty() || !expiry.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::Malformed);
    }
    let expiry = expiry.parse().map_err(|_| VerifyError::Malformed)?;
    Ok((expiry, user))
}

/// Checks that `username` has not expired at `now_unix` (expiry must be strictly in the future).
pub fn check_expiry(username: &str, now_unix: u64) -> Result<u64, VerifyError> {
    let (expiry, _) = parse_username(username)?;
    if expiry <= now_unix {
        return Err(VerifyError::Expired);
    }
    Ok(expiry)
}

/// Verifies a (username, password) pair against every secret (rotation), in constant time
/// per secret. Returns the index of the secret that matched.
pub fn verify(
    secrets: &[SecretString],
    username: &str,
    password: &str,
    now_unix: u64,
) -> Result<usize, VerifyError> {
    check_expiry(username, now_unix)?;
    let Ok(given) = BASE64.decode(password.trim()) else {
        return Err(VerifyError::BadPassword);
    };
    let mut matched = None;
    for (i, secret) in secrets.iter().enumerate() {
        let mut mac = <HmacSha1 as Mac>::new_from_slice(secret.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(username.as_bytes());
        // `verify_slice` compares in constant time. Every secret is tried, match or not.
        if mac.verify_slice(&given).is_ok() && matched.is_none() {
            matched = Some(i);
        }
    }
    matched.ok_or(VerifyError::BadPassword)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> SecretString {
        SecretString::from(v.to_string())
    }

    /// Known answer computed independently with
    /// `printf %s 1767225600:alice | openssl dgst -sha1 -hmac north-wind -binary | base64`.
    #[test]
    fn password_matches_openssl_known_answer() {
        assert_eq!(
            password_for(&s("north-wind"), "1767225600:alice"),
            "55PlDxMJVdufSCmWzN2r2q6QUZA="
        );
    }

    /// Second vector, the secret and user id coturn's own docs use:
    /// `printf %s 1700000000:ninefingers | openssl dgst -sha1 -hmac logen -binary | base64`.
    #[test]
    fn password_matches_second_openssl_vector() {
        assert_eq!(
            password_for(&s("logen"), "1700000000:ninefingers"),
            "D18H2B4ZLhebIL9mjOi68cDDID4="
        );
    }

    #[test]
    fn mint_puts_expiry_before_user_and_verifies() {
        let c = mint(&s("k"), "alice", Duration::from_secs(3600), 1_000);
        assert_eq!(c.username, "4600:alice");
        assert_eq!(c.expires_at, 4600);
        assert_eq!(verify(&[s("k")], &c.username, &c.password, 1_000), Ok(0));
    }

    #[test]
    fn expired_or_now_expiring_credential_is_rejected() {
        let c = mint(&s("k"), "bob", Duration::from_secs(60), 1_000);
        assert_eq!(verify(&[s("k")], &c.username, &c.password, 1_059), Ok(0));
        assert_eq!(
            verify(&[s("k")], &c.username, &c.password, 1_060),
            Err(VerifyError::Expired)
        );
        assert_eq!(
            verify(&[s("k")], &c.username, &c.password, 9_999),
            Err(VerifyError::Expired)
        );
    }

    #[test]
    fn rotation_old_secret_verifies_while_listed_and_not_after_removal() {
        let old = s("old-secret");
        let new = s("new-secret");
        let issued_with_old = mint(&old, "carol", Duration::from_secs(600), 0);
        // After rotation the new secret signs first, the old one is still listed.
        let rotated = [new.clone(), old.clone()];
        assert_eq!(
            verify(
                &rotated,
                &issued_with_old.username,
                &issued_with_old.password,
                1
            ),
            Ok(1)
        );
        // New credentials are signed with the first secret.
        let issued_with_new = mint(&rotated[0], "carol", Duration::from_secs(600), 0);
        assert_eq!(
            verify(
                &rotated,
                &issued_with_new.username,
                &issued_with_new.password,
                1
            ),
            Ok(0)
        );
        // Once the old secret is removed its credentials stop working.
        assert_eq!(
            verify(
                &[new],
                &issued_with_old.username,
                &issued_with_old.password,
                1
            ),
            Err(VerifyError::BadPassword)
        );
    }

    #[test]
    fn tampered_password_or_username_is_rejected() {
        let c = mint(&s("k"), "dave", Duration::from_secs(600), 0);
        let mut bad = c.password.clone().into_bytes();
        bad[0] = if bad[0] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap_or_default();
        assert_eq!(
            verify(&[s("k")], &c.username, &bad, 1),
            Err(VerifyError::BadPassword)
        );
        // Extending the expiry invalidates the signature.
        let longer = c.username.replacen("600", "900", 1);
        assert_eq!(
            verify(&[s("k")], &longer, &c.password, 1),
            Err(VerifyError::BadPassword)
        );
        // Garbage base64.
        assert_eq!(
            verify(&[s("k")], &c.username, "%%%", 1),
            Err(VerifyError::BadPassword)
        );
        // A different user with the same password.
        assert_eq!(
            verify(&[s("k")], "600:mallory", &c.password, 1),
            Err(VerifyError::BadPassword)
        );
    }

    #[test]
    fn malformed_usernames_are_rejected() {
        for u in [
            "alice",
            ":alice",
            "12a:alice",
            "-5:alice",
            "99999999999999999999999:x",
            "",
        ] {
            assert_eq!(
                verify(&[s("k")], u, "x", 0),
                Err(VerifyError::Malformed),
                "{u}"
            );
        }
    }

    #[test]
    fn user_ids_with_colons_controls_or_excess_length_are_invalid() {
        assert!(valid_user_id("alice"));
        assert!(valid_user_id("user-42_é"));
        assert!(!valid_user_id(""));
        assert!(!valid_user_id("a:b"));
        assert!(!valid_user_id("a b"));
        assert!(!valid_user_id("a\nb"));
        assert!(!valid_user_id(&"x".repeat(MAX_USER_ID_LEN + 1)));
    }
}
