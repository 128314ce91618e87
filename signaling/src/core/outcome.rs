//! What the core decides: the ack for the sender, and the server → client events to deliver
//! (who gets which event, in order).

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use super::event::{Answer, IceCandidate, Offer, RoomId};
use crate::ice::IceServer;
use crate::protocol::Refusal;
use crate::rooms::Peer;

/// The result of one client event.
#[derive(Debug, Clone)]
#[must_use]
pub struct Outcome {
    /// The answer to the sender: an ack body, or a refusal (sent as the ack, or as an
    /// `error` event when the client asked for no ack).
    pub ack: Result<AckBody, Refusal>,
    /// Events for other sockets (and the sender's own `room-users`), in the order they
    /// must be queued, all before the ack.
    pub deliveries: Vec<Delivery>,
}

impl Outcome {
    pub fn refused(r: Refusal) -> Self {
        Self {
            ack: Err(r),
            deliveries: Vec::new(),
        }
    }
}

/// One server → client event for one peer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The target's peer id.
    pub to: String,
    /// The event body, shared by every target of one fan-out (encoded once per target
    /// socket by the writer; never cloned per target).
    pub event: Arc<ServerEvent>,
    /// Set on relayed `offer`/`answer`/`ice-candidate`/`signal`: if it cannot be queued,
    /// that refusal becomes the sender's answer; if it is queued but the target never reads
    /// it, the sender gets an `error` event. Presence events have none (best effort).
    pub origin: Option<Origin>,
    /// Multi-instance mode: the instance the target is connected to (`None`: this one).
    pub home: Option<Arc<str>>,
}

/// Who to tell when a relayed event cannot be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub sender: String,
    pub event: &'static str,
    /// Multi-instance mode: the sender's instance when it is another one.
    pub home: Option<Arc<str>>,
}

/// A relayed `offer`/`answer`/`ice-candidate`: the client's payload with `from` added.
#[derive(Debug, Clone, Serialize)]
pub struct Relayed<T> {
    #[serde(flatten)]
    pub payload: T,
    pub from: String,
}

/// The bodies of the server → client events (SPEC section 4).
#[derive(Debug, Clone, Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum ServerEvent {
    RoomUsers {
        room_id: RoomId,
        users: Vec<Peer>,
    },
    UserJoined {
        room_id: RoomId,
        peer: Peer,
        /// Always `false`: the member already present is impolite towards the joiner.
        polite: bool,
    },
    UserLeft {
        room_id: RoomId,
        peer_id: String,
    },
    PeerUpdated {
        peer_id: String,
        room_id: RoomId,
        state: Map<String, Value>,
    },
    Message {
        from: String,
        room_id: RoomId,
        data: Value,
    },
    Signal {
        from: String,
        data: Value,
    },
    Offer(Relayed<Offer>),
    Answer(Relayed<Answer>),
    IceCandidate(Relayed<IceCandidate>),
}

impl ServerEvent {
    /// The Socket.IO event name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::RoomUsers { .. } => "room-users",
            Self::UserJoined { .. } => "user-joined",
            Self::UserLeft { .. } => "user-left",
            Self::PeerUpdated { .. } => "peer-updated",
            Self::Message { .. } => "message",
            Self::Signal { .. } => "signal",
            Self::Offer(_) => "offer",
            Self::Answer(_) => "answer",
            Self::IceCandidate(_) => "ice-candidate",
        }
    }

    /// Whether the `events_relayed` metric counts it: every event one peer sends to others
    /// (relayed signaling, `message`, `peer-updated`), not presence. It is counted at one
    /// point only: when the writer hands it to the target's socket.
    #[must_use]
    pub fn is_relayed(&self) -> bool {
        Self::name_is_relayed(self.name())
    }

    /// [`ServerEvent::is_relayed`] by event name (events from other instances).
    #[must_use]
    pub fn name_is_relayed(name: &str) -> bool {
        !matches!(name, "room-users" | "user-joined" | "user-left")
    }
}

/// The body of a successful ack, `{ok: true, ...}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged, rename_all_fields = "camelCase")]
pub enum AckBody {
    /// `join-room`: `{ok, roomId, self, peers, polite, iceServers}`.
    Joined {
        room_id: RoomId,
        #[serde(rename = "self")]
        me: Peer,
        peers: Vec<Peer>,
        polite: bool,
        ice_servers: Vec<IceServer>,
    },
    /// `leave-room`: `{ok, roomId}`.
    Left { room_id: RoomId },
    /// `offer`/`answer`/`ice-candidate`/`signal`: `{ok}` once queued for the target.
    Relayed {},
    /// `message`: `{ok, delivered}` (the other members it was queued for).
    Message { delivered: usize },
    /// `update-state`: `{ok}`.
    StateUpdated {},
}

/// `{ok: true, ...body}` on the wire.
#[derive(Debug, Serialize)]
pub struct OkAck<'a> {
    ok: bool,
    #[serde(flatten)]
    body: &'a AckBody,
}

impl AckBody {
    /// The body with `ok: true`, as sent.
    #[must_use]
    pub fn wire(&self) -> OkAck<'_> {
        OkAck {
            ok: true,
            body: self,
        }
    }

    /// As a JSON value (tests and the REST-free callers).
    #[must_use]
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.wire()).unwrap_or(Value::Null)
    }
}
