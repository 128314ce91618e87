//! The `/api/ice-servers` answer (SPEC section 2): `RTCIceServer` entries plus the
//! draft-uberti-behave-turn-rest-00 fields, with a freshly minted TURN REST credential; and
//! the `ice-servers` event that refreshes a socket's credentials (SPEC section 4).

pub mod refresh;

use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;
use switchboard_config::SecretString;
use switchboard_config::credentials::mint;
use switchboard_config::ice::IceUris;

/// One `RTCIceServer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IceServer {
    pub urls: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IceServersResponse {
    pub ice_servers: Vec<IceServer>,
    pub username: String,
    pub password: String,
    /// Seconds.
    pub ttl: u64,
    /// The TURN URIs (draft field).
    pub uris: Vec<String>,
    /// RFC 3339, UTC.
    pub expires_at: String,
}

/// The body of the server → client `ice-servers` event (SPEC section 4): the answer without
/// the draft's `uris`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IceServersEvent {
    pub ice_servers: Vec<IceServer>,
    pub username: String,
    pub password: String,
    /// Seconds.
    pub ttl: u64,
    /// RFC 3339, UTC.
    pub expires_at: String,
}

impl From<IceServersResponse> for IceServersEvent {
    fn from(r: IceServersResponse) -> Self {
        Self {
            ice_servers: r.ice_servers,
            username: r.username,
            password: r.password,
            ttl: r.ttl,
            expires_at: r.expires_at,
        }
    }
}

/// Builds the answer for `user_id` at `now_unix`, signed with `secret`.
#[must_use]
pub fn ice_servers(
    uris: &IceUris,
    secret: &SecretString,
    ttl: Duration,
    user_id: &str,
    now_unix: u64,
) -> IceServersResponse {
    let cred = mint(secret, user_id, ttl, now_unix);
    let mut servers = Vec::new();
    if !uris.stun.is_empty() {
        servers.push(IceServer {
            urls: uris.stun.clone(),
            username: None,
            credential: None,
        });
    }
    if !uris.turn.is_empty() {
        servers.push(IceServer {
            urls: uris.turn.clone(),
            username: Some(cred.username.clone()),
            credential: Some(cred.password.clone()),
        });
    }
    let expires = UNIX_EPOCH + Duration::from_secs(cred.expires_at);
    IceServersResponse {
        ice_servers: servers,
        username: cred.username,
        password: cred.password,
        ttl: ttl.as_secs(),
        uris: uris.turn.clone(),
        expires_at: humantime::format_rfc3339_seconds(expires).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use switchboard_config::credentials::verify;

    use super::*;

    fn uris() -> IceUris {
        IceUris {
            stun: vec!["stun:turn.example.com:3478".into()],
            turn: vec![
                "turn:turn.example.com:3478?transport=udp".into(),
                "turns:turn.example.com:5349?transport=tcp".into(),
            ],
        }
    }

    #[test]
    fn answer_has_the_spec_shape_and_a_credential_the_relay_verifies() {
        let secret = SecretString::from("k".to_string());
        let r = ice_servers(
            &uris(),
            &secret,
            Duration::from_secs(86_400),
            "alice",
            1_767_139_200,
        );
        assert_eq!(r.username, "1767225600:alice");
        assert_eq!(r.ttl, 86_400);
        assert_eq!(r.expires_at, "2026-01-01T00:00:00Z");
        assert_eq!(r.uris, uris().turn);
        assert_eq!(r.ice_servers.len(), 2);
        assert_eq!(r.ice_servers[0].urls, uris().stun);
        assert_eq!(r.ice_servers[0].username, None, "STUN needs no credential");
        assert_eq!(
            r.ice_servers[1].username.as_deref(),
            Some(r.username.as_str())
        );
        assert_eq!(
            r.ice_servers[1].credential.as_deref(),
            Some(r.password.as_str())
        );
        assert_eq!(
            verify(&[secret], &r.username, &r.password, 1_767_139_201),
            Ok(0)
        );
        let json = serde_json::to_value(&r).unwrap_or_default();
        assert!(json.get("iceServers").is_some() && json.get("expiresAt").is_some());
        assert!(json["iceServers"][0].get("username").is_none());
    }

    #[test]
    fn the_ice_servers_event_has_exactly_the_spec_fields() {
        let r = ice_servers(
            &uris(),
            &SecretString::from("k".to_string()),
            Duration::from_secs(600),
            "u",
            1_767_139_200,
        );
        let json = serde_json::to_value(IceServersEvent::from(r.clone())).unwrap_or_default();
        let mut keys: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["expiresAt", "iceServers", "password", "ttl", "username"]
        );
        assert_eq!(json["username"], r.username.as_str());
        assert_eq!(json["ttl"], 600);
        assert_eq!(json["iceServers"][1]["credential"], r.password.as_str());
    }

    #[test]
    fn without_turn_uris_only_stun_is_listed() {
        let only_stun = IceUris {
            stun: vec!["stun:h:3478".into()],
            turn: vec![],
        };
        let r = ice_servers(
            &only_stun,
            &SecretString::from("k".to_string()),
            Duration::from_secs(60),
            "u",
            0,
        );
        assert_eq!(r.ice_servers.len(), 1);
        assert!(r.uris.is_empty());
    }
}
