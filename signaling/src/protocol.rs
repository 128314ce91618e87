//! Socket.IO protocol v1 (SPEC section 4): event names, error codes and refusals. The typed
//! payloads of each event are in [`crate::core::event`].

use serde_json::{Value, json};

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
    /// The shared state (Redis) could not be reached; the event was not performed.
    Unavailable,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::RoomFull,
        ErrorCode::WrongPassword,
        ErrorCode::NotInRoom,
        ErrorCode::UnknownPeer,
        ErrorCode::RateLimited,
        ErrorCode::PayloadTooLarge,
        ErrorCode::Unavailable,
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
            ErrorCode::Unavailable => "unavailable",
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

/// The names of the client → server events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    JoinRoom,
    LeaveRoom,
    Offer,
    Answer,
    IceCandidate,
    Signal,
    Message,
    UpdateState,
}

impl EventName {
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
}

/// The name of an event one instance sends another for a peer (multi-instance mode), as
/// the `&'static str` packets carry; `None` for a name the server never sends.
#[must_use]
pub fn static_event_name(name: &str) -> Option<&'static str> {
    [
        "room-users",
        "user-joined",
        "user-left",
        "peer-updated",
        "message",
        "signal",
        "offer",
        "answer",
        "ice-candidate",
        "error",
        "ice-servers",
        "join-room",
        "leave-room",
        "update-state",
    ]
    .into_iter()
    .find(|n| *n == name)
}

/// An event name as it may appear in a refusal or a log line: at most 64 characters.
#[must_use]
pub fn short(s: &str) -> String {
    s.chars().take(64).collect()
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
                "payload-too-large",
                "unavailable"
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
            assert_eq!(EventName::parse(name).map(EventName::name), Some(name));
        }
        assert_eq!(EventName::parse("hack"), None);
    }
}
