//! The protocol's rules as pure functions: user ids, what step an event needs, and, from the
//! step's result, the ack body and who gets which event. No state, no I/O, no clock.

use std::sync::Arc;

use serde_json::{Map, Value};
use switchboard_config::credentials::valid_user_id;

use super::event::{Admission, ClientEvent, JoinRoom, RoomId};
use super::outcome::{AckBody, Delivery, Origin, Outcome, Relayed, ServerEvent};
use super::step::{Step, StepError, StepOutput};
use crate::ice::IceServer;
use crate::protocol::{ErrorCode, Refusal};
use crate::rooms::{JoinError, JoinRequest, Left, Peer};

/// Who sent an event: what the connection established, never what the client says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer id: random, server-made, never the Engine.IO sid.
    pub id: String,
    /// The auth subject when auth is on.
    pub subject: Option<String>,
    /// The user id used when auth is off and the client gives none (one per connection).
    pub fallback_user: String,
}

/// Whose word a user id is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserId<'a> {
    /// The auth subject: with auth on, the token decides who you are.
    Subject(&'a str),
    /// Auth off: the client's valid `userId` (or `username`).
    Asked(&'a str),
    /// Auth off and the client gave none: the caller's fallback.
    Unspecified,
}

/// The one user-id rule (join-room and REST `/api/ice-servers`): the auth subject wins;
/// else the client's id if valid (1–128 printable characters without `:` or spaces); an
/// invalid one is a `bad-request` naming `field`.
pub fn resolve_user_id<'a>(
    subject: Option<&'a str>,
    asked: Option<&'a str>,
    field: &str,
) -> Result<UserId<'a>, Refusal> {
    match (subject, asked) {
        (Some(sub), _) => Ok(UserId::Subject(sub)),
        (None, Some(u)) if valid_user_id(u) => Ok(UserId::Asked(u)),
        (None, Some(_)) => Err(Refusal::bad(format!(
            "`{field}` must be 1-128 printable characters without `:` or spaces"
        ))),
        (None, None) => Ok(UserId::Unspecified),
    }
}

/// The user id a peer joins with.
pub fn join_user_id(peer: &PeerInfo, asked: Option<&str>) -> Result<String, Refusal> {
    Ok(
        match resolve_user_id(peer.subject.as_deref(), asked, "userId")? {
            UserId::Subject(s) | UserId::Asked(s) => s.to_string(),
            UserId::Unspecified => peer.fallback_user.clone(),
        },
    )
}

/// Limits the rules mention in refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    pub max_rooms_per_peer: usize,
}

/// An event turned into its state step, and what to do with the step's result.
#[derive(Debug, Clone)]
#[must_use]
pub struct Plan {
    pub step: Step,
    pub then: Then,
}

/// What [`Rules::finish`] needs besides the step's result.
#[derive(Debug, Clone)]
pub enum Then {
    Join {
        room_id: RoomId,
        ice_servers: Vec<IceServer>,
    },
    Leave {
        room_id: RoomId,
    },
    /// Deliver `event` to the target reached, answer `{ok}`.
    Relay {
        target: String,
        event: Arc<ServerEvent>,
    },
    /// `message`: to every other member, answer `{ok, delivered}`.
    Message {
        event: Arc<ServerEvent>,
    },
    /// `update-state`: `peer-updated` to every other member, answer `{ok}`.
    StateUpdated {
        event: Arc<ServerEvent>,
    },
}

fn not_in_room() -> Refusal {
    Refusal::new(ErrorCode::NotInRoom, "not in that room")
}

fn unknown_peer() -> Refusal {
    Refusal::new(ErrorCode::UnknownPeer, "no such peer in your rooms")
}

fn unavailable() -> Refusal {
    Refusal::new(
        ErrorCode::Unavailable,
        "the shared state could not be reached; try again",
    )
}

/// The relayed payload: the client's fields with `from` set by the server (a `from` the
/// client sent is dropped, never relayed).
fn relayed<T>(
    mut payload: T,
    extra: impl FnOnce(&mut T) -> &mut Map<String, Value>,
    from: &str,
) -> Relayed<T> {
    extra(&mut payload).remove("from");
    Relayed {
        payload,
        from: from.to_string(),
    }
}

impl Rules {
    /// The step `event` from `peer` needs, or a refusal that needs no state (user id).
    /// `now_ms` (Unix ms) stamps a join.
    pub fn plan(&self, peer: &PeerInfo, event: ClientEvent, now_ms: u64) -> Result<Plan, Refusal> {
        Ok(match event {
            ClientEvent::JoinRoom(j) => join_plan(peer, j, now_ms)?,
            ClientEvent::LeaveRoom(l) => Plan {
                step: Step::Leave {
                    room_id: l.room_id.clone(),
                },
                then: Then::Leave { room_id: l.room_id },
            },
            ClientEvent::Offer(o) => {
                let (target, room_id) = (o.target_id.clone(), o.room_id.clone());
                let event = ServerEvent::Offer(relayed(o, |o| &mut o.extra, &peer.id));
                relay_plan(target, room_id, event)
            }
            ClientEvent::Answer(a) => {
                let (target, room_id) = (a.target_id.clone(), a.room_id.clone());
                let event = ServerEvent::Answer(relayed(a, |a| &mut a.extra, &peer.id));
                relay_plan(target, room_id, event)
            }
            ClientEvent::IceCandidate(c) => {
                let (target, room_id) = (c.target_id.clone(), c.room_id.clone());
                let event = ServerEvent::IceCandidate(relayed(c, |c| &mut c.extra, &peer.id));
                relay_plan(target, room_id, event)
            }
            ClientEvent::Signal(s) => relay_plan(
                s.to,
                None,
                ServerEvent::Signal {
                    from: peer.id.clone(),
                    data: s.data,
                },
            ),
            ClientEvent::Message(m) => Plan {
                step: Step::Others {
                    room_id: m.room_id.clone(),
                },
                then: Then::Message {
                    event: Arc::new(ServerEvent::Message {
                        from: peer.id.clone(),
                        room_id: m.room_id,
                        data: m.data,
                    }),
                },
            },
            ClientEvent::UpdateState(u) => Plan {
                step: Step::SetState {
                    room_id: u.room_id.clone(),
                    state: Value::Object(u.state.clone()),
                },
                then: Then::StateUpdated {
                    event: Arc::new(ServerEvent::PeerUpdated {
                        peer_id: peer.id.clone(),
                        room_id: u.room_id,
                        state: u.state,
                    }),
                },
            },
        })
    }

    /// The ack and deliveries, from the step's result.
    pub fn finish(
        &self,
        peer: &PeerInfo,
        then: Then,
        result: Result<StepOutput, StepError>,
    ) -> Outcome {
        let out = match result {
            Ok(out) => out,
            Err(e) => return Outcome::refused(self.refusal(e)),
        };
        match (then, out) {
            (
                Then::Join {
                    room_id,
                    ice_servers,
                },
                StepOutput::Joined(joined),
            ) => {
                let mut deliveries = Vec::with_capacity(joined.others.len() + 1);
                if joined.is_new {
                    let notice = Arc::new(ServerEvent::UserJoined {
                        room_id: room_id.clone(),
                        peer: joined.me.clone(),
                        polite: false,
                    });
                    deliveries.extend(joined.others.iter().map(|o| Delivery {
                        to: o.peer_id.clone(),
                        event: notice.clone(),
                        origin: None,
                        home: None,
                    }));
                }
                let mut users = joined.others.clone();
                users.push(joined.me.clone());
                users.sort_by_key(|p| p.joined_at);
                deliveries.push(Delivery {
                    to: peer.id.clone(),
                    event: Arc::new(ServerEvent::RoomUsers {
                        room_id: room_id.clone(),
                        users,
                    }),
                    origin: None,
                    home: None,
                });
                Outcome {
                    ack: Ok(AckBody::Joined {
                        room_id,
                        me: joined.me,
                        peers: joined.others,
                        polite: joined.polite,
                        ice_servers,
                    }),
                    deliveries,
                }
            }
            (Then::Leave { room_id }, StepOutput::Left(left)) => Outcome {
                deliveries: user_left(&peer.id, &left),
                ack: Ok(AckBody::Left { room_id }),
            },
            (Then::Relay { target, event }, StepOutput::Reached) => Outcome {
                deliveries: vec![Delivery {
                    to: target,
                    origin: Some(Origin {
                        sender: peer.id.clone(),
                        event: event.name(),
                        home: None,
                    }),
                    home: None,
                    event,
                }],
                ack: Ok(AckBody::Relayed {}),
            },
            (Then::Message { event }, StepOutput::Others(others)) => Outcome {
                ack: Ok(AckBody::Message {
                    delivered: others.len(),
                }),
                deliveries: fan_out(others, &event),
            },
            (Then::StateUpdated { event }, StepOutput::Others(others)) => Outcome {
                ack: Ok(AckBody::StateUpdated {}),
                deliveries: fan_out(others, &event),
            },
            // A state that answers a step with another step's output is broken; refuse
            // rather than guess.
            (_, _) => Outcome::refused(unavailable()),
        }
    }

    /// The refusal a client sees for a step error.
    #[must_use]
    pub fn refusal(&self, e: StepError) -> Refusal {
        match e {
            StepError::NotInRoom => not_in_room(),
            StepError::UnknownPeer => unknown_peer(),
            StepError::Unavailable => unavailable(),
            StepError::Busy => Refusal::new(
                ErrorCode::RateLimited,
                "the target's signaling instance has too many events waiting; try again",
            ),
            StepError::Join(j) => match j {
                JoinError::InvalidRoomId => Refusal::bad(j.to_string()),
                JoinError::RoomFull => Refusal::new(ErrorCode::RoomFull, j.to_string()),
                JoinError::WrongPassword => Refusal::new(ErrorCode::WrongPassword, j.to_string()),
                JoinError::TooManyRooms => Refusal::bad(format!(
                    "too many rooms for this connection (limit {})",
                    self.max_rooms_per_peer
                )),
            },
        }
    }
}

fn join_plan(peer: &PeerInfo, j: JoinRoom, now_ms: u64) -> Result<Plan, Refusal> {
    let user_id = join_user_id(peer, j.user_id.as_deref())?;
    let (verified, new_password) = match j.admission {
        Admission::Unverified => (None, None),
        Admission::Verified(h) => (Some(h), None),
        Admission::NewPassword(h) => (None, Some(h)),
    };
    let req = JoinRequest {
        room_id: j.room_id.as_str().to_string(),
        peer: Peer {
            peer_id: peer.id.clone(),
            user_id,
            display_name: j.display_name,
            metadata: j.metadata,
            state: Value::Object(Map::new()),
            joined_at: now_ms,
        },
        verified,
        new_password,
    };
    Ok(Plan {
        step: Step::Join(req),
        then: Then::Join {
            room_id: j.room_id,
            ice_servers: j.ice_servers,
        },
    })
}

fn relay_plan(target: String, room_id: Option<String>, event: ServerEvent) -> Plan {
    Plan {
        step: Step::Reach {
            target: target.clone(),
            room_id,
        },
        then: Then::Relay {
            target,
            event: Arc::new(event),
        },
    }
}

fn fan_out(to: Vec<String>, event: &Arc<ServerEvent>) -> Vec<Delivery> {
    to.into_iter()
        .map(|to| Delivery {
            to,
            event: event.clone(),
            origin: None,
            home: None,
        })
        .collect()
}

/// `user-left {roomId, peerId: left}` to everyone still in the room.
#[must_use]
pub fn user_left(left_peer: &str, left: &Left) -> Vec<Delivery> {
    let Some(room_id) = RoomId::new(left.room_id.clone()) else {
        return Vec::new();
    };
    let event = Arc::new(ServerEvent::UserLeft {
        room_id,
        peer_id: left_peer.to_string(),
    });
    fan_out(left.remaining.clone(), &event)
}
