//! Socket.IO protocol v1 (SPEC section 4): event names, error codes and payload shapes.
//!
//! Payloads are parsed from `serde_json::Value` here, so that a wrong type or a missing field
//! becomes a `bad-request` answer naming the field instead of a silently dropped event.

use serde::Serialize;
use serde_json::{Map, Value, json};

/// The stable error codes clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    RoomFull,
    WrongPassword,
    NotInRoom,
    UnknownPeer,
    RateLimited,
    PayloadTooLarge,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::RoomFull,
        ErrorCode::WrongPassword,
        ErrorCode::NotInRoom,
        ErrorCode::UnknownPeer,
        ErrorCode::RateLimited,
        ErrorCode::PayloadTooLarge,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::RoomFull => "room-full",
            ErrorCode::WrongPassword => "wrong-password",
            ErrorCode::NotInRoom => "not-in-room",
            ErrorCode::UnknownPeer => "unknown-peer",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::PayloadTooLarge => "payload-too-large",
        }
    }
}

/// A refusal: a code plus a human message (never internal details).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    #[must_use]
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    #[must_use]
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// The ack body `{ok: false, error: {code, message}}`.
    #[must_use]
    pub fn ack(&self) -> Value {
        json!({"ok": false, "error": {"code": self.code.as_str(), "message": self.message}})
    }

    /// The `error` event body `{event, code, message}` (when the client sent no ack).
    #[must_use]
    pub fn event(&self, event: &str) -> Value {
        json!({"event": event, "code": self.code.as_str(), "message": self.message})
    }
}

/// Client → server events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    JoinRoom,
    LeaveRoom,
    Offer,
    Answer,
    IceCandidate,
    Signal,
    Message,
    UpdateState,
}

impl ClientEvent {
    #[must_use]
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "join-room" => Self::JoinRoom,
            "leave-room" => Self::LeaveRoom,
            "offer" => Self::Offer,
            "answer" => Self::Answer,
            "ice-candidate" => Self::IceCandidate,
            "signal" => Self::Signal,
            "message" => Self::Message,
            "update-state" => Self::UpdateState,
            _ => return None,
        })
    }

    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::JoinRoom => "join-room",
            Self::LeaveRoom => "leave-room",
            Self::Offer => "offer",
            Self::Answer => "answer",
            Self::IceCandidate => "ice-candidate",
            Self::Signal => "signal",
            Self::Message => "message",
            Self::UpdateState => "update-state",
        }
    }

    /// For `offer`/`answer`/`ice-candidate`: the field carrying the SDP or candidate.
    #[must_use]
    pub fn relay_field(self) -> Option<&'static str> {
        match self {
            Self::Offer => Some("offer"),
            Self::Answer => Some("answer"),
            Self::IceCandidate => Some("candidate"),
            _ => None,
        }
    }
}

/// The payload object of an event, with typed field access.
#[derive(Debug)]
pub struct Fields(Map<String, Value>);

impl Fields {
    /// The payload must be a JSON object.
    pub fn new(v: Value) -> Result<Self, Refusal> {
        match v {
            Value::Object(m) => Ok(Self(m)),
            _ => Err(Refusal::bad("payload must be an object")),
        }
    }

    /// A required non-empty string.
    pub fn string(&self, key: &str) -> Result<String, Refusal> {
        match self.0.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(_) => Err(Refusal::bad(format!("`{key}` must be a non-empty string"))),
            None => Err(Refusal::bad(format!("`{key}` is required"))),
        }
    }

    /// An optional string (absent or null → `None`).
    pub fn opt_string(&self, key: &str) -> Result<Option<String>, Refusal> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(Refusal::bad(format!("`{key}` must be a string"))),
        }
    }

    /// A required field of any JSON type except absent (`null` allowed when `null_ok`).
    pub fn any(&self, key: &str, null_ok: bool) -> Result<Value, Refusal> {
        match self.0.get(key) {
            None => Err(Refusal::bad(format!("`{key}` is required"))),
            Some(Value::Null) if !null_ok => Err(Refusal::bad(format!("`{key}` must not be null"))),
            Some(v) => Ok(v.clone()),
        }
    }

    /// An optional field of any type (absent → null).
    #[must_use]
    pub fn opt_any(&self, key: &str) -> Value {
        self.0.get(key).cloned().unwrap_or(Value::Null)
    }

    /// The whole object, for relaying with fields added.
    #[must_use]
    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

/// `{ok: true, ...extra}`.
#[must_use]
pub fn ok_with(extra: impl Serialize) -> Value {
    let mut v = serde_json::to_value(extra).unwrap_or(Value::Null);
    match &mut v {
        Value::Object(m) => {
            m.insert("ok".into(), Value::Bool(true));
            v
        }
        _ => json!({"ok": true}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_have_the_spec_names() {
        let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "bad-request",
                "unauthorized",
                "room-full",
                "wrong-password",
                "not-in-room",
                "unknown-peer",
                "rate-limited",
                "payload-too-large"
            ]
        );
    }

    #[test]
    fn refusals_render_as_ack_and_as_error_event() {
        let r = Refusal::new(ErrorCode::RoomFull, "room is full");
        assert_eq!(
            r.ack(),
            json!({"ok": false, "error": {"code": "room-full", "message": "room is full"}})
        );
        assert_eq!(
            r.event("join-room"),
            json!({"event": "join-room", "code": "room-full", "message": "room is full"})
        );
    }

    #[test]
    fn wrong_types_and_missing_fields_are_bad_requests_naming_the_field() {
        assert!(Fields::new(json!("x")).is_err());
        let f = Fields::new(json!({"roomId": 5, "to": "", "data": null})).expect("object");
        assert!(
            f.string("roomId")
                .is_err_and(|e| e.message.contains("roomId"))
        );
        assert!(f.string("to").is_err());
        assert!(
            f.string("missing")
                .is_err_and(|e| e.message.contains("required"))
        );
        assert!(f.any("data", false).is_err());
        assert!(f.any("data", true).is_ok());
        assert_eq!(f.opt_string("nope"), Ok(None));
        assert!(f.opt_string("roomId").is_err());
    }

    #[test]
    fn every_client_event_name_round_trips() {
        for name in [
            "join-room",
            "leave-room",
            "offer",
            "answer",
            "ice-candidate",
            "signal",
            "message",
            "update-state",
        ] {
            assert_eq!(ClientEvent::parse(name).map(ClientEvent::name), Some(name));
        }
        assert_eq!(ClientEvent::parse("hack"), None);
    }

    #[test]
    fn ok_with_adds_ok_true() {
        assert_eq!(ok_with(json!({"a": 1})), json!({"ok": true, "a": 1}));
        assert_eq!(ok_with(()), json!({"ok": true}));
    }
}
