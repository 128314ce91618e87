//! TURN REST credentials (SPEC section 2) checked against the STUN long-term mechanism
//! (RFC 8489 section 9.2): our layer verifies MESSAGE-INTEGRITY against the key of every
//! configured secret and tells the `turn` crate's [`AuthHandler`] which key matched.
//!
//! The crate's `AuthHandler` only sees (username, realm, source), never the message, so it
//! cannot try several secrets itself; the key cache bridges the two. Only usernames that
//! already passed our MESSAGE-INTEGRITY check enter the cache, and it is capped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};

use secrecy::SecretString;
use stun::integrity::MessageIntegrity;
use stun::message::Message;
use switchboard_config::Secrets;
use switchboard_config::credentials::{VerifyError, parse_username, password_for};
use turn::auth::{AuthHandler, generate_auth_key};

/// Most usernames kept in the key cache.
pub const KEY_CACHE_CAP: usize = 100_000;

/// MD5(username ":" realm ":" password): the long-term key (RFC 8489 section 9.2.2).
#[must_use]
pub fn long_term_key(secret: &SecretString, username: &str, realm: &str) -> Vec<u8> {
    generate_auth_key(username, realm, &password_for(secret, username))
}

/// Splits a REST username into (expiry, user id). Besides SPEC's `"{expiry}:{user}"`, a
/// bare `"{expiry}"` is accepted (its user id is the whole username): coturn accepts it and
/// `turnutils_uclient -W` without `-u` sends it.
pub fn split_username(username: &str) -> Result<(u64, &str), VerifyError> {
    if !username.contains(':')
        && !username.is_empty()
        && username.bytes().all(|b| b.is_ascii_digit())
    {
        let expiry = username.parse().map_err(|_| VerifyError::Malformed)?;
        return Ok((expiry, username));
    }
    parse_username(username)
}

/// Verifies the MESSAGE-INTEGRITY of `m` for `username` against every secret at
/// `now_unix`; returns the matching long-term key.
pub fn verify_message(
    m: &Message,
    secrets: &[SecretString],
    username: &str,
    realm: &str,
    now_unix: u64,
) -> Result<Vec<u8>, VerifyError> {
    verify_message_past_expiry(m, secrets, username, realm, now_unix, false)
}

/// [`verify_message`], where `past_expiry` accepts a credential whose expiry time has
/// passed (`relay.strict_expiry = false`, for the allocation that credential made): the
/// signature must still verify against a configured secret.
pub fn verify_message_past_expiry(
    m: &Message,
    secrets: &[SecretString],
    username: &str,
    realm: &str,
    now_unix: u64,
    past_expiry: bool,
) -> Result<Vec<u8>, VerifyError> {
    let (expiry, _) = split_username(username)?;
    if expiry <= now_unix && !past_expiry {
        return Err(VerifyError::Expired);
    }
    let mut found = None;
    for secret in secrets {
        let key = long_term_key(secret, username, realm);
        // `check` compares in constant time; every secret is tried.
        let ok = MessageIntegrity(key.clone()).check(&mut m.clone()).is_ok();
        if ok && found.is_none() {
            found = Some(key);
        }
    }
    found.ok_or(VerifyError::BadPassword)
}

/// Shared credential state: the reloadable secrets and the verified-key cache.
#[derive(Debug)]
pub struct Credentials {
    secrets: RwLock<Arc<Secrets>>,
    keys: Mutex<HashMap<String, (Vec<u8>, u64)>>,
}

impl Credentials {
    #[must_use]
    pub fn new(secrets: Secrets) -> Self {
        Self {
            secrets: RwLock::new(Arc::new(secrets)),
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The current secrets.
    #[must_use]
    pub fn secrets(&self) -> Arc<Secrets> {
        self.secrets
            .read()
            .map_or_else(|e| Arc::clone(&e.into_inner()), |g| Arc::clone(&g))
    }

    /// Replaces the secrets (SIGHUP). Credentials of removed secrets stop verifying;
    /// existing allocations are untouched. The key cache is kept: it is consulted only for
    /// requests our layer has just verified against the current list, and clearing it could
    /// race with a request in flight.
    pub fn set_secrets(&self, secrets: Secrets) {
        match self.secrets.write() {
            Ok(mut g) => *g = Arc::new(secrets),
            Err(e) => *e.into_inner() = Arc::new(secrets),
        }
    }

    fn with_keys<R>(&self, f: impl FnOnce(&mut HashMap<String, (Vec<u8>, u64)>) -> R) -> R {
        match self.keys.lock() {
            Ok(mut g) => f(&mut g),
            Err(e) => f(&mut e.into_inner()),
        }
    }

    /// Records the key that verified `username` (expiring at `expiry`).
    pub fn remember(&self, username: &str, key: Vec<u8>, expiry: u64, now_unix: u64) {
        self.with_keys(|keys| {
            if keys.len() >= KEY_CACHE_CAP && !keys.contains_key(username) {
                keys.retain(|_, (_, exp)| *exp > now_unix);
                if keys.len() >= KEY_CACHE_CAP {
                    keys.clear();
                }
            }
            keys.insert(username.to_owned(), (key, expiry));
        });
    }

    fn key_for(&self, username: &str) -> Option<Vec<u8>> {
        self.with_keys(|keys| keys.get(username).map(|(k, _)| k.clone()))
    }
}

/// The `turn` crate's view of our credentials: the key our layer verified.
#[derive(Debug, Clone)]
pub struct RestAuthHandler {
    creds: Arc<Credentials>,
}

impl RestAuthHandler {
    #[must_use]
    pub fn new(creds: Arc<Credentials>) -> Self {
        Self { creds }
    }
}

impl AuthHandler for RestAuthHandler {
    fn auth_handle(
        &self,
        username: &str,
        realm: &str,
        _src: SocketAddr,
    ) -> Result<Vec<u8>, turn::Error> {
        // Our layer verified this request just before handing it over; fall back to the
        // signing secret (which then simply fails the crate's own integrity check).
        Ok(self
            .creds
            .key_for(username)
            .unwrap_or_else(|| long_term_key(self.creds.secrets().signing(), username, realm)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use stun::agent::TransactionId;
    use stun::message::{BINDING_REQUEST, Setter};
    use stun::textattrs::{TextAttribute, Username};
    use switchboard_config::credentials::mint;

    use super::*;

    fn s(v: &str) -> SecretString {
        SecretString::from(v.to_string())
    }

    fn signed(username: &str, password: &str) -> Message {
        let mut m = Message::new();
        let integrity =
            MessageIntegrity::new_long_term_integrity(username.into(), "r".into(), password.into());
        let setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(BINDING_REQUEST),
            Box::new(Username::new(
                stun::attributes::ATTR_USERNAME,
                username.into(),
            )),
            Box::new(TextAttribute::new(stun::attributes::ATTR_REALM, "r".into())),
            Box::new(integrity),
        ];
        m.build(&setters).expect("build");
        let mut decoded = Message::new();
        decoded.raw = m.raw.clone();
        decoded.decode().expect("decode");
        decoded
    }

    /// RFC 8489 section 9.2.4: the server checks MESSAGE-INTEGRITY with the long-term key.
    #[test]
    fn a_minted_credential_verifies_and_yields_its_long_term_key() {
        let c = mint(&s("k1"), "alice", Duration::from_secs(60), 1000);
        let m = signed(&c.username, &c.password);
        let key = verify_message(&m, &[s("k1")], &c.username, "r", 1000).expect("ok");
        assert_eq!(key, long_term_key(&s("k1"), &c.username, "r"));
    }

    #[test]
    fn any_listed_secret_verifies_and_a_removed_one_does_not() {
        let c = mint(&s("old"), "alice", Duration::from_secs(60), 1000);
        let m = signed(&c.username, &c.password);
        assert!(verify_message(&m, &[s("new"), s("old")], &c.username, "r", 1000).is_ok());
        assert_eq!(
            verify_message(&m, &[s("new")], &c.username, "r", 1000),
            Err(VerifyError::BadPassword)
        );
    }

    #[test]
    fn expired_and_tampered_credentials_are_refused() {
        let c = mint(&s("k"), "alice", Duration::from_secs(60), 1000);
        let m = signed(&c.username, &c.password);
        assert_eq!(
            verify_message(&m, &[s("k")], &c.username, "r", 1060),
            Err(VerifyError::Expired)
        );
        let forged = signed(&c.username, "AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
        assert_eq!(
            verify_message(&forged, &[s("k")], &c.username, "r", 1000),
            Err(VerifyError::BadPassword)
        );
    }

    #[test]
    fn a_bare_expiry_username_is_accepted_like_coturn_does() {
        assert_eq!(
            split_username("1700000000"),
            Ok((1_700_000_000, "1700000000"))
        );
        assert_eq!(split_username("1700000000:bob"), Ok((1_700_000_000, "bob")));
        assert_eq!(split_username("bob"), Err(VerifyError::Malformed));
        let username = "2000";
        let m = signed(username, &password_for(&s("k"), username));
        assert!(verify_message(&m, &[s("k")], username, "r", 1000).is_ok());
    }

    #[test]
    fn the_auth_handler_returns_the_key_our_layer_verified() {
        let creds = Arc::new(Credentials::new(
            Secrets::new(vec![s("new"), s("old")]).expect("secrets"),
        ));
        let key = long_term_key(&s("old"), "9:alice", "r");
        creds.remember("9:alice", key.clone(), 9, 1);
        let h = RestAuthHandler::new(Arc::clone(&creds));
        let src = "127.0.0.1:1".parse().expect("addr");
        assert_eq!(h.auth_handle("9:alice", "r", src).ok(), Some(key));
    }
}
