//! End-to-end tests of the signaling hardening of issue 12 (SPEC section 4), each driving the
//! real `switchboard-signaling` binary the way the attack does.

#[path = "common/signaling.rs"]
mod common;

use serde_json::{Value, json};
use switchboard_tests::Ports;

fn assert_ok(ack: &Value, what: &str) {
    assert_eq!(ack["ok"], json!(true), "{what}: {ack}");
}

/// The server logged closing a slow reader (at WARN, so operators see it).
fn assert_slow_reader_logged(svc: &switchboard_tests::Service) {
    let logs = svc.logs();
    assert!(logs.contains("Slow reader disconnected"), "{logs}");
}

/// A long-polling victim's peer id, which every room-mate learns, is not its Engine.IO sid:
/// POSTing packets with it, polling with it and upgrading with it are all refused, and the
/// bystander receives nothing forged.
#[test]
fn a_peer_id_gives_no_way_to_send_on_read_from_or_upgrade_the_peers_session() {
    let ports = Ports::new();
    let svc = common::start(&ports, "");
    let r = common::drive(&svc, &ports, "hijack", &json!({}));
    let peer_id = r["peerId"].as_str().expect("peer id");
    assert_ne!(Some(peer_id), r["victimEngineSid"].as_str(), "{r}");
    assert!(peer_id.len() >= 22, "128 random bits: {peer_id}");
    assert_eq!(r["postStatus"], json!(400), "forged POST refused: {r}");
    assert_eq!(
        r["getStatus"],
        json!(400),
        "poll with the peer id refused: {r}"
    );
    assert_ne!(r["upgrade"]["outcome"], json!("upgraded"), "{r}");
    assert_eq!(r["forgedMessages"], json!(0), "{r}");
    assert_eq!(r["forgedOffers"], json!(0), "{r}");
    assert_eq!(r["genuineMessages"], json!(1), "{r}");
    assert_eq!(r["victimConnected"], json!(true), "{r}");
    assert_ok(&r["victimStillWorks"], "the victim's session is untouched");
}

const ADMIN: &str = "admin-test-token-0123456789";

/// `GET /api/rooms` and `/api/rooms/{id}` give members' peer ids, user ids and metadata only
/// to the admin token; anyone else (no token, a wrong one) sees `peerCount`.
#[test]
fn rest_shows_room_members_only_to_the_admin_token() {
    let ports = Ports::new();
    let svc = common::start(&ports, &format!("admin_token = \"{ADMIN}\""));
    let r = common::drive(&svc, &ports, "privacy", &json!({"admin": ADMIN}));
    let peer_id = r["peerId"].as_str().expect("peer id").to_string();
    for key in ["listAnon", "oneAnon", "listWrong", "oneWrong"] {
        assert_eq!(r[key]["status"], json!(200), "{key}: {r}");
        let text = r[key]["body"].to_string();
        for secret in [peer_id.as_str(), "alice-secret-user", "secret-metadata"] {
            assert!(!text.contains(secret), "{key} shows {secret}: {text}");
        }
    }
    assert_eq!(r["oneAnon"]["body"]["peerCount"], json!(1), "{r}");
    assert!(r["oneAnon"]["body"].get("peers").is_none(), "{r}");
    assert_eq!(
        r["listAnon"]["body"]["rooms"][0]["peerCount"],
        json!(1),
        "{r}"
    );
    let admin_one = &r["oneAdmin"]["body"];
    assert_eq!(admin_one["peers"][0]["peerId"], json!(peer_id), "{r}");
    assert_eq!(admin_one["peers"][0]["userId"], "alice-secret-user", "{r}");
    assert_eq!(
        admin_one["peers"][0]["metadata"]["note"], "secret-metadata",
        "{r}"
    );
    assert_eq!(
        r["listAdmin"]["body"]["rooms"][0]["peers"][0]["peerId"],
        json!(peer_id),
        "{r}"
    );
}

/// `POST /api/rooms` beyond `signaling.max_persistent_rooms` is answered 429 `rate-limited`;
/// deleting one frees its place.
#[test]
fn persistent_rooms_are_capped_and_the_next_creation_is_rate_limited() {
    let ports = Ports::new();
    let _svc = common::start(
        &ports,
        &format!("admin_token = \"{ADMIN}\"\nmax_persistent_rooms = 5"),
    );
    let url = format!("{}/api/rooms", common::base(&ports));
    let mut ids = Vec::new();
    for i in 0..5 {
        let r = common::http("POST", &url, &[], Some(&json!({"name": format!("r{i}")})));
        assert_eq!(r.status, 201, "{r:?}");
        ids.push(r.body["id"].as_str().expect("id").to_string());
    }
    let refused = common::http("POST", &url, &[], None);
    assert_eq!(refused.status, 429, "{refused:?}");
    assert_eq!(refused.body["error"]["code"], "rate-limited", "{refused:?}");
    let list = common::http("GET", &url, &[], None);
    assert_eq!(list.body["rooms"].as_array().map(Vec::len), Some(5));
    let auth = format!("Bearer {ADMIN}");
    let del = common::http(
        "DELETE",
        &format!("{url}/{}", ids[0]),
        &[("authorization", &auth)],
        None,
    );
    assert_eq!(del.status, 204, "{del:?}");
    let again = common::http("POST", &url, &[], None);
    assert_eq!(
        again.status, 201,
        "a deleted room frees its place: {again:?}"
    );
}

/// A persistent room with no member is removed after `signaling.persistent_room_idle`; one
/// with a member stays, and goes once its member has left for that long.
#[test]
fn an_idle_persistent_room_is_removed_and_one_in_use_is_kept() {
    let ports = Ports::new();
    let svc = common::start(&ports, "persistent_room_idle = \"2s\"");
    let r = common::drive(&svc, &ports, "idleRooms", &json!({}));
    assert_ok(&r["join"], "join the used room");
    assert_eq!(
        r["idleAfter"]["status"],
        json!(404),
        "idle room removed: {r}"
    );
    assert_eq!(
        r["usedAfter"]["status"],
        json!(200),
        "room in use kept: {r}"
    );
    assert_eq!(
        r["usedAfterLeaving"]["status"],
        json!(404),
        "removed once idle: {r}"
    );
}

/// `/metrics` and `/stats` are served on `signaling.metrics_listen` only; the public listener
/// keeps `/health` and `/ready` and answers 404 to the operators' routes.
#[test]
fn metrics_and_stats_are_only_on_the_metrics_listener() {
    let ports = Ports::new();
    let _svc = common::start(&ports, "");
    let public = common::base(&ports);
    let private = common::metrics_base(&ports);
    for path in ["/metrics", "/stats"] {
        let r = common::http("GET", &format!("{public}{path}"), &[], None);
        assert_eq!(r.status, 404, "public {path}: {r:?}");
        let r = common::http("GET", &format!("{private}{path}"), &[], None);
        assert_eq!(r.status, 200, "metrics listener {path}: {r:?}");
    }
    for path in ["/health", "/ready"] {
        let r = common::http("GET", &format!("{public}{path}"), &[], None);
        assert_eq!(r.status, 200, "public {path}: {r:?}");
    }
    let text = common::http("GET", &format!("{private}/metrics"), &[], None);
    let text = text.body.as_str().unwrap_or_default();
    assert!(
        text.contains("switchboard_signaling_connections "),
        "{text}"
    );
}

/// Four clients each stream an unfinished 45 MiB fragmented WebSocket message (the attack of
/// issue 12 took the server from 198 to 393 MB): each connection is closed at the message
/// limit (about 2 x max_payload_bytes), RSS grows by less than 64 MiB, and a legitimate
/// client still joins.
#[test]
fn unfinished_huge_fragmented_websocket_messages_are_cut_off_and_rss_stays_bounded() {
    let ports = Ports::new();
    let svc = common::start(&ports, "");
    let r = common::drive(
        &svc,
        &ports,
        "fragmentFlood",
        &json!({"clients": 4, "mib": 45, "pid": svc.pid()}),
    );
    for c in r["clients"].as_array().expect("clients") {
        assert_eq!(c["connected"], json!(true), "{r}");
        assert_eq!(c["closed"], json!(true), "closed at the limit: {r}");
        assert!(
            c["sentBytes"].as_u64().unwrap_or(u64::MAX) < 45 << 20,
            "the server stopped reading before the end: {r}"
        );
    }
    let before = r["rssBeforeKiB"].as_u64().expect("rss before");
    let during = r["rssDuringKiB"].as_u64().expect("rss during");
    eprintln!("fragmented messages: RSS {before} KiB before, {during} KiB during");
    assert!(
        during < before + 64 * 1024,
        "RSS {before} KiB -> {during} KiB: {r}"
    );
    assert_ok(&r["legitJoin"], "a legitimate client joins");
}

/// `signaling.max_connections_per_ip` (default 256): 256 connections from one address work,
/// the 257th is refused (HTTP 429 `rate-limited` before any upgrade), and closing one makes
/// room again.
#[test]
fn the_257th_connection_from_one_ip_is_refused() {
    let ports = Ports::new();
    let svc = common::start(&ports, "");
    let r = common::drive(&svc, &ports, "perIpCap", &json!({"n": 256}));
    assert_eq!(r["opened"], json!(256), "{r}");
    assert!(
        r["extra"]
            .as_str()
            .is_some_and(|s| s.starts_with("refused")),
        "{r}"
    );
    assert_eq!(r["handshakeStatus"], json!(429), "{r}");
    let body: Value =
        serde_json::from_str(r["handshakeBody"].as_str().unwrap_or_default()).unwrap_or_default();
    assert_eq!(body["error"]["code"], "rate-limited", "{r}");
    assert_eq!(r["restStillWorks"], json!(200), "{r}");
    assert_eq!(r["afterClose"], json!("connected"), "{r}");
    let metrics = common::http(
        "GET",
        &format!("{}/metrics", common::metrics_base(&ports)),
        &[],
        None,
    );
    let text = metrics.body.as_str().unwrap_or_default();
    assert!(
        !text.contains("switchboard_signaling_connections_refused_total 0"),
        "{text}"
    );
}

/// A peer that never reads while another streams 32 KiB messages at it: once its outbound
/// queue passes its byte cap it is disconnected (logged, counted), the sender gets
/// `user-left` and keeps working.
#[test]
fn a_slow_reader_is_disconnected_at_its_outbound_byte_cap() {
    let ports = Ports::new();
    let svc = common::start(
        &ports,
        "rate_limit_per_second = 100000\nrate_limit_burst = 100000",
    );
    let r = common::drive(
        &svc,
        &ports,
        "slowReader",
        &json!({"bytes": 32768, "n": 1000}),
    );
    assert_eq!(r["targetLeft"], json!(true), "{r}\n{}", svc.logs());
    assert_eq!(r["senderConnected"], json!(true), "{r}");
    let metrics = common::http(
        "GET",
        &format!("{}/metrics", common::metrics_base(&ports)),
        &[],
        None,
    );
    let text = metrics.body.as_str().unwrap_or_default();
    assert!(
        text.contains("switchboard_signaling_slow_readers_closed_total 1"),
        "{text}"
    );
    assert_slow_reader_logged(&svc);
}

/// The signaling part of issue 12's flood acceptance: 1,000 persistent rooms created over
/// REST (the 1,001st refused), and from one client oversized events, unknown events, bad
/// joins, oversized offers and messages beyond the transport limit (each closing its
/// connection, the attacker reconnecting). Throughout, a legitimate pair relays an offer each
/// round; RSS stays within 64 MiB of its start; nothing of it is logged per request at INFO.
#[test]
fn a_hostile_flood_leaves_rss_bounded_and_a_legitimate_pair_relaying() {
    let ports = Ports::new();
    let svc = common::start(&ports, "");
    let r = common::drive(
        &svc,
        &ports,
        "hostileFlood",
        &json!({"rounds": 10, "roomsPerRound": 100, "pid": svc.pid()}),
    );
    let offers = r["offers"].as_array().expect("offers");
    assert_eq!(offers.len(), 10, "{r}");
    for o in offers {
        assert_eq!(o, &json!({"ok": true, "delivered": true}), "{r}");
    }
    assert_eq!(r["created"], json!(1000), "{r}");
    assert_eq!(r["extraCreate"]["status"], json!(429), "{r}");
    assert_eq!(
        r["extraCreate"]["body"]["error"]["code"], "rate-limited",
        "{r}"
    );
    let before = r["rssBeforeKiB"].as_u64().expect("rss");
    let max = r["rssMaxKiB"].as_u64().expect("rss");
    let after = r["rssAfterKiB"].as_u64().expect("rss");
    eprintln!("hostile flood: RSS {before} KiB before, {max} KiB max, {after} KiB after");
    assert!(
        max.max(after) < before + 64 * 1024,
        "RSS {before} KiB, max {max} KiB, after {after} KiB: {r}"
    );
    assert_ok(&r["bLate"], "the legitimate client still joins");
    let logs = svc.logs();
    for line in ["Room created", "Connected", "Disconnected"] {
        assert!(!logs.contains(line), "`{line}` logged at INFO:\n{logs}");
    }
    let metrics = common::http(
        "GET",
        &format!("{}/metrics", common::metrics_base(&ports)),
        &[],
        None,
    );
    let text = metrics.body.as_str().unwrap_or_default();
    for want in [
        "switchboard_signaling_rooms_created_total 1000",
        "switchboard_signaling_rooms_refused_total 1",
    ] {
        assert!(text.contains(want), "missing {want}: {text}");
    }
    assert!(
        !text.contains("switchboard_signaling_disconnections_total 0"),
        "{text}"
    );
}

/// Half-open Engine.IO sessions (handshake, never a Socket.IO CONNECT) count against
/// `signaling.max_connections_per_ip` as well: with a cap of 8, the 9th handshake is 429.
#[test]
fn half_open_engine_sessions_count_against_the_per_ip_cap() {
    let ports = Ports::new();
    let svc = common::start(&ports, "max_connections_per_ip = 8");
    let r = common::drive(&svc, &ports, "halfOpenCap", &json!({"n": 8}));
    let mut want = vec![json!(200); 8];
    want.push(json!(429));
    assert_eq!(r["statuses"], json!(want), "{r}");
    assert!(
        r["client"]
            .as_str()
            .is_some_and(|s| s.starts_with("refused")),
        "{r}"
    );
}

/// The WebSocket transport spoken raw: the open packet carries the heartbeat and the
/// payload limit; a CONNECT to another namespace is refused and the session kept; a binary
/// event (not supported) is refused with `bad-request`, its attachment skipped, nothing
/// relayed; a frame that is not Engine.IO closes that connection only: its room-mate sees
/// it leave and keeps working.
#[test]
fn a_raw_websocket_client_gets_clear_answers_and_garbage_closes_only_its_connection() {
    let ports = Ports::new();
    let svc = common::start(&ports, "");
    let r = common::drive(&svc, &ports, "rawWire", &json!({}));
    let open = &r["open"];
    assert!(open["sid"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
    assert_eq!(open["upgrades"], json!([]), "{r}");
    assert_eq!(open["pingInterval"], json!(25000), "{r}");
    assert_eq!(open["pingTimeout"], json!(20000), "{r}");
    assert!(open["maxPayload"].as_u64().is_some_and(|n| n > 0), "{r}");
    assert_eq!(
        r["otherNamespace"],
        json!("44/elsewhere,{\"message\":\"Invalid namespace\"}"),
        "{r}"
    );
    assert!(r["connected"]["sid"].as_str().is_some(), "{r}");
    assert_ok(&r["joinAck"][0], "the raw client joins");
    assert_eq!(r["binaryRefused"][0], json!("error"), "{r}");
    assert_eq!(r["binaryRefused"][1]["code"], json!("bad-request"), "{r}");
    assert_ok(
        &r["messageAck"][0],
        "a message after the refused binary event",
    );
    assert_eq!(
        r["messagesAtB"],
        json!(["raw hello"]),
        "nothing else relayed: {r}"
    );
    assert_eq!(
        r["closed"],
        json!(true),
        "garbage closes the connection: {r}"
    );
    assert_eq!(r["bSawRawLeave"], json!(true), "{r}");
    assert_ok(&r["bStillWorks"], "the room-mate keeps working");
}

/// No silent loss when a target stops reading, on both transports: the target joins and
/// stops reading; signals sent to it fill what the kernel (WebSocket) or the engine.io
/// buffer (long-polling) takes, then its outbound queue, until it is closed as a slow
/// reader. Signals acked as queued that the server still held are answered to the sender
/// with `unknown-peer` error events (what the kernel had already taken is beyond any
/// server's reach), and the sender keeps its connection.
fn stalled_target_answers(target: &str) -> Value {
    let ports = Ports::new();
    let svc = common::start(
        &ports,
        "rate_limit_per_second = 100000\nrate_limit_burst = 100000",
    );
    let r = common::drive(
        &svc,
        &ports,
        "stalledTargetAnswers",
        &json!({"bytes": 32768, "n": 2000, "target": target}),
    );
    assert_eq!(r["targetLeft"], json!(true), "{r}\n{}", svc.logs());
    assert_eq!(r["senderConnected"], json!(true), "{r}");
    let queued = r["queued"].as_u64().unwrap_or(0);
    let answered = r["answeredUnknownPeer"].as_u64().unwrap_or(0);
    // When the slow reader is cut off, its outbound queue holds its byte cap (4 MiB, about
    // 127 of these signals): at least half of that must come back, not just the one packet
    // a writer had in hand.
    let held_at_cap = (4u64 << 20) / 32768;
    assert!(
        answered >= held_at_cap / 2 && answered <= queued,
        "queued signals the server held must be answered: {r}"
    );
    assert_slow_reader_logged(&svc);
    r
}

#[test]
fn signals_held_for_a_websocket_target_that_stops_reading_are_answered() {
    let r = stalled_target_answers("websocket");
    assert_eq!(r["targetClosed"], json!(true), "{r}");
}

#[test]
fn signals_held_for_a_polling_target_that_stops_polling_are_answered() {
    stalled_target_answers("polling");
}
