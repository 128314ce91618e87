//! End-to-end tests of the `ice-servers` event (SPEC section 4): a socket in a room gets fresh
//! TURN credentials once 90 % of the lifetime of its last ones has passed; a socket in no room
//! gets none. The real binary with `turn.credential_ttl = "10s"` (the minimum), driven by
//! socket.io-client; every wait is bounded by events, never by a sleep.

#[path = "common/signaling.rs"]
mod common;

use serde_json::{Value, json};
use switchboard_config::SecretString;
use switchboard_config::credentials::{parse_username, password_for, verify};
use switchboard_config::unix_now;
use switchboard_tests::{Ports, Service, TEST_SECRET};

const TTL_SECS: u64 = 10;
const TOKEN: &str = "client-token-abcdef0123456789";

fn start(ports: &Ports, extra: &str) -> Service {
    let config = common::config(ports, extra).replace(
        "credential_ttl = \"1h\"",
        &format!("credential_ttl = \"{TTL_SECS}s\""),
    );
    assert!(config.contains("credential_ttl = \"10s\""), "{config}");
    Service::start("switchboard-signaling", &config)
}

/// The TURN user of a join ack's credentials (`{expiry}:{user}` of its TURN entry).
fn ack_turn_user(ack: &Value) -> String {
    assert_eq!(ack["ok"], json!(true), "{ack}");
    let username = ack["iceServers"]
        .as_array()
        .and_then(|s| s.iter().find_map(|e| e["username"].as_str()))
        .unwrap_or_else(|| panic!("a TURN entry in {ack}"));
    let (_, user) = parse_username(username).unwrap_or_else(|e| panic!("{username}: {e:?}"));
    user.to_string()
}

/// Checks one `ice-servers` body: the spec fields, a credential for `turn_user` signed with
/// the test secret, with the configured ttl and an expiry no later than `now_unix` + ttl;
/// returns that expiry.
fn check_refresh(body: &Value, turn_user: &str, now_unix: u64) -> u64 {
    let username = body["username"].as_str().unwrap_or_default();
    let password = body["password"].as_str().unwrap_or_default();
    let (expiry, user) = parse_username(username).unwrap_or_else(|e| panic!("{body}: {e:?}"));
    assert_eq!(user, turn_user, "the connection's TURN user: {body}");
    assert_eq!(body["ttl"], json!(TTL_SECS), "{body}");
    let secret = SecretString::from(TEST_SECRET.to_string());
    assert_eq!(password, password_for(&secret, username), "HMAC: {body}");
    assert!(expiry <= now_unix + TTL_SECS, "{body}");
    assert!(
        body["expiresAt"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 20),
        "RFC 3339: {body}"
    );
    let turn = body["iceServers"]
        .as_array()
        .and_then(|s| s.iter().find(|e| e.get("username").is_some()))
        .unwrap_or_else(|| panic!("a TURN entry: {body}"));
    assert_eq!(turn["username"], body["username"], "{body}");
    assert_eq!(turn["credential"], body["password"], "{body}");
    assert!(
        turn["urls"].as_array().is_some_and(|u| u
            .iter()
            .all(|u| u.as_str().is_some_and(|u| u.starts_with("turn")))),
        "{body}"
    );
    expiry
}

/// Runs the `iceRefresh` scenario with handshake `auth` and checks it; returns its result.
fn refreshes_reach_joined_sockets_only(svc: &Service, ports: &Ports, auth: &Value) -> Value {
    let started = unix_now();
    let r = common::drive(svc, ports, "iceRefresh", &json!({"auth": auth}));
    let now = r["nowUnix"].as_u64().unwrap_or_else(unix_now);

    // The stayer: two refreshes, each valid, for its TURN user, each expiring later.
    let stayer_user = ack_turn_user(&r["stayerJoin"]);
    let refreshes = r["stayerRefreshes"].as_array().cloned().unwrap_or_default();
    assert_eq!(refreshes.len(), 2, "{r}");
    let first = check_refresh(&refreshes[0], &stayer_user, now);
    let second = check_refresh(&refreshes[1], &stayer_user, now);
    assert!(
        first >= started + TTL_SECS,
        "fresh, not the join ack's: {r}"
    );
    assert!(second > first, "a later expiry each time: {r}");
    // The relay's own check (any secret, expiry in the future) accepts the latest one now.
    let latest = &refreshes[1];
    assert_eq!(
        verify(
            &[SecretString::from(TEST_SECRET.to_string())],
            latest["username"].as_str().unwrap_or_default(),
            latest["password"].as_str().unwrap_or_default(),
            now,
        ),
        Ok(0),
        "{r}"
    );
    assert_ne!(refreshes[0]["password"], refreshes[1]["password"], "{r}");
    assert!(
        refreshes[1]["expiresAt"].as_str() > refreshes[0]["expiresAt"].as_str(),
        "{r}"
    );

    // The quitter got one refresh while in its room, for its own TURN user, and none after
    // it left, in a window where its next one would have come.
    let quitter_user = ack_turn_user(&r["quitterJoin"]);
    check_refresh(&r["quitterRefresh"], &quitter_user, now);
    assert_eq!(r["quitterLeave"]["ok"], json!(true), "{r}");
    assert_eq!(r["quitterGot"], json!(1), "nothing after leave-room: {r}");

    // Never in a room: never refreshed.
    assert_eq!(r["neverGot"], json!(0), "{r}");
    r
}

#[test]
fn a_socket_in_a_room_gets_fresh_credentials_every_09_ttl_and_others_get_none() {
    let ports = Ports::new();
    let svc = start(&ports, "");
    let r = refreshes_reach_joined_sockets_only(&svc, &ports, &Value::Null);
    // Auth off: the TURN user is the server's per-connection id, never the client's word.
    let user = ack_turn_user(&r["stayerJoin"]);
    assert!(user.starts_with("anon-"), "{user}");
    assert_ne!(
        user,
        ack_turn_user(&r["quitterJoin"]),
        "one TURN user per connection"
    );
}

#[test]
fn with_token_auth_the_refreshed_credentials_belong_to_the_token_subject() {
    let ports = Ports::new();
    let svc = start(&ports, &format!("auth = \"token\"\ntokens = [\"{TOKEN}\"]"));
    let r = refreshes_reach_joined_sockets_only(&svc, &ports, &json!({"token": TOKEN}));
    let subject = r["stayerJoin"]["self"]["userId"]
        .as_str()
        .unwrap_or_default();
    assert!(subject.starts_with("tok-"), "{r}");
    let turn_user = r["stayerRefreshes"][1]["username"]
        .as_str()
        .unwrap_or_default();
    assert!(turn_user.ends_with(&format!(":{subject}")), "{r}");
}

#[test]
fn a_socket_whose_only_room_is_deleted_over_rest_gets_no_more_refreshes() {
    let ports = Ports::new();
    let admin = "admin-test-token-0123456789";
    let svc = start(&ports, &format!("admin_token = \"{admin}\""));
    let r = common::drive(&svc, &ports, "iceRefreshDeleted", &json!({"admin": admin}));
    assert_eq!(r["memberJoin"]["ok"], json!(true), "{r}");
    assert_eq!(r["clockJoin"]["ok"], json!(true), "{r}");
    assert_eq!(r["deleted"], json!(204), "{r}");
    assert_eq!(r["clockRefreshes"], json!(2), "{r}");
    assert_eq!(r["memberGot"], json!(0), "{r}");
}
