//! Unit tests of the core: every event, ack body, error code and fan-out rule of SPEC
//! section 4, without sockets or a runtime.

use serde_json::{Value, json};

use super::*;
use crate::protocol::{ErrorCode, EventName};
use crate::rooms::PasswordHash;

fn core(max_peers: usize, max_rooms: usize) -> Core {
    Core::new(
        Rules {
            max_rooms_per_peer: max_rooms,
        },
        Rooms::new(max_peers, max_rooms),
    )
}

fn peer(id: &str) -> PeerInfo {
    PeerInfo {
        id: id.into(),
        subject: None,
        fallback_user: format!("anon-{id}"),
    }
}

fn ev(name: &str, body: Value) -> ClientEvent {
    let name = EventName::parse(name).expect("event name");
    ClientEvent::decode(name, body).expect("valid payload")
}

fn run(c: &mut Core, p: &PeerInfo, name: &str, body: Value) -> Outcome {
    c.handle(p, ev(name, body), 1_000)
}

fn join(c: &mut Core, p: &PeerInfo, room: &str) -> Outcome {
    run(c, p, "join-room", json!({"roomId": room}))
}

fn ack(o: &Outcome) -> Value {
    match &o.ack {
        Ok(a) => a.to_json(),
        Err(r) => r.ack(),
    }
}

fn code(o: &Outcome) -> Option<ErrorCode> {
    o.ack.as_ref().err().map(|r| r.code)
}

/// (target, event name, body) of each delivery, in order.
fn sent(o: &Outcome) -> Vec<(String, &'static str, Value)> {
    deliveries(&o.deliveries)
}

fn deliveries(d: &[Delivery]) -> Vec<(String, &'static str, Value)> {
    d.iter()
        .map(|d| {
            (
                d.to.clone(),
                d.event.name(),
                serde_json::to_value(&*d.event).expect("serializes"),
            )
        })
        .collect()
}

fn decode_err(name: &str, body: Value) -> Refusal {
    let name = EventName::parse(name).expect("event name");
    ClientEvent::decode(name, body).expect_err("refused")
}

/// a, b in room "r"; c alone in room "other".
fn three() -> (Core, PeerInfo, PeerInfo, PeerInfo) {
    let mut c = core(6, 4);
    let (a, b, x) = (peer("a"), peer("b"), peer("c"));
    let _ = join(&mut c, &a, "r");
    let _ = join(&mut c, &b, "r");
    let _ = join(&mut c, &x, "other");
    (c, a, b, x)
}

#[test]
fn join_acks_ok_with_room_self_peers_polite_and_ice_servers() {
    let mut c = core(6, 4);
    let a = peer("a");
    let o = join(&mut c, &a, "r");
    assert_eq!(
        ack(&o),
        json!({"ok": true, "roomId": "r", "polite": false, "peers": [], "iceServers": [],
               "self": {"peerId": "a", "userId": "anon-a", "displayName": null,
                        "metadata": null, "state": {}, "joinedAt": 1000}})
    );
}

#[test]
fn the_joiner_is_polite_and_the_members_already_present_are_told_impolitely() {
    let mut c = core(6, 4);
    let (a, b) = (peer("a"), peer("b"));
    let first = join(&mut c, &a, "r");
    assert_eq!(
        ack(&first)["polite"],
        false,
        "alone: impolite towards later joiners"
    );
    let second = join(&mut c, &b, "r");
    assert_eq!(ack(&second)["polite"], true, "joiner is polite");
    assert_eq!(ack(&second)["peers"][0]["peerId"], "a");
    let out = sent(&second);
    assert_eq!(out[0].0, "a");
    assert_eq!(out[0].1, "user-joined");
    assert_eq!(out[0].2["roomId"], "r");
    assert_eq!(out[0].2["peer"]["peerId"], "b");
    assert_eq!(
        out[0].2["polite"], false,
        "the member already present is impolite"
    );
}

#[test]
fn the_joiner_gets_room_users_with_everyone_in_join_order_after_the_others_are_told() {
    let mut c = core(6, 4);
    let (a, b, x) = (peer("a"), peer("b"), peer("c"));
    let _ = join(&mut c, &a, "r");
    let _ = join(&mut c, &b, "r");
    let o = join(&mut c, &x, "r");
    let out = sent(&o);
    let targets: Vec<(&str, &str)> = out.iter().map(|(t, e, _)| (t.as_str(), *e)).collect();
    assert_eq!(
        targets,
        [
            ("a", "user-joined"),
            ("b", "user-joined"),
            ("c", "room-users")
        ]
    );
    let users: Vec<&str> = out[2].2["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["peerId"].as_str())
        .collect();
    assert_eq!(users, ["a", "b", "c"]);
    assert_eq!(out[2].2["roomId"], "r");
}

#[test]
fn rejoining_tells_no_one_and_answers_with_the_same_seat() {
    let (mut c, a, _b, _x) = three();
    let o = join(&mut c, &a, "r");
    assert!(o.ack.is_ok());
    let out = sent(&o);
    assert_eq!(out.len(), 1, "only room-users to the joiner: {out:?}");
    assert_eq!(out[0].1, "room-users");
    assert_eq!(ack(&o)["polite"], false, "a was first");
}

#[test]
fn the_auth_subject_wins_over_the_clients_user_id() {
    let mut c = core(6, 4);
    let p = PeerInfo {
        subject: Some("alice".into()),
        ..peer("a")
    };
    let o = run(
        &mut c,
        &p,
        "join-room",
        json!({"roomId": "r", "userId": "mallory"}),
    );
    assert_eq!(ack(&o)["self"]["userId"], "alice");
    // Even an invalid client id is ignored when auth decides.
    let o = run(
        &mut c,
        &p,
        "join-room",
        json!({"roomId": "s", "userId": "a b"}),
    );
    assert_eq!(ack(&o)["self"]["userId"], "alice");
}

#[test]
fn without_auth_a_valid_client_user_id_is_used_and_an_invalid_one_is_a_bad_request() {
    let mut c = core(6, 4);
    let p = peer("a");
    let o = run(
        &mut c,
        &p,
        "join-room",
        json!({"roomId": "r", "userId": "bob"}),
    );
    assert_eq!(ack(&o)["self"]["userId"], "bob");
    let o = run(
        &mut c,
        &p,
        "join-room",
        json!({"roomId": "s", "userId": "a:b"}),
    );
    assert_eq!(code(&o), Some(ErrorCode::BadRequest));
    assert!(o.deliveries.is_empty());
    assert!(c.get_room("s").is_none(), "nothing was joined");
}

#[test]
fn without_auth_and_without_a_user_id_the_connections_fallback_is_used() {
    let mut c = core(6, 4);
    let o = join(&mut c, &peer("a"), "r");
    assert_eq!(ack(&o)["self"]["userId"], "anon-a");
}

#[test]
fn the_rest_user_id_rule_is_the_same_rule() {
    assert_eq!(
        resolve_user_id(Some("sub"), Some("x"), "username"),
        Ok(UserId::Subject("sub"))
    );
    assert_eq!(
        resolve_user_id(None, Some("x"), "username"),
        Ok(UserId::Asked("x"))
    );
    assert_eq!(
        resolve_user_id(None, None, "username"),
        Ok(UserId::Unspecified)
    );
    let r = resolve_user_id(None, Some(""), "username").expect_err("invalid");
    assert_eq!(r.code, ErrorCode::BadRequest);
    assert!(r.message.contains("`username`"));
}

#[test]
fn a_full_room_refuses_with_room_full_and_capacity_is_never_exceeded() {
    let mut c = core(2, 4);
    assert!(join(&mut c, &peer("a"), "r").ack.is_ok());
    assert!(join(&mut c, &peer("b"), "r").ack.is_ok());
    let o = join(&mut c, &peer("c"), "r");
    assert_eq!(code(&o), Some(ErrorCode::RoomFull));
    assert!(o.deliveries.is_empty(), "no one hears of a refused join");
    assert_eq!(c.get_room("r").map(|r| r.peers.len()), Some(2));
}

#[test]
fn capacity_is_checked_in_the_same_step_as_the_insertion() {
    // Two joins planned against the same (one-seat-left) room: the first step takes the
    // seat, the second step is refused, whatever happened between planning and applying.
    let mut c = core(2, 4);
    let _ = join(&mut c, &peer("a"), "r");
    let (b, x) = (peer("b"), peer("c"));
    let pb = c
        .rules()
        .plan(&b, ev("join-room", json!({"roomId": "r"})), 1)
        .expect("plan");
    let px = c
        .rules()
        .plan(&x, ev("join-room", json!({"roomId": "r"})), 1)
        .expect("plan");
    let rb = step::apply(&mut c.rooms, "b", pb.step);
    let rx = step::apply(&mut c.rooms, "c", px.step);
    assert!(rb.is_ok());
    assert_eq!(rx, Err(StepError::Join(crate::rooms::JoinError::RoomFull)));
}

#[test]
fn too_many_rooms_for_one_connection_is_a_bad_request_naming_the_limit() {
    let mut c = core(6, 2);
    let a = peer("a");
    assert!(join(&mut c, &a, "r1").ack.is_ok());
    assert!(join(&mut c, &a, "r2").ack.is_ok());
    let o = join(&mut c, &a, "r3");
    assert_eq!(code(&o), Some(ErrorCode::BadRequest));
    assert!(o.ack.as_ref().is_err_and(|r| r.message.contains("limit 2")));
}

#[test]
fn a_locked_room_refuses_an_unverified_join_with_wrong_password() {
    let mut c = core(6, 4);
    let hash = PasswordHash::new("pw", [1; 16]).expect("hash");
    let mut j = match ev("join-room", json!({"roomId": "r", "password": "pw"})) {
        ClientEvent::JoinRoom(j) => j,
        _ => unreachable!(),
    };
    assert_eq!(
        c.password_step(&peer("a"), &j),
        Ok(PasswordStep::Hash {
            password: "pw".into()
        }),
        "the first join with a password creates a locked room"
    );
    j.admission = Admission::NewPassword(hash.clone());
    assert!(
        c.handle(&peer("a"), ClientEvent::JoinRoom(j), 1)
            .ack
            .is_ok()
    );

    let j = match ev("join-room", json!({"roomId": "r"})) {
        ClientEvent::JoinRoom(j) => j,
        _ => unreachable!(),
    };
    assert_eq!(
        c.password_step(&peer("b"), &j),
        Ok(PasswordStep::Verify {
            hash: hash.clone(),
            password: None
        })
    );
    let o = c.handle(&peer("b"), ClientEvent::JoinRoom(j.clone()), 1);
    assert_eq!(code(&o), Some(ErrorCode::WrongPassword));
    assert!(o.deliveries.is_empty());

    let mut verified = j;
    verified.admission = Admission::Verified(hash);
    assert!(
        c.handle(&peer("b"), ClientEvent::JoinRoom(verified), 1)
            .ack
            .is_ok()
    );
}

#[test]
fn the_password_step_refuses_an_invalid_user_id_before_any_hash() {
    let c = core(6, 4);
    let j = match ev(
        "join-room",
        json!({"roomId": "r", "password": "pw", "userId": ""}),
    ) {
        ClientEvent::JoinRoom(j) => j,
        _ => unreachable!(),
    };
    assert!(
        c.password_step(&peer("a"), &j)
            .is_err_and(|r| r.code == ErrorCode::BadRequest)
    );
}

#[test]
fn an_open_room_needs_no_password_step_even_when_one_is_given() {
    let mut c = core(6, 4);
    let _ = join(&mut c, &peer("a"), "r");
    let j = match ev("join-room", json!({"roomId": "r", "password": "pw"})) {
        ClientEvent::JoinRoom(j) => j,
        _ => unreachable!(),
    };
    assert_eq!(c.password_step(&peer("b"), &j), Ok(PasswordStep::None));
}

#[test]
fn leave_acks_the_room_and_tells_the_others_user_left() {
    let (mut c, a, b, _x) = three();
    let o = run(&mut c, &b, "leave-room", json!({"roomId": "r"}));
    assert_eq!(ack(&o), json!({"ok": true, "roomId": "r"}));
    assert_eq!(
        sent(&o),
        [(
            "a".to_string(),
            "user-left",
            json!({"roomId": "r", "peerId": "b"})
        )]
    );
    let again = run(&mut c, &b, "leave-room", json!({"roomId": "r"}));
    assert_eq!(code(&again), Some(ErrorCode::NotInRoom));
    assert!(c.in_any_room(&a.id));
    assert!(!c.in_any_room(&b.id));
}

#[test]
fn the_last_member_leaving_removes_a_room_that_rest_did_not_create() {
    let mut c = core(6, 4);
    let a = peer("a");
    let _ = join(&mut c, &a, "r");
    let _ = run(&mut c, &a, "leave-room", json!({"roomId": "r"}));
    assert!(c.get_room("r").is_none());
}

#[test]
fn a_rest_created_room_stays_when_empty_and_is_joined_not_recreated() {
    let mut c = core(6, 4);
    let info = c
        .create_room(
            "0b6f9d1e-7c55-4a43-9a57-2f8e7c1a0d11".into(),
            Some("n".into()),
            Some(1),
            None,
            5,
        )
        .expect("created");
    assert!(info.persistent);
    let a = peer("a");
    assert!(join(&mut c, &a, &info.id).ack.is_ok());
    assert_eq!(
        code(&join(&mut c, &peer("b"), &info.id)),
        Some(ErrorCode::RoomFull),
        "maxPeers 1"
    );
    let _ = c.handle_disconnect(&a);
    assert!(
        c.get_room(&info.id).is_some(),
        "persistent rooms outlive their members"
    );
}

#[test]
fn beyond_max_persistent_rooms_rest_creation_is_refused() {
    let mut c = Core::new(
        Rules {
            max_rooms_per_peer: 4,
        },
        Rooms::new(6, 4).with_max_persistent(1),
    );
    assert!(c.create_room("a".into(), None, None, None, 0).is_ok());
    assert!(c.create_room("b".into(), None, None, None, 0).is_err());
}

#[test]
fn disconnect_leaves_every_room_tells_each_room_and_removes_the_empty_ones() {
    let mut c = core(6, 4);
    let (a, b, x) = (peer("a"), peer("b"), peer("c"));
    let _ = join(&mut c, &a, "r1");
    let _ = join(&mut c, &a, "r2");
    let _ = join(&mut c, &a, "r3");
    let _ = join(&mut c, &b, "r1");
    let _ = join(&mut c, &x, "r2");
    let mut out = deliveries(&c.handle_disconnect(&a));
    out.sort_by(|l, r| l.0.cmp(&r.0));
    assert_eq!(
        out,
        [
            (
                "b".into(),
                "user-left",
                json!({"roomId": "r1", "peerId": "a"})
            ),
            (
                "c".into(),
                "user-left",
                json!({"roomId": "r2", "peerId": "a"})
            ),
        ]
    );
    assert!(!c.in_any_room("a"));
    assert!(c.get_room("r3").is_none(), "empty room removed");
    assert!(c.get_room("r1").is_some());
    assert_eq!(c.counts(), (2, 2));
}

#[test]
fn rest_deletion_tells_every_member_that_every_member_left() {
    let (mut c, _a, _b, _x) = three();
    let out = deliveries(&c.delete_room("r").expect("room exists"));
    let pairs: Vec<(&str, &str)> = out
        .iter()
        .map(|(to, _, body)| (to.as_str(), body["peerId"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(pairs, [("a", "a"), ("b", "a"), ("a", "b"), ("b", "b")]);
    assert!(out.iter().all(|(_, e, _)| *e == "user-left"));
    assert!(!c.in_any_room("a"));
    assert!(c.delete_room("r").is_none());
}

#[test]
fn offer_answer_and_candidate_are_relayed_to_the_target_only_with_from_added() {
    let (mut c, a, b, _x) = three();
    for (name, field, value) in [
        ("offer", "offer", json!({"type": "offer", "sdp": "v=0"})),
        ("answer", "answer", json!({"type": "answer", "sdp": "v=0"})),
        (
            "ice-candidate",
            "candidate",
            json!({"candidate": "candidate:1"}),
        ),
        ("ice-candidate", "candidate", Value::Null),
    ] {
        let o = run(
            &mut c,
            &a,
            name,
            json!({"targetId": "b", field: value.clone(), "roomId": "r", "extra": 1}),
        );
        assert_eq!(ack(&o), json!({"ok": true}), "{name}");
        assert_eq!(
            sent(&o),
            [(
                b.id.clone(),
                name,
                json!({"targetId": "b", field: value, "roomId": "r", "extra": 1, "from": "a"})
            )],
            "{name}"
        );
        assert_eq!(
            o.deliveries[0].origin,
            Some(Origin {
                sender: "a".into(),
                event: name,
                home: None,
            }),
            "a relayed event names its sender for delivery errors"
        );
    }
}

#[test]
fn a_client_cannot_choose_the_from_of_a_relayed_event() {
    let (mut c, a, _b, _x) = three();
    let o = run(
        &mut c,
        &a,
        "offer",
        json!({"targetId": "b", "offer": {}, "from": "someone-else"}),
    );
    assert_eq!(sent(&o)[0].2["from"], "a");
}

#[test]
fn signal_is_relayed_as_from_and_data() {
    let (mut c, a, _b, _x) = three();
    let o = run(&mut c, &a, "signal", json!({"to": "b", "data": {"x": 1}}));
    assert_eq!(ack(&o), json!({"ok": true}));
    assert_eq!(
        sent(&o),
        [("b".into(), "signal", json!({"from": "a", "data": {"x": 1}}))]
    );
}

#[test]
fn a_sender_reaches_only_room_mates_and_knowing_an_id_gives_no_reach() {
    let (mut c, a, _b, x) = three();
    // c knows a's id but shares no room with it.
    for (name, body) in [
        ("offer", json!({"targetId": "a", "offer": {}})),
        ("answer", json!({"targetId": "a", "answer": {}})),
        ("ice-candidate", json!({"targetId": "a", "candidate": null})),
        ("signal", json!({"to": "a", "data": 1})),
    ] {
        let o = run(&mut c, &x, name, body);
        assert_eq!(code(&o), Some(ErrorCode::UnknownPeer), "{name}");
        assert!(o.deliveries.is_empty(), "{name}");
    }
    // Nor does a peer reach itself or an id that does not exist.
    assert_eq!(
        code(&run(&mut c, &a, "signal", json!({"to": "a", "data": 1}))),
        Some(ErrorCode::UnknownPeer)
    );
    assert_eq!(
        code(&run(
            &mut c,
            &a,
            "signal",
            json!({"to": "nobody", "data": 1})
        )),
        Some(ErrorCode::UnknownPeer)
    );
}

#[test]
fn a_room_id_the_sender_is_not_in_is_not_in_room_and_a_shared_room_must_be_that_room() {
    let (mut c, a, _b, x) = three();
    let o = run(
        &mut c,
        &a,
        "offer",
        json!({"targetId": "b", "offer": {}, "roomId": "other"}),
    );
    assert_eq!(code(&o), Some(ErrorCode::NotInRoom));
    // a and c are both in "other" now, but b is not: reach is per given room.
    let _ = join(&mut c, &a, "other");
    let o = run(
        &mut c,
        &a,
        "offer",
        json!({"targetId": "b", "offer": {}, "roomId": "other"}),
    );
    assert_eq!(code(&o), Some(ErrorCode::UnknownPeer));
    let o = run(
        &mut c,
        &a,
        "offer",
        json!({"targetId": "c", "offer": {}, "roomId": "other"}),
    );
    assert!(o.ack.is_ok());
    assert_eq!(o.deliveries[0].to, x.id);
}

#[test]
fn message_goes_to_every_other_member_and_acks_how_many() {
    let (mut c, a, b, x) = three();
    let _ = join(&mut c, &x, "r");
    let o = run(&mut c, &a, "message", json!({"roomId": "r", "data": "hi"}));
    assert_eq!(ack(&o), json!({"ok": true, "delivered": 2}));
    let body = json!({"from": "a", "roomId": "r", "data": "hi"});
    assert_eq!(
        sent(&o),
        [
            (b.id.clone(), "message", body.clone()),
            (x.id.clone(), "message", body)
        ]
    );
    assert!(o.deliveries.iter().all(|d| d.origin.is_none()));
    assert!(
        std::sync::Arc::ptr_eq(&o.deliveries[0].event, &o.deliveries[1].event),
        "one body shared by every target"
    );
}

#[test]
fn message_to_a_room_the_sender_is_not_in_is_not_in_room() {
    let (mut c, _a, _b, x) = three();
    let o = run(&mut c, &x, "message", json!({"roomId": "r", "data": 1}));
    assert_eq!(code(&o), Some(ErrorCode::NotInRoom));
    assert!(o.deliveries.is_empty());
}

#[test]
fn update_state_is_stored_and_others_get_peer_updated() {
    let (mut c, a, b, _x) = three();
    let o = run(
        &mut c,
        &b,
        "update-state",
        json!({"roomId": "r", "state": {"muted": true}}),
    );
    assert_eq!(ack(&o), json!({"ok": true}));
    assert_eq!(
        sent(&o),
        [(
            a.id.clone(),
            "peer-updated",
            json!({"peerId": "b", "roomId": "r", "state": {"muted": true}})
        )]
    );
    let stored = c
        .get_room("r")
        .and_then(|r| r.peers.into_iter().find(|p| p.peer_id == "b"))
        .map(|p| p.state);
    assert_eq!(stored, Some(json!({"muted": true})));
    let o = run(
        &mut c,
        &b,
        "update-state",
        json!({"roomId": "other", "state": {}}),
    );
    assert_eq!(code(&o), Some(ErrorCode::NotInRoom));
}

#[test]
fn relayed_events_and_room_messages_are_counted_presence_is_not() {
    let (mut c, a, _b, x) = three();
    let relay = run(&mut c, &a, "signal", json!({"to": "b", "data": 1}));
    let msg = run(&mut c, &a, "message", json!({"roomId": "r", "data": 1}));
    let state = run(
        &mut c,
        &a,
        "update-state",
        json!({"roomId": "r", "state": {}}),
    );
    for o in [&relay, &msg, &state] {
        assert!(o.deliveries.iter().all(|d| d.event.is_relayed()));
    }
    let presence = join(&mut c, &x, "r");
    assert!(presence.deliveries.iter().all(|d| !d.event.is_relayed()));
}

#[test]
fn payloads_must_be_objects_with_the_required_fields_of_the_right_types() {
    let cases = [
        ("join-room", json!("r"), "object"),
        ("join-room", json!({}), "roomId"),
        ("join-room", json!({"roomId": 5}), "roomId"),
        ("join-room", json!({"roomId": ""}), "roomId"),
        ("join-room", json!({"roomId": "a b"}), "roomId"),
        ("join-room", json!({"roomId": "x".repeat(65)}), "roomId"),
        (
            "join-room",
            json!({"roomId": "r", "displayName": 1}),
            "displayName",
        ),
        (
            "join-room",
            json!({"roomId": "r", "displayName": "n".repeat(129)}),
            "displayName",
        ),
        ("join-room", json!({"roomId": "r", "userId": 1}), "userId"),
        (
            "join-room",
            json!({"roomId": "r", "password": []}),
            "password",
        ),
        ("leave-room", json!({}), "roomId"),
        ("offer", json!({"offer": {}}), "targetId"),
        ("offer", json!({"targetId": "", "offer": {}}), "targetId"),
        ("offer", json!({"targetId": "b"}), "offer"),
        ("offer", json!({"targetId": "b", "offer": null}), "offer"),
        ("answer", json!({"targetId": "b", "answer": null}), "answer"),
        (
            "offer",
            json!({"targetId": "b", "offer": {}, "roomId": 3}),
            "roomId",
        ),
        ("ice-candidate", json!({"targetId": "b"}), "candidate"),
        ("signal", json!({"data": 1}), "to"),
        ("signal", json!({"to": "b"}), "data"),
        ("message", json!({"roomId": "r"}), "data"),
        ("update-state", json!({"roomId": "r"}), "state"),
        (
            "update-state",
            json!({"roomId": "r", "state": null}),
            "state",
        ),
        (
            "update-state",
            json!({"roomId": "r", "state": [1]}),
            "state",
        ),
    ];
    for (name, body, field) in cases {
        let r = decode_err(name, body.clone());
        assert_eq!(r.code, ErrorCode::BadRequest, "{name} {body}");
        assert!(r.message.contains(field), "{name} {body}: {}", r.message);
        assert!(r.message.len() <= 160);
    }
}

#[test]
fn refusals_never_quote_the_payload() {
    let secret = "s3cr3t-value-that-must-not-be-echoed";
    for (name, body) in [
        ("join-room", json!({"roomId": secret.repeat(3)})),
        (
            "join-room",
            json!({"roomId": "r", "displayName": secret.repeat(10)}),
        ),
        ("offer", json!({"targetId": {"x": secret}, "offer": {}})),
        ("update-state", json!({"roomId": "r", "state": secret})),
    ] {
        let r = decode_err(name, body);
        assert!(!r.message.contains(secret), "{}", r.message);
    }
}

#[test]
fn null_optional_fields_are_absent_and_null_data_is_data() {
    assert!(matches!(
        ev(
            "join-room",
            json!({"roomId": "r", "userId": null, "displayName": null, "password": null})
        ),
        ClientEvent::JoinRoom(_)
    ));
    assert!(matches!(
        ev("signal", json!({"to": "b", "data": null})),
        ClientEvent::Signal(_)
    ));
    assert!(matches!(
        ev("message", json!({"roomId": "r", "data": null})),
        ClientEvent::Message(_)
    ));
}

#[test]
fn every_error_code_a_client_can_get_from_the_core_has_its_spec_name() {
    let rules = Rules {
        max_rooms_per_peer: 1,
    };
    use crate::rooms::JoinError;
    for (e, name) in [
        (StepError::NotInRoom, "not-in-room"),
        (StepError::UnknownPeer, "unknown-peer"),
        (StepError::Unavailable, "unavailable"),
        (StepError::Join(JoinError::RoomFull), "room-full"),
        (StepError::Join(JoinError::WrongPassword), "wrong-password"),
        (StepError::Join(JoinError::TooManyRooms), "bad-request"),
        (StepError::Join(JoinError::InvalidRoomId), "bad-request"),
    ] {
        assert_eq!(rules.refusal(e).code.as_str(), name);
    }
}

#[test]
fn an_unreachable_shared_state_answers_unavailable_and_delivers_nothing() {
    // What a Redis executor does when its step fails: the same `finish`.
    let rules = Rules {
        max_rooms_per_peer: 4,
    };
    let a = peer("a");
    let plan = rules
        .plan(&a, ev("message", json!({"roomId": "r", "data": 1})), 0)
        .expect("plan");
    let o = rules.finish(&a, plan.then, Err(StepError::Unavailable));
    assert_eq!(code(&o), Some(ErrorCode::Unavailable));
    assert!(o.deliveries.is_empty());
}

#[test]
fn events_from_one_sender_to_one_target_are_delivered_in_the_order_handled() {
    let (mut c, a, _b, _x) = three();
    let order: Vec<u64> = (0..2_000)
        .flat_map(|i| run(&mut c, &a, "signal", json!({"to": "b", "data": i})).deliveries)
        .filter_map(|d| serde_json::to_value(&*d.event).ok()?["data"].as_u64())
        .collect();
    assert_eq!(order, (0..2_000).collect::<Vec<u64>>());
}
