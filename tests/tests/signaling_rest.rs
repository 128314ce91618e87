//! End-to-end tests of the signaling REST API (SPEC sections 2 and 4) against the real binary.

#[path = "common/signaling.rs"]
mod common;

use common::{base, http};
use serde_json::{Value, json};
use switchboard_config::SecretString;
use switchboard_config::credentials::verify;
use switchboard_tests::{Ports, TEST_SECRET};

fn now() -> u64 {
    switchboard_config::unix_now()
}

fn assert_json_error(r: &common::Reply, status: u16, code: &str) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.body["error"]["code"], code, "{r:?}");
    assert!(r.body["error"]["message"].is_string(), "{r:?}");
}

#[test]
fn ice_servers_answer_matches_the_spec_field_by_field_and_its_credential_verifies() {
    let ports = Ports::new();
    let _svc = common::start(&ports, "");
    let url = format!(
        "{}/api/ice-servers?service=turn&username=alice",
        base(&ports)
    );
    let before = now();
    let r = http("GET", &url, &[], None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    let b = &r.body;
    let relay = ports.relay;
    assert_eq!(
        b["iceServers"],
        json!([
            {"urls": [format!("stun:127.0.0.1:{relay}")]},
            {"urls": [
                format!("turn:127.0.0.1:{relay}?transport=udp"),
                format!("turn:127.0.0.1:{relay}?transport=tcp"),
             ],
             "username": b["username"], "credential": b["password"]},
        ])
    );
    let username = b["username"].as_str().expect("username");
    let password = b["password"].as_str().expect("password");
    let (expiry, user) = username.split_once(':').expect("expiry:user");
    let expiry: u64 = expiry.parse().expect("numeric expiry");
    assert!(
        user.starts_with("alice-") && user.len() > "alice-".len(),
        "auth off: `username` only prefixes a server-chosen id: {user}"
    );
    assert!(
        expiry >= before + 3600 && expiry <= now() + 3600,
        "ttl is 1h"
    );
    assert_eq!(b["ttl"], json!(3600));
    assert_eq!(b["uris"], b["iceServers"][1]["urls"]);
    let expires_at = b["expiresAt"].as_str().expect("expiresAt");
    assert!(
        expires_at.len() == 20 && expires_at.ends_with('Z'),
        "{expires_at}"
    );
    let secrets = [SecretString::from(TEST_SECRET.to_string())];
    assert_eq!(verify(&secrets, username, password, now()), Ok(0));
    let other = [SecretString::from("another-secret-entirely".to_string())];
    assert!(verify(&other, username, password, now()).is_err());
}

#[test]
fn ice_servers_picks_a_random_user_without_username_and_refuses_bad_queries() {
    let ports = Ports::new();
    let _svc = common::start(&ports, "");
    let url = format!("{}/api/ice-servers", base(&ports));
    let a = http("GET", &url, &[], None);
    let b = http("GET", &url, &[], None);
    assert_eq!(a.status, 200);
    let user = |r: &common::Reply| {
        r.body["username"]
            .as_str()
            .and_then(|u| u.split_once(':'))
            .map(|(_, u)| u.to_string())
            .unwrap_or_default()
    };
    assert!(!user(&a).is_empty());
    assert_ne!(user(&a), user(&b), "a fresh random id each time");
    let bad_user = http("GET", &format!("{url}?username=a:b"), &[], None);
    assert_json_error(&bad_user, 400, "bad-request");
    let bad_service = http("GET", &format!("{url}?service=stun"), &[], None);
    assert_json_error(&bad_service, 400, "bad-request");
}

#[test]
fn health_ready_stats_and_metrics_answer() {
    let ports = Ports::new();
    let _svc = common::start(&ports, "");
    let b = base(&ports);
    let health = http("GET", &format!("{b}/health"), &[], None);
    assert_eq!(
        (health.status, health.body.clone()),
        (200, json!({"status": "ok"}))
    );
    let ready = http("GET", &format!("{b}/ready"), &[], None);
    assert_eq!(ready.status, 200);
    let m = common::metrics_base(&ports);
    let stats = http("GET", &format!("{m}/stats"), &[], None);
    assert_eq!(stats.status, 200);
    assert_eq!(stats.body["connections"], json!(0));
    assert_eq!(stats.body["rooms"], json!(0));
    assert!(stats.body["uptimeSeconds"].is_u64());
    let metrics = http("GET", &format!("{m}/metrics"), &[], None);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/plain")
    );
    let text = metrics.body.as_str().unwrap_or_default();
    for name in [
        "switchboard_signaling_connections ",
        "switchboard_signaling_rooms ",
        "switchboard_signaling_peers ",
        "switchboard_signaling_rate_limited_total ",
        "switchboard_signaling_connections_accepted_total ",
    ] {
        assert!(text.contains(name), "missing {name}: {text}");
    }
}

#[test]
fn rooms_can_be_created_listed_and_read_and_unknown_ones_are_404() {
    let ports = Ports::new();
    let _svc = common::start(&ports, "max_peers_per_room = 6");
    let b = base(&ports);
    let body = json!({"name": "Standup", "maxPeers": 3});
    let created = http("POST", &format!("{b}/api/rooms"), &[], Some(&body));
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.body["id"].as_str().expect("id").to_string();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(created.body["name"], "Standup");
    assert_eq!(created.body["maxPeers"], json!(3));
    assert_eq!(created.body["hasPassword"], json!(false));
    assert_eq!(created.body["peerCount"], json!(0));
    assert!(created.body.get("peers").is_none(), "{created:?}");
    let empty = http("POST", &format!("{b}/api/rooms"), &[], None);
    assert_eq!(empty.status, 201, "all fields are optional");
    assert_eq!(empty.body["maxPeers"], json!(6));
    let list = http("GET", &format!("{b}/api/rooms"), &[], None);
    let ids: Vec<&Value> = list.body["rooms"]
        .as_array()
        .map(|a| a.iter().map(|r| &r["id"]).collect())
        .unwrap_or_default();
    assert!(ids.contains(&&json!(id)), "{list:?}");
    let one = http("GET", &format!("{b}/api/rooms/{id}"), &[], None);
    assert_eq!(one.status, 200);
    assert_eq!(one.body["name"], "Standup");
    let missing = http("GET", &format!("{b}/api/rooms/nope"), &[], None);
    assert_json_error(&missing, 404, "not-found");
    let bad = http(
        "POST",
        &format!("{b}/api/rooms"),
        &[],
        Some(&json!({"maxPeers": "x"})),
    );
    assert_json_error(&bad, 400, "bad-request");
    let unknown_field = http(
        "POST",
        &format!("{b}/api/rooms"),
        &[],
        Some(&json!({"owner": 1})),
    );
    assert_json_error(&unknown_field, 400, "bad-request");
    let huge = json!({"name": "x".repeat(70_000)});
    let too_big = http("POST", &format!("{b}/api/rooms"), &[], Some(&huge));
    assert_json_error(&too_big, 413, "payload-too-large");
    let nowhere = http("GET", &format!("{b}/no/such/route"), &[], None);
    assert_json_error(&nowhere, 404, "not-found");
}

#[test]
fn deleting_a_room_is_refused_when_no_admin_token_is_configured() {
    let ports = Ports::new();
    let _svc = common::start(&ports, "");
    let b = base(&ports);
    let created = http("POST", &format!("{b}/api/rooms"), &[], None);
    let id = created.body["id"].as_str().unwrap_or_default();
    let r = http(
        "DELETE",
        &format!("{b}/api/rooms/{id}"),
        &[("authorization", "Bearer anything")],
        None,
    );
    assert_json_error(&r, 403, "forbidden");
    assert_eq!(
        http("GET", &format!("{b}/api/rooms/{id}"), &[], None).status,
        200
    );
}

#[test]
fn deleting_a_room_needs_the_admin_token_and_tells_its_members() {
    let ports = Ports::new();
    let svc = common::start(&ports, "admin_token = \"admin-test-token-0123456789\"");
    let r = common::drive(
        &svc,
        &ports,
        "adminDelete",
        &json!({"admin": "admin-test-token-0123456789"}),
    );
    assert_eq!(r["noToken"]["status"], json!(401), "{r}");
    assert_eq!(r["noToken"]["body"]["error"]["code"], "unauthorized");
    assert_eq!(r["wrongToken"]["status"], json!(401), "{r}");
    assert_eq!(r["right"]["status"], json!(204), "{r}");
    assert_eq!(r["leftAtA"]["peerId"], r["ids"]["a"]);
    assert_eq!(r["leftAtB"]["peerId"], r["ids"]["a"]);
    assert_eq!(r["after"]["status"], json!(404));
    assert_eq!(r["messageAfter"]["error"]["code"], "not-in-room", "{r}");
}

#[test]
fn cors_allows_the_configured_origins_only() {
    let ports = Ports::new();
    let _svc = common::start(&ports, "");
    let b = base(&ports);
    let allowed = format!("http://127.0.0.1:{}", ports.signaling);
    let preflight = http(
        "OPTIONS",
        &format!("{b}/api/rooms"),
        &[
            ("origin", &allowed),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "authorization,content-type",
            ),
        ],
        None,
    );
    assert!(preflight.status < 300, "{preflight:?}");
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some(allowed.as_str())
    );
    let methods = preflight
        .header("access-control-allow-methods")
        .unwrap_or_default()
        .to_ascii_uppercase();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let get = http(
        "GET",
        &format!("{b}/api/ice-servers"),
        &[("origin", &allowed)],
        None,
    );
    assert_eq!(
        get.header("access-control-allow-origin"),
        Some(allowed.as_str())
    );
    let evil = http(
        "GET",
        &format!("{b}/api/ice-servers"),
        &[("origin", "https://evil.example")],
        None,
    );
    assert_eq!(evil.header("access-control-allow-origin"), None);
}

#[test]
fn the_demo_page_is_served_when_enabled_and_absent_when_disabled() {
    let ports = Ports::new();
    let _svc = common::start(&ports, "demo = true");
    let index = http("GET", &format!("{}/", base(&ports)), &[], None);
    assert_eq!(index.status, 200);
    assert!(
        index
            .header("content-type")
            .unwrap_or_default()
            .starts_with("text/html")
    );
    assert!(index.body.as_str().unwrap_or_default().contains("<html"));
    let asset = http(
        "GET",
        &format!("{}/assets/index.html", base(&ports)),
        &[],
        None,
    );
    assert_eq!(asset.status, 200);
    let missing = http(
        "GET",
        &format!("{}/assets/nope.js", base(&ports)),
        &[],
        None,
    );
    assert_eq!(missing.status, 404);

    let ports = Ports::new();
    let _off = common::start(&ports, "demo = false");
    assert_eq!(
        http("GET", &format!("{}/", base(&ports)), &[], None).status,
        404
    );
}
