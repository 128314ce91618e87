//! Harness of the fuzz target `signaling_event` (in `fuzz/`), a plain function over bytes
//! so that the target is a one-liner and `tests/fuzz_corpus.rs` replays the checked-in
//! corpus and every regression through the same code on stable. Panics when an invariant
//! fails. Not part of the server's API.

use serde_json::Value;

use crate::core::rules::{Plan, Then};
use crate::core::{ClientEvent, PeerInfo, Rules};
use crate::protocol::{ErrorCode, EventName, Refusal, short};
use crate::rooms::{MAX_DISPLAY_NAME_LEN, valid_room_id};

/// `signaling.max_payload_bytes` by default.
pub const MAX_PAYLOAD: usize = 65_536;

/// What the server decides about one event before acting on it, in its order: the size
/// limit and JSON decoding (done as the packet arrives), the event name, then the typed
/// payload checks of [`ClientEvent::decode`].
pub fn decode(name: &str, payload: &[u8], max_payload: usize) -> Result<ClientEvent, Refusal> {
    let size = name.len() + payload.len();
    if size > max_payload {
        return Err(Refusal::new(
            ErrorCode::PayloadTooLarge,
            format!("event is {size} bytes; the limit is {max_payload}"),
        ));
    }
    // An event sent without data decodes as null.
    let body = if payload.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice::<Value>(payload)
            .map_err(|_| Refusal::bad("payload is not valid JSON data"))?
    };
    let Some(event) = EventName::parse(name) else {
        return Err(Refusal::bad(format!("unknown event `{}`", short(name))));
    };
    ClientEvent::decode(event, body)
}

/// One event: the input is the event name, a newline, then the JSON payload. Decoding
/// never panics; a refusal is `bad-request` or `payload-too-large` with a short message
/// that does not echo the payload; an accepted payload satisfies every field rule.
pub fn event(data: &[u8]) {
    let (name, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let name = String::from_utf8_lossy(name);
    match decode(&name, payload, MAX_PAYLOAD) {
        Err(r) => {
            assert!(
                matches!(r.code, ErrorCode::BadRequest | ErrorCode::PayloadTooLarge),
                "decoding refuses only as bad-request or payload-too-large: {r:?}"
            );
            assert!(
                r.message.chars().count() <= 160,
                "refusal messages stay short: {r:?}"
            );
            let ack = r.ack();
            assert_eq!(ack["ok"], Value::Bool(false));
            assert_eq!(ack["error"]["code"], r.code.as_str());
            assert_eq!(r.event(&short(&name))["code"], r.code.as_str());
        }
        Ok(event) => check(event),
    }
}

/// What the core relays serializes, carries the target and room that were checked, and
/// `from` set by the server (never the client's).
fn check_relayed(event: ClientEvent, target: &str, room: Option<&str>) {
    let rules = Rules {
        max_rooms_per_peer: 1,
    };
    let peer = PeerInfo {
        id: "peer".into(),
        subject: None,
        fallback_user: "anon".into(),
    };
    let Ok(Plan {
        then: Then::Relay { target: to, event },
        ..
    }) = rules.plan(&peer, event, 0)
    else {
        panic!("a decoded relayed event plans a relay");
    };
    assert_eq!(to, target);
    let relayed = serde_json::to_value(&*event).unwrap_or(Value::Null);
    assert_eq!(relayed["targetId"].as_str(), Some(target));
    assert_eq!(
        relayed["roomId"].as_str(),
        room,
        "the room checked is the room relayed"
    );
    assert_eq!(relayed["from"], "peer", "`from` is the server's");
}

fn check(event: ClientEvent) {
    match &event {
        ClientEvent::JoinRoom(j) => {
            assert!(valid_room_id(j.room_id.as_str()));
            assert!(
                j.display_name
                    .as_ref()
                    .is_none_or(|n| n.chars().count() <= MAX_DISPLAY_NAME_LEN)
            );
        }
        ClientEvent::LeaveRoom(l) => assert!(valid_room_id(l.room_id.as_str())),
        ClientEvent::Message(m) => assert!(valid_room_id(m.room_id.as_str())),
        ClientEvent::UpdateState(u) => assert!(valid_room_id(u.room_id.as_str())),
        ClientEvent::Offer(o) => {
            assert!(!o.offer.is_null());
            let (t, r) = (o.target_id.clone(), o.room_id.clone());
            check_relayed(event, &t, r.as_deref());
        }
        ClientEvent::Answer(a) => {
            assert!(!a.answer.is_null());
            let (t, r) = (a.target_id.clone(), a.room_id.clone());
            check_relayed(event, &t, r.as_deref());
        }
        ClientEvent::IceCandidate(c) => {
            let (t, r) = (c.target_id.clone(), c.room_id.clone());
            check_relayed(event, &t, r.as_deref());
        }
        ClientEvent::Signal(s) => assert!(!s.to.is_empty()),
    }
}
