//! The TURN control plane of one client leg: Allocate (401 → retry with REALM and NONCE,
//! RFC 8656 section 7.2 / RFC 8489 section 9.2), CreatePermission, ChannelBind, Refresh,
//! with retransmissions over UDP (RFC 8489 section 6.2.1) and a fresh NONCE on 438.
//! Credentials follow the TURN REST scheme when minted from a shared secret.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};

use crate::legs::Outbox;
use crate::stun::{
    ATTR_CHANNEL_NUMBER, ATTR_LIFETIME, ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM,
    ATTR_REQUESTED_TRANSPORT, ATTR_USERNAME, ATTR_XOR_PEER_ADDRESS, ATTR_XOR_RELAYED_ADDRESS,
    Class, METHOD_ALLOCATE, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_REFRESH, Message,
    MessageBuilder, TRANSPORT_UDP, long_term_key,
};

/// First retransmission timeout over UDP (RFC 8489 section 6.2.1 suggests 500 ms for the
/// Internet; loopback answers in microseconds, so less keeps set-up of many allocations short).
const RTO: Duration = Duration::from_millis(250);
/// Transmissions of one request over UDP (RFC 8489 section 6.2.1: Rc = 7).
const TRANSMISSIONS: u32 = 7;
/// Wait for a response on a stream (RFC 8489 section 6.2.2: 39.5 s; shorter here).
const STREAM_TIMEOUT: Duration = Duration::from_secs(10);
/// A request re-sent with new REALM/NONCE at most this many times (401, then 438s).
const AUTH_RETRIES: u32 = 3;

/// A username/password pair.
#[derive(Clone)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A TURN REST credential: username `"{expiry}:{user}"`, password
/// base64(HMAC-SHA1(secret, username)) (draft-uberti-behave-turn-rest-00, coturn
/// `use-auth-secret`).
#[must_use]
pub fn mint(secret: &str, user: &str, ttl: Duration, now_unix: u64) -> Credential {
    let username = format!("{}:{user}", now_unix + ttl.as_secs());
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Credential { username, password }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{method} got no response")]
    Timeout { method: &'static str },
    #[error("{method} refused: error {code}")]
    Refused { method: &'static str, code: u16 },
    #[error("{method} response lacks {what}")]
    Incomplete {
        method: &'static str,
        what: &'static str,
    },
    #[error("{method} response fails MESSAGE-INTEGRITY")]
    BadIntegrity { method: &'static str },
    #[error("sending {method}: {source}")]
    Io {
        method: &'static str,
        source: std::io::Error,
    },
    #[error("the connection's outbox is full")]
    OutboxFull,
}

/// How requests reach the server.
#[derive(Debug, Clone)]
pub enum Link {
    Udp(Rc<tokio::net::UdpSocket>),
    Stream(Arc<Outbox>),
}

/// What a successful Allocate gave.
#[derive(Debug, Clone, Copy)]
pub struct Allocation {
    pub relayed: SocketAddr,
    pub lifetime: Duration,
}

/// One client's TURN session (control messages only).
#[derive(Debug)]
pub struct Control {
    link: Link,
    inbox: mpsc::UnboundedReceiver<Vec<u8>>,
    cred: Credential,
    realm: Option<String>,
    nonce: Option<String>,
    key: Option<Vec<u8>>,
}

fn method_name(method: u16) -> &'static str {
    match method {
        METHOD_ALLOCATE => "Allocate",
        METHOD_REFRESH => "Refresh",
        METHOD_CREATE_PERMISSION => "CreatePermission",
        METHOD_CHANNEL_BIND => "ChannelBind",
        _ => "request",
    }
}

impl Control {
    #[must_use]
    pub fn new(link: Link, inbox: mpsc::UnboundedReceiver<Vec<u8>>, cred: Credential) -> Self {
        Self {
            link,
            inbox,
            cred,
            realm: None,
            nonce: None,
            key: None,
        }
    }

    /// Allocate a UDP relayed address for `lifetime`.
    pub async fn allocate(&mut self, lifetime: u32) -> Result<Allocation, ControlError> {
        let raw = self
            .transact(METHOD_ALLOCATE, |b| {
                b.attr(ATTR_REQUESTED_TRANSPORT, &[TRANSPORT_UDP, 0, 0, 0])
                    .u32_attr(ATTR_LIFETIME, lifetime);
            })
            .await?;
        let m = Message::parse(&raw).map_err(|_| ControlError::Incomplete {
            method: "Allocate",
            what: "a valid message",
        })?;
        let relayed = m
            .xor_address(ATTR_XOR_RELAYED_ADDRESS)
            .ok_or(ControlError::Incomplete {
                method: "Allocate",
                what: "XOR-RELAYED-ADDRESS",
            })?;
        let granted = m.u32_attr(ATTR_LIFETIME).unwrap_or(lifetime);
        Ok(Allocation {
            relayed,
            lifetime: Duration::from_secs(u64::from(granted)),
        })
    }

    /// Refresh with `lifetime` (0 deletes the allocation, RFC 8656 section 7.2).
    pub async fn refresh(&mut self, lifetime: u32) -> Result<(), ControlError> {
        self.transact(METHOD_REFRESH, |b| {
            b.u32_attr(ATTR_LIFETIME, lifetime);
        })
        .await
        .map(drop)
    }

    /// Install (or refresh) a permission for `peer` (RFC 8656 section 9).
    pub async fn create_permission(&mut self, peer: SocketAddr) -> Result<(), ControlError> {
        self.transact(METHOD_CREATE_PERMISSION, |b| {
            b.xor_address(ATTR_XOR_PEER_ADDRESS, peer);
        })
        .await
        .map(drop)
    }

    /// Bind (or refresh) `channel` to `peer` (RFC 8656 section 11).
    pub async fn channel_bind(
        &mut self,
        channel: u16,
        peer: SocketAddr,
    ) -> Result<(), ControlError> {
        self.transact(METHOD_CHANNEL_BIND, |b| {
            b.u32_attr(ATTR_CHANNEL_NUMBER, u32::from(channel) << 16)
                .xor_address(ATTR_XOR_PEER_ADDRESS, peer);
        })
        .await
        .map(drop)
    }

    fn build(&self, method: u16, attrs: &impl Fn(&mut MessageBuilder)) -> (Vec<u8>, [u8; 12]) {
        let txid: [u8; 12] = rand::random();
        let mut b = MessageBuilder::new(method, Class::Request, txid);
        attrs(&mut b);
        let raw = match (&self.realm, &self.nonce, &self.key) {
            (Some(realm), Some(nonce), Some(key)) => {
                b.attr(ATTR_USERNAME, self.cred.username.as_bytes())
                    .attr(ATTR_REALM, realm.as_bytes())
                    .attr(ATTR_NONCE, nonce.as_bytes());
                b.finish_with_integrity(key)
            }
            _ => b.finish(),
        };
        (raw, txid)
    }

    async fn send(&self, method: &'static str, raw: &[u8]) -> Result<(), ControlError> {
        match &self.link {
            Link::Udp(sock) => sock
                .send(raw)
                .await
                .map(drop)
                .map_err(|source| ControlError::Io { method, source }),
            // STUN messages are multiples of 4 bytes: no padding needed on a stream.
            Link::Stream(outbox) => outbox
                .push(|buf| buf.extend_from_slice(raw))
                .then_some(())
                .ok_or(ControlError::OutboxFull),
        }
    }

    /// Sends one request and waits for its response, authenticating as the server asks.
    async fn transact(
        &mut self,
        method: u16,
        attrs: impl Fn(&mut MessageBuilder),
    ) -> Result<Vec<u8>, ControlError> {
        let name = method_name(method);
        for _ in 0..=AUTH_RETRIES {
            let (raw, txid) = self.build(method, &attrs);
            let reply = self.exchange(name, &raw, txid).await?;
            let m = Message::parse(&reply).map_err(|_| ControlError::Incomplete {
                method: name,
                what: "a valid message",
            })?;
            match m.class {
                Class::Success => {
                    if let Some(key) = &self.key
                        && m.get(ATTR_MESSAGE_INTEGRITY).is_some()
                        && m.check_integrity(key).is_err()
                    {
                        return Err(ControlError::BadIntegrity { method: name });
                    }
                    return Ok(reply);
                }
                _ => {
                    let code = m.error_code().unwrap_or(0);
                    // 401 Unauthorized (first contact or bad credential) and 438 Stale Nonce
                    // carry the NONCE (and REALM) to retry with (RFC 8489 section 9.2.5).
                    let retry = matches!(code, 401 | 438)
                        && m.text(ATTR_NONCE).is_some()
                        && !(code == 401
                            && self.key.is_some()
                            && self.nonce.as_deref() == m.text(ATTR_NONCE));
                    if !retry {
                        return Err(ControlError::Refused { method: name, code });
                    }
                    self.nonce = m.text(ATTR_NONCE).map(str::to_string);
                    if let Some(realm) = m.text(ATTR_REALM) {
                        self.realm = Some(realm.to_string());
                    }
                    if let Some(realm) = &self.realm {
                        self.key = Some(long_term_key(
                            &self.cred.username,
                            realm,
                            &self.cred.password,
                        ));
                    }
                }
            }
        }
        Err(ControlError::Refused {
            method: name,
            code: 401,
        })
    }

    /// Sends `raw` (retransmitting over UDP) until a response with `txid` arrives.
    async fn exchange(
        &mut self,
        method: &'static str,
        raw: &[u8],
        txid: [u8; 12],
    ) -> Result<Vec<u8>, ControlError> {
        let (tries, mut wait) = match self.link {
            Link::Udp(_) => (TRANSMISSIONS, RTO),
            Link::Stream(_) => (1, STREAM_TIMEOUT),
        };
        for _ in 0..tries {
            self.send(method, raw).await?;
            let deadline = Instant::now() + wait;
            while let Ok(Some(reply)) = timeout_at(deadline, self.inbox.recv()).await {
                let ours = Message::parse(&reply).is_ok_and(|m| {
                    m.txid == txid && matches!(m.class, Class::Success | Class::Error)
                });
                if ours {
                    return Ok(reply);
                }
            }
            wait *= 2;
        }
        Err(ControlError::Timeout { method })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_credential_is_the_one_the_relay_and_signaling_compute() {
        // draft-uberti-behave-turn-rest-00 section 2.2: username "expiry:user", password
        // base64(HMAC-SHA1(secret, username)); checked against config/src/credentials.rs.
        let c = mint("s3cret", "alice", Duration::from_secs(100), 1_000);
        assert_eq!(c.username, "1100:alice");
        let secret = secrecy::SecretString::from("s3cret".to_string());
        assert_eq!(
            c.password,
            switchboard_config::credentials::password_for(&secret, "1100:alice")
        );
    }

    #[test]
    fn a_credential_never_shows_its_password_in_debug_output() {
        let c = mint("s", "u", Duration::from_secs(1), 0);
        assert!(!format!("{c:?}").contains(&c.password));
    }
}
