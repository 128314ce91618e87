//! Harness of the fuzz target `signaling_event` (in `fuzz/`), a plain function over bytes
//! so that the target is a one-liner and `tests/fuzz_corpus.rs` replays the checked-in
//! corpus and every regression through the same code on stable. Panics when an invariant
//! fails. Not part of the server's API.

use serde_json::Value;

use crate::protocol::{ClientEvent, ErrorCode, Refusal};
use crate::rooms::{MAX_DISPLAY_NAME_LEN, valid_room_id};
use crate::socket::events::{self, Request};
use crate::socket::session::short;

/// `signaling.max_payload_bytes` by default.
pub const MAX_PAYLOAD: usize = 65_536;

/// What the server decides about one event before acting on it, in its order: the size
/// limit and JSON decoding (done as the packet arrives), the event name, then the payload
/// checks of [`events::decode`].
pub fn decode(name: &str, payload: &[u8], max_payload: usize) -> Result<Request, Refusal> {
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
    let Some(event) = ClientEvent::parse(name) else {
        return Err(Refusal::bad(format!("unknown event `{}`", short(name))));
    };
    events::decode(event, body)
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
        Ok(request) => check(&request),
    }
}

fn check(request: &Request) {
    match request {
        Request::Join(j) => {
            assert!(valid_room_id(&j.room));
            assert!(
                j.display_name
                    .as_ref()
                    .is_none_or(|n| n.chars().count() <= MAX_DISPLAY_NAME_LEN)
            );
        }
        Request::Leave { room } | Request::Message { room, .. } => {
            assert!(valid_room_id(room));
        }
        Request::UpdateState { room, state } => {
            assert!(valid_room_id(room));
            assert!(state.is_object(), "a state is an object");
        }
        Request::Relay { target, room, body } => {
            assert!(!target.is_empty());
            assert_eq!(
                body.get("targetId").and_then(Value::as_str),
                Some(&target[..])
            );
            assert_eq!(
                body.get("roomId").and_then(Value::as_str),
                room.as_deref(),
                "the room checked is the room relayed"
            );
            // What is relayed serializes back (with `from` added by the handler).
            let mut relayed = body.clone();
            relayed.insert("from".into(), Value::String("peer".into()));
            assert!(serde_json::to_vec(&relayed).is_ok());
        }
        Request::Signal { to, .. } => assert!(!to.is_empty()),
    }
}
