//! Client → server events as typed payloads (SPEC section 4 table), decoded with serde.
//!
//! Each event has its own `#[serde(rename_all = "camelCase")]` struct; the field types carry
//! the rules (a room id is valid, a target is a non-empty string, a state is an object), so a
//! decoded event is a checked one. Refusals name the field and never echo the payload.

use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ice::IceServer;
use crate::protocol::{EventName, Refusal};
use crate::rooms::{MAX_DISPLAY_NAME_LEN, PasswordHash, valid_room_id};

/// One decoded client event.
#[derive(Debug, Clone)]
pub enum ClientEvent {
    JoinRoom(JoinRoom),
    LeaveRoom(LeaveRoom),
    Offer(Offer),
    Answer(Answer),
    IceCandidate(IceCandidate),
    Signal(Signal),
    Message(Message),
    UpdateState(UpdateState),
}

impl ClientEvent {
    /// Decodes the payload of `name` (the checks that need no state): pure, the same for
    /// every connection, and what the fuzz target `signaling_event` drives.
    pub fn decode(name: EventName, body: Value) -> Result<Self, Refusal> {
        if !body.is_object() {
            return Err(Refusal::bad("payload must be an object"));
        }
        fn de<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, Refusal> {
            serde_json::from_value(body).map_err(|e| Refusal::bad(short_error(&e)))
        }
        Ok(match name {
            EventName::JoinRoom => Self::JoinRoom(de(body)?),
            EventName::LeaveRoom => Self::LeaveRoom(de(body)?),
            EventName::Offer => Self::Offer(de(body)?),
            EventName::Answer => Self::Answer(de(body)?),
            EventName::IceCandidate => Self::IceCandidate(de(body)?),
            EventName::Signal => Self::Signal(de(body)?),
            EventName::Message => Self::Message(de(body)?),
            EventName::UpdateState => Self::UpdateState(de(body)?),
        })
    }

    #[must_use]
    pub fn name(&self) -> EventName {
        match self {
            Self::JoinRoom(_) => EventName::JoinRoom,
            Self::LeaveRoom(_) => EventName::LeaveRoom,
            Self::Offer(_) => EventName::Offer,
            Self::Answer(_) => EventName::Answer,
            Self::IceCandidate(_) => EventName::IceCandidate,
            Self::Signal(_) => EventName::Signal,
            Self::Message(_) => EventName::Message,
            Self::UpdateState(_) => EventName::UpdateState,
        }
    }
}

/// serde's own messages can quote the input (`invalid type: string "..."`); ours never do,
/// and every message stays short.
fn short_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    if msg.starts_with('`') || msg.starts_with("missing field") {
        msg.chars().take(120).collect()
    } else {
        "payload has a field of the wrong type".to_string()
    }
}

/// A room id: 1–64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RoomId(String);

impl RoomId {
    /// `None` unless `id` is a valid room id.
    #[must_use]
    pub fn new(id: impl Into<String>) -> Option<Self> {
        let id = id.into();
        valid_room_id(&id).then_some(Self(id))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    #[must_use]
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RoomId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::String(s) if !s.is_empty() => RoomId::new(s).ok_or_else(|| {
                de::Error::custom("`roomId` must be 1-64 characters of A-Z, a-z, 0-9, _ and -")
            }),
            _ => Err(de::Error::custom("`roomId` must be a non-empty string")),
        }
    }
}

/// Field deserializers with messages that name the field (serde's generic ones may quote
/// the input).
macro_rules! non_empty_string {
    ($fn:ident, $field:literal) => {
        fn $fn<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
            match Value::deserialize(d)? {
                Value::String(s) if !s.is_empty() => Ok(s),
                _ => Err(de::Error::custom(concat!(
                    "`",
                    $field,
                    "` must be a non-empty string"
                ))),
            }
        }
    };
}

macro_rules! optional_string {
    ($fn:ident, $field:literal) => {
        fn $fn<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
            match Value::deserialize(d)? {
                Value::Null => Ok(None),
                Value::String(s) => Ok(Some(s)),
                _ => Err(de::Error::custom(concat!(
                    "`",
                    $field,
                    "` must be a string"
                ))),
            }
        }
    };
}

macro_rules! not_null {
    ($fn:ident, $field:literal) => {
        fn $fn<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
            match Value::deserialize(d)? {
                Value::Null => Err(de::Error::custom(concat!(
                    "`",
                    $field,
                    "` must not be null"
                ))),
                v => Ok(v),
            }
        }
    };
}

non_empty_string!(target_id, "targetId");
non_empty_string!(to, "to");
optional_string!(opt_user_id, "userId");
optional_string!(opt_password, "password");
optional_string!(opt_room_id, "roomId");
not_null!(offer, "offer");
not_null!(answer, "answer");

fn display_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) if s.chars().count() > MAX_DISPLAY_NAME_LEN => {
            Err(de::Error::custom("`displayName` is too long"))
        }
        Value::String(s) => Ok(Some(s)),
        _ => Err(de::Error::custom("`displayName` must be a string")),
    }
}

fn state_object<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    match Value::deserialize(d)? {
        Value::Object(m) => Ok(m),
        Value::Null => Err(de::Error::custom("`state` must not be null")),
        _ => Err(de::Error::custom("`state` must be an object")),
    }
}

/// Any JSON value, `null` included, but the field must be present.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
    Value::deserialize(d)
}

/// `join-room {roomId, userId?, displayName?, password?, metadata?}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRoom {
    pub room_id: RoomId,
    /// The client's ask only: the auth subject wins (see [`super::rules::resolve_user_id`]).
    #[serde(default, deserialize_with = "opt_user_id")]
    pub user_id: Option<String>,
    #[serde(default, deserialize_with = "display_name")]
    pub display_name: Option<String>,
    /// Checked (slowly) outside the core; see [`JoinRoom::admission`].
    #[serde(default, deserialize_with = "opt_password")]
    pub password: Option<String>,
    #[serde(default)]
    pub metadata: Value,
    /// Filled in by the caller after the password step, never by the client.
    #[serde(skip)]
    pub admission: Admission,
    /// The TURN servers and fresh credentials for the ack, minted by the caller (they need
    /// the secrets and the wall clock), never by the client.
    #[serde(skip)]
    pub ice_servers: Vec<IceServer>,
}

impl JoinRoom {
    /// The password, when one was given and is not empty.
    #[must_use]
    pub fn given_password(&self) -> Option<&str> {
        self.password.as_deref().filter(|p| !p.is_empty())
    }
}

/// The outcome of the password step done before a join (argon2 is slow: it runs outside the
/// core, on the blocking pool).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Admission {
    /// No password was checked (none needed, none given, or it was wrong).
    #[default]
    Unverified,
    /// The joiner's password matched this hash of the room's password.
    Verified(PasswordHash),
    /// The join creates the room with this password.
    NewPassword(PasswordHash),
}

/// `leave-room {roomId}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaveRoom {
    pub room_id: RoomId,
}

macro_rules! relayed_event {
    ($(#[$doc:meta])* $name:ident, $field:ident, $field_de:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Deserialize, Serialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            #[serde(deserialize_with = "target_id")]
            pub target_id: String,
            #[serde(default, deserialize_with = "opt_room_id", skip_serializing_if = "Option::is_none")]
            pub room_id: Option<String>,
            #[serde(deserialize_with = $field_de)]
            pub $field: Value,
            /// Every other field the client sent, relayed as is.
            #[serde(flatten)]
            pub extra: Map<String, Value>,
        }
    };
}

relayed_event!(
    /// `offer {targetId, offer, roomId?}`: relayed to the target with `from` added.
    Offer, offer, "offer"
);
relayed_event!(
    /// `answer {targetId, answer, roomId?}`: relayed to the target with `from` added.
    Answer, answer, "answer"
);
relayed_event!(
    /// `ice-candidate {targetId, candidate, roomId?}`: a null candidate is WebRTC's
    /// end-of-candidates marker, so it is relayed too.
    IceCandidate, candidate, "present"
);

/// `signal {to, data}` → `signal {from, data}` at `to`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Signal {
    #[serde(deserialize_with = "to")]
    pub to: String,
    #[serde(deserialize_with = "present")]
    pub data: Value,
}

/// `message {roomId, data}` → `message {from, roomId, data}` at every other member.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub room_id: RoomId,
    #[serde(deserialize_with = "present")]
    pub data: Value,
}

/// `update-state {roomId, state}`: `state` is an object, stored on the peer.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateState {
    pub room_id: RoomId,
    #[serde(deserialize_with = "state_object")]
    pub state: Map<String, Value>,
}
