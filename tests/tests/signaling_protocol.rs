//! End-to-end tests of the Socket.IO protocol v1 (SPEC section 4): the real
//! `switchboard-signaling` binary driven by socket.io-client 4.x under Node.

#[path = "common/signaling.rs"]
mod common;

use serde_json::{Value, json};
use switchboard_tests::Ports;

fn code(ack: &Value) -> &str {
    ack["error"]["code"].as_str().unwrap_or("<none>")
}

fn assert_ok(ack: &Value, what: &str) {
    assert_eq!(ack["ok"], json!(true), "{what}: {ack}");
}

fn assert_code(ack: &Value, expected: &str, what: &str) {
    assert_eq!(ack["ok"], json!(false), "{what}: {ack}");
    assert_eq!(code(ack), expected, "{what}: {ack}");
    assert!(ack["error"]["message"].is_string(), "{what}: {ack}");
}

#[test]
fn every_client_event_is_acked_and_delivered_with_the_spec_payloads() {
    let ports = Ports::new();
    let admin = "admin-test-token-0123456789";
    let svc = common::start(&ports, &format!("admin_token = \"{admin}\""));
    let r = common::drive(&svc, &ports, "events", &json!({"admin": admin}));
    let (a, b) = (r["ids"]["a"].clone(), r["ids"]["b"].clone());

    // join-room: ack {ok, self, peers, polite, iceServers}; the first joiner is impolite.
    let ja = &r["joinA"];
    assert_ok(ja, "join A");
    assert_eq!(ja["self"]["peerId"], a);
    assert_eq!(ja["self"]["userId"], "ann");
    assert_eq!(ja["self"]["displayName"], "Ann");
    assert_eq!(ja["self"]["metadata"], json!({"role": "host"}));
    assert!(ja["self"]["joinedAt"].is_u64());
    assert_eq!(ja["peers"], json!([]));
    assert_eq!(ja["polite"], json!(false));
    let ice = ja["iceServers"].as_array().expect("iceServers");
    assert!(!ice.is_empty());
    let turn = ice
        .iter()
        .find(|s| s.get("username").is_some())
        .expect("a TURN entry");
    // Auth off: the TURN user is the server's per-connection id, never the client's `userId`.
    let turn_user = turn["username"].as_str().unwrap_or_default();
    assert!(
        turn_user.contains(":anon-") && !turn_user.contains("ann"),
        "{turn_user}"
    );
    assert_eq!(r["roomUsersA"]["roomId"], "events");
    assert_eq!(r["roomUsersA"]["users"].as_array().map(Vec::len), Some(1));

    // The joiner is polite, sees the earlier peer, gets room-users; the earlier peer gets user-joined.
    let jb = &r["joinB"];
    assert_ok(jb, "join B");
    assert_eq!(jb["polite"], json!(true));
    assert_eq!(jb["peers"][0]["peerId"], a);
    assert_eq!(r["roomUsersB"]["users"].as_array().map(Vec::len), Some(2));
    assert_eq!(r["userJoinedAtA"]["roomId"], "events");
    assert_eq!(r["userJoinedAtA"]["peer"]["peerId"], b);
    assert_eq!(r["userJoinedAtA"]["peer"]["displayName"], "Bob");

    // offer / answer / ice-candidate: delivered to the target only, with `from` added.
    assert_ok(&r["offerAck"], "offer");
    assert_eq!(r["offerAtB"]["from"], a);
    assert_eq!(
        r["offerAtB"]["offer"],
        json!({"type": "offer", "sdp": "v=0"})
    );
    assert_eq!(r["offerAtB"]["targetId"], b);
    assert_ok(&r["answerAck"], "answer");
    assert_eq!(r["answerAtA"]["from"], b);
    assert_eq!(r["answerAtA"]["answer"]["type"], "answer");
    assert_ok(&r["candidateAck"], "ice-candidate");
    assert_eq!(r["candidateAtB"]["from"], a);
    assert_eq!(r["candidateAtB"]["candidate"]["candidate"], "candidate:1");

    // signal {to, data} → signal {from, data}.
    assert_ok(&r["signalAck"], "signal");
    assert_eq!(
        r["signalAtA"],
        json!({"from": b, "data": {"kind": "renegotiate"}})
    );

    // message → others only, as {from, roomId, data}.
    assert_ok(&r["messageAck"], "message");
    assert_eq!(
        r["messageAtB"],
        json!({"from": a, "roomId": "events", "data": {"text": "hi"}})
    );
    assert_eq!(
        r["messagesAtA"],
        json!(0),
        "the sender does not get its own message"
    );

    // update-state → peer-updated {peerId, state}.
    assert_ok(&r["updateAck"], "update-state");
    assert_eq!(r["peerUpdatedAtA"]["peerId"], b);
    assert_eq!(r["peerUpdatedAtA"]["state"], json!({"muted": true}));
    let stored = r["roomAfterUpdate"]["peers"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["peerId"] == b))
        .map(|p| p["state"].clone());
    assert_eq!(
        stored,
        Some(json!({"muted": true})),
        "state is stored on the peer"
    );

    // Without an ack, failures arrive as `error` {event, code, message}.
    assert_eq!(r["errorEventAtB"]["event"], "offer");
    assert_eq!(r["errorEventAtB"]["code"], "unknown-peer");
    assert!(r["errorEventAtB"]["message"].is_string());

    // leave-room → user-left to the others; leaving again is not-in-room.
    assert_ok(&r["leaveAck"], "leave");
    assert_eq!(r["userLeftAtA"], json!({"roomId": "events", "peerId": b}));
    assert_code(&r["leaveAgainAck"], "not-in-room", "leave twice");

    // Metrics count relayed events by type and errors by code, with no per-user labels.
    let metrics = common::http(
        "GET",
        &format!("{}/metrics", common::metrics_base(&ports)),
        &[],
        None,
    );
    let text = metrics.body.as_str().unwrap_or_default();
    for line in [
        "switchboard_signaling_events_relayed_total{event=\"offer\"} 1",
        "switchboard_signaling_events_relayed_total{event=\"ice-candidate\"} 1",
        "switchboard_signaling_events_relayed_total{event=\"message\"} 1",
        "switchboard_signaling_errors_total{code=\"unknown-peer\"} 1",
        "switchboard_signaling_errors_total{code=\"not-in-room\"} 1",
    ] {
        assert!(text.contains(line), "missing {line}: {text}");
    }
    assert!(
        !text.contains("ann") && !text.contains("events\""),
        "no user or room labels"
    );
}

fn ordering(args: serde_json::Value) {
    let ports = Ports::new();
    // A rate limit high enough that the burst itself is accepted.
    let svc = common::start(
        &ports,
        "rate_limit_per_second = 100000\nrate_limit_burst = 100000",
    );
    let n = args["n"].clone();
    let r = common::drive(&svc, &ports, "ordering", &args);
    assert_eq!(r["errorsAtSender"], json!([]), "{r}");
    assert_eq!(r["received"], n, "{r}");
    assert_eq!(r["unique"], n, "{r}");
    assert_eq!(r["outOfOrder"], json!(0), "{r}");
    assert_eq!(r["inOrder"], json!(true), "{r}");
}

#[test]
fn two_thousand_back_to_back_candidates_arrive_complete_and_in_order_over_websocket() {
    ordering(json!({"n": 2000, "padBytes": 512}));
}

/// Both peers on long-polling: the sender's events arrive in batched HTTP bodies, and the
/// receiver drains only when it polls, so the server's per-socket buffer fills. This is
/// where an implementation that drops on a full buffer loses events.
#[test]
fn two_thousand_back_to_back_candidates_reach_a_polling_peer_complete_and_in_order() {
    ordering(json!({"n": 2000, "padBytes": 64, "transportA": "polling", "transportB": "polling"}));
}

#[test]
fn joiners_racing_for_the_last_seat_never_both_get_in() {
    let ports = Ports::new();
    let svc = common::start(&ports, "");
    let r = common::drive(
        &svc,
        &ports,
        "race",
        &json!({"rounds": 10, "contenders": 6}),
    );
    let rounds = r["results"].as_array().expect("results");
    assert_eq!(rounds.len(), 10);
    for round in rounds {
        assert_eq!(round["oks"], json!(1), "exactly one wins: {round}");
        assert_eq!(round["codes"], json!(vec!["room-full"; 5]), "{round}");
        assert_eq!(round["members"], json!(2), "{round}");
    }
}

#[test]
fn peers_in_another_room_are_unreachable_and_receive_nothing() {
    let ports = Ports::new();
    let svc = common::start(&ports, "");
    let r = common::drive(&svc, &ports, "isolation", &json!({}));
    assert_code(&r["offerToOtherRoom"], "unknown-peer", "offer");
    assert_code(&r["candidateToOtherRoom"], "unknown-peer", "candidate");
    assert_code(&r["signalToOtherRoom"], "unknown-peer", "signal");
    assert_code(
        &r["offerNamingOtherRoom"],
        "not-in-room",
        "offer naming a foreign room",
    );
    assert_code(&r["messageToOtherRoom"], "not-in-room", "message");
    assert_code(&r["stateInOtherRoom"], "not-in-room", "update-state");
    assert_code(&r["offerToSelf"], "unknown-peer", "offer to self");
    assert_eq!(r["deliveredToC"], json!(0), "{r}");
    assert_ok(&r["offerInRoomStillWorks"], "offer in the shared room");
}

#[test]
fn a_room_password_is_required_and_checked() {
    let ports = Ports::new();
    let svc = common::start(&ports, "");
    let r = common::drive(&svc, &ports, "password", &json!({}));
    assert_ok(&r["create"], "first joiner sets the password");
    assert_code(&r["missing"], "wrong-password", "no password");
    assert_code(&r["wrong"], "wrong-password", "wrong password");
    assert_eq!(r["wrongNoAck"]["code"], "wrong-password");
    assert_eq!(r["wrongNoAck"]["event"], "join-room");
    assert_ok(&r["right"], "right password");
    assert_eq!(r["restRoom"]["status"], json!(201));
    assert_eq!(r["restRoom"]["body"]["hasPassword"], json!(true));
    assert!(
        r["restRoom"]["body"].get("password").is_none(),
        "never echoed"
    );
    assert_code(&r["restWrong"], "wrong-password", "REST room, wrong");
    assert_ok(&r["restRight"], "REST room, right");
    let listing = r["listing"].to_string();
    assert!(
        !listing.contains("s3cret") && !listing.contains("\"pw\""),
        "{listing}"
    );
}

#[test]
fn disconnecting_leaves_every_room_and_removes_the_empty_room() {
    let ports = Ports::new();
    let svc = common::start(&ports, "");
    let r = common::drive(&svc, &ports, "disconnect", &json!({}));
    assert_eq!(r["userLeft"]["peerId"], r["bId"]);
    assert_eq!(r["userLeft"]["roomId"], "cleanup");
    assert_eq!(r["roomWhileA"]["status"], json!(200));
    assert_eq!(r["roomWhileA"]["body"]["peerCount"], json!(1), "{r}");
    assert_eq!(r["roomAfter"]["status"], json!(404), "{r}");
    assert_eq!(r["roomAfter"]["body"]["error"]["code"], "not-found");
}

#[test]
fn bad_input_gets_its_error_code_and_every_connection_keeps_working() {
    let ports = Ports::new();
    let svc = common::start(
        &ports,
        "max_payload_bytes = 65536\nmax_rooms_per_socket = 4",
    );
    let r = common::drive(&svc, &ports, "badInput", &json!({"bigBytes": 100_000}));
    assert_code(&r["wrongType"], "bad-request", "roomId of the wrong type");
    assert!(
        r["wrongType"]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("roomId")
    );
    assert_code(&r["badRoomId"], "bad-request", "invalid room id");
    assert_code(&r["notObject"], "bad-request", "payload not an object");
    assert_code(&r["missingTarget"], "bad-request", "missing targetId");
    assert_code(&r["missingOffer"], "bad-request", "missing offer");
    assert_code(&r["stateNotObject"], "bad-request", "state not an object");
    assert_code(&r["unknownEvent"], "bad-request", "unknown event");
    assert_eq!(r["unknownEventNoAck"]["code"], "bad-request");
    assert_code(&r["noPayload"], "bad-request", "no payload");
    assert_code(&r["oversized"], "payload-too-large", "oversized");
    assert_eq!(r["oversizedNoAck"]["event"], "message");
    assert_eq!(r["stillConnected"], json!(true));
    assert_ok(&r["afterAll"], "the connection still works");
    assert_eq!(r["bGotIt"]["data"], "still here");
    assert_ok(&r["bStillWorks"], "the other client still works");
    assert_eq!(
        r["messagesAtB"],
        json!(1),
        "no oversized message was delivered"
    );
    let extra = r["extraRooms"].as_array().expect("extraRooms");
    for ack in &extra[..3] {
        assert_ok(ack, "within max_rooms_per_socket");
    }
    assert_code(&extra[3], "bad-request", "beyond max_rooms_per_socket");
}

fn huge_frame(transport: &str) -> serde_json::Value {
    let ports = Ports::new();
    let svc = common::start(&ports, "max_payload_bytes = 65536");
    let r = common::drive(
        &svc,
        &ports,
        "hugeFrame",
        &json!({"hugeBytes": 8_000_000, "transportA": transport}),
    );
    assert_ok(&r["bStillWorks"], "another client keeps working");
    assert_eq!(
        r["messagesAtB"],
        json!(0),
        "the huge message is never delivered: {r}"
    );
    r["aOutcome"].clone()
}

/// Polling bodies beyond the transport limit (2 x max_payload_bytes + 4 KiB) fail that
/// request: that one connection closes.
#[test]
fn a_huge_polling_request_closes_only_that_connection_and_is_not_delivered() {
    let outcome = huge_frame("polling");
    assert!(outcome.is_string(), "that connection closed: {outcome}");
}

/// WebSocket messages beyond the same limit are not buffered (tungstenite's 64 MiB default
/// is lowered): that one connection closes, the others keep working. Events over
/// `max_payload_bytes` but within the limit get `payload-too-large` with the connection
/// kept (`bad_input_gets_its_error_code_and_every_connection_keeps_working`).
#[test]
fn a_huge_websocket_frame_closes_only_that_connection_and_is_not_delivered() {
    let outcome = huge_frame("websocket");
    assert!(outcome.is_string(), "that connection closed: {outcome}");
}

#[test]
fn a_flood_is_rate_limited_without_dropping_the_connection() {
    let ports = Ports::new();
    let svc = common::start(&ports, "rate_limit_per_second = 5\nrate_limit_burst = 10");
    let r = common::drive(&svc, &ports, "flood", &json!({"n": 60}));
    assert_eq!(
        r["codes"]["not-in-room"],
        json!(10),
        "the burst is served: {r}"
    );
    assert_eq!(
        r["codes"]["rate-limited"],
        json!(50),
        "the rest is refused: {r}"
    );
    assert_eq!(r["stillConnected"], json!(true));
    assert_ok(&r["otherClient"], "another client is not limited");
    assert_ok(&r["afterFlood"], "tokens come back");
    let metrics = common::http(
        "GET",
        &format!("{}/metrics", common::metrics_base(&ports)),
        &[],
        None,
    );
    let text = metrics.body.as_str().unwrap_or_default().to_string();
    let limited: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("switchboard_signaling_rate_limited_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(limited >= 50, "{text}");
}

/// The target's connection stops reading (a raw long-polling client that never polls): its
/// buffer fills, the server waits (10 s), then tells the sender `rate-limited` instead of
/// dropping. The target answered its first heartbeat, so its connection is only closed at
/// the next one (25 s): the error seen first is the stall, not the disconnect.
#[test]
fn events_to_a_target_that_stops_reading_are_answered_with_an_error_not_dropped() {
    let ports = Ports::new();
    let svc = common::start(
        &ports,
        "rate_limit_per_second = 100000\nrate_limit_burst = 100000",
    );
    let r = common::drive(&svc, &ports, "stalledTarget", &json!({"n": 3000}));
    let err = &r["firstError"];
    assert_eq!(err["event"], "ice-candidate", "{r}");
    assert_eq!(err["code"], "rate-limited", "{r}");
}
