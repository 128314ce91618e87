//! What each client event does (SPEC section 4 table). Handlers translate payloads, ask the
//! room store, and queue deliveries; they answer `Ok(ack body)` or a [`Refusal`].

use serde_json::{Map, Value, json};
use switchboard_config::credentials::valid_user_id;

use crate::hub::Hub;
use crate::protocol::{ClientEvent, ErrorCode, Fields, Refusal, ok_with};
use crate::rooms::{JoinError, JoinRequest, MAX_DISPLAY_NAME_LEN, Peer, RoomLock, valid_room_id};
use crate::socket::outbound::{Origin, Outbound};
use crate::socket::session::PeerCtx;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn room_id(f: &Fields) -> Result<String, Refusal> {
    let id = f.string("roomId")?;
    if valid_room_id(&id) {
        Ok(id)
    } else {
        Err(Refusal::bad(
            "`roomId` must be 1-64 characters of A-Z, a-z, 0-9, _ and -",
        ))
    }
}

/// An event's payload after the checks that need no state: what the handler acts on.
#[derive(Debug)]
pub enum Request {
    Join(Join),
    Leave {
        room: String,
    },
    /// `offer`/`answer`/`ice-candidate`: the whole payload is relayed, `from` added.
    Relay {
        target: String,
        room: Option<String>,
        body: Map<String, Value>,
    },
    Signal {
        to: String,
        data: Value,
    },
    Message {
        room: String,
        data: Value,
    },
    UpdateState {
        room: String,
        state: Value,
    },
}

/// The fields of `join-room`. `user_id` is only the client's ask: whether it is used
/// depends on the connection (see `join`).
#[derive(Debug)]
pub struct Join {
    pub room: String,
    pub display_name: Option<String>,
    pub user_id: Option<String>,
    pub metadata: Value,
    pub password: Option<String>,
}

/// Checks the payload of `event` (types, required fields, room id syntax, lengths): pure,
/// the same for every connection, and what the fuzz target `signaling_event` drives.
pub fn decode(event: ClientEvent, body: Value) -> Result<Request, Refusal> {
    let f = Fields::new(body)?;
    Ok(match event {
        ClientEvent::JoinRoom => {
            let room = room_id(&f)?;
            let display_name = f.opt_string("displayName")?;
            if display_name
                .as_ref()
                .is_some_and(|n| n.chars().count() > MAX_DISPLAY_NAME_LEN)
            {
                return Err(Refusal::bad("`displayName` is too long"));
            }
            Request::Join(Join {
                room,
                display_name,
                user_id: f.opt_string("userId")?,
                metadata: f.opt_any("metadata"),
                password: f.opt_string("password")?,
            })
        }
        ClientEvent::LeaveRoom => Request::Leave { room: room_id(&f)? },
        ClientEvent::Offer | ClientEvent::Answer | ClientEvent::IceCandidate => {
            let target = f.string("targetId")?;
            let field = event.relay_field().unwrap_or("data");
            // A null candidate is WebRTC's end-of-candidates marker.
            f.any(field, event == ClientEvent::IceCandidate)?;
            let room = f.opt_string("roomId")?;
            Request::Relay {
                target,
                room,
                body: f.into_map(),
            }
        }
        ClientEvent::Signal => Request::Signal {
            to: f.string("to")?,
            data: f.any("data", true)?,
        },
        ClientEvent::Message => Request::Message {
            room: room_id(&f)?,
            data: f.any("data", true)?,
        },
        ClientEvent::UpdateState => {
            let room = room_id(&f)?;
            let state = f.any("state", false)?;
            if !state.is_object() {
                return Err(Refusal::bad("`state` must be an object"));
            }
            Request::UpdateState { room, state }
        }
    })
}

/// Runs one event for `me`.
pub async fn handle(
    hub: &Hub,
    me: &PeerCtx,
    event: ClientEvent,
    body: Value,
) -> Result<Value, Refusal> {
    match decode(event, body)? {
        Request::Join(j) => join(hub, me, j).await,
        Request::Leave { room } => {
            let left = hub
                .store
                .leave(&room, &me.id)
                .await
                .map_err(|_| Refusal::new(ErrorCode::NotInRoom, "not in that room"))?;
            hub.notify_left(&left.remaining, &room, &me.id).await;
            tracing::debug!(peer = %me.id, room = %room, "Left room");
            Ok(json!({"ok": true, "roomId": room}))
        }
        Request::Relay {
            target,
            room,
            mut body,
        } => {
            check_reach(hub, me, &target, room.as_deref()).await?;
            body.insert("from".into(), Value::String(me.id.clone()));
            relay(hub, me, &target, event.name(), Value::Object(body)).await
        }
        Request::Signal { to, data } => {
            check_reach(hub, me, &to, None).await?;
            relay(hub, me, &to, "signal", json!({"from": me.id, "data": data})).await
        }
        Request::Message { room, data } => {
            let others = hub
                .store
                .others_in(&room, &me.id)
                .await
                .map_err(|_| Refusal::new(ErrorCode::NotInRoom, "not in that room"))?;
            let body = json!({"from": me.id, "roomId": room, "data": data});
            for peer in &others {
                hub.notify(peer, "message", body.clone()).await;
                hub.metrics.relayed("message");
            }
            Ok(json!({"ok": true, "delivered": others.len()}))
        }
        Request::UpdateState { room, state } => {
            let others = hub
                .store
                .set_state(&room, &me.id, state.clone())
                .await
                .map_err(|_| Refusal::new(ErrorCode::NotInRoom, "not in that room"))?;
            let body = json!({"peerId": me.id, "roomId": room, "state": state});
            for peer in &others {
                hub.notify(peer, "peer-updated", body.clone()).await;
                hub.metrics.relayed("peer-updated");
            }
            Ok(json!({"ok": true}))
        }
    }
}

/// The target must share a room with the sender (that room, when given).
async fn check_reach(
    hub: &Hub,
    me: &PeerCtx,
    target: &str,
    room: Option<&str>,
) -> Result<(), Refusal> {
    if let Some(room) = room
        && hub.store.others_in(room, &me.id).await.is_err()
    {
        return Err(Refusal::new(ErrorCode::NotInRoom, "not in that room"));
    }
    if hub.store.share_room(&me.id, target, room).await {
        Ok(())
    } else {
        Err(Refusal::new(
            ErrorCode::UnknownPeer,
            "no such peer in your rooms",
        ))
    }
}

/// Queues a relayed event for `target`, after every earlier event from this sender.
async fn relay(
    hub: &Hub,
    me: &PeerCtx,
    target: &str,
    event: &'static str,
    data: Value,
) -> Result<Value, Refusal> {
    let item = Outbound::Emit {
        event,
        data,
        origin: Some(Origin {
            sender: me.id.clone(),
            event,
        }),
    };
    hub.send_to(target, item).await?;
    Ok(json!({"ok": true}))
}

/// One slow hash from this source's budget, else `rate-limited`.
fn admit_hash(hub: &Hub, me: &PeerCtx) -> Result<(), Refusal> {
    if hub.passwords.admit_hash(me.ip) {
        Ok(())
    } else {
        Err(Refusal::new(
            ErrorCode::RateLimited,
            "too many room passwords from this address; try again later",
        ))
    }
}

async fn join(hub: &Hub, me: &PeerCtx, j: Join) -> Result<Value, Refusal> {
    let Join {
        room,
        display_name,
        user_id: asked_user,
        metadata,
        password,
    } = j;
    let user_id = match (&me.subject, asked_user) {
        // With auth on, the token decides who you are.
        (Some(sub), _) => sub.clone(),
        (None, Some(u)) if valid_user_id(&u) => u,
        (None, Some(_)) => {
            return Err(Refusal::bad(
                "`userId` must be 1-128 printable characters without `:` or spaces",
            ));
        }
        (None, None) => me.fallback_user.clone(),
    };
    let peer = Peer {
        peer_id: me.id.clone(),
        user_id: user_id.clone(),
        display_name,
        metadata,
        state: json!({}),
        joined_at: now_ms(),
    };
    let password = password.filter(|p| !p.is_empty());
    // The password check is slow (argon2): done here, off the room lock, and only while the
    // source has attempts left.
    let (verified, new_password) = match hub.store.lock_of(&room).await {
        RoomLock::Locked(hash) => {
            if !hub.passwords.may_try(&room, me.ip) {
                return Err(Refusal::new(
                    ErrorCode::RateLimited,
                    "too many wrong passwords; try again later",
                ));
            }
            let ok = match password {
                Some(p) => {
                    admit_hash(hub, me)?;
                    hub.passwords.verify(hash.clone(), p).await
                }
                None => false,
            };
            (ok.then_some(hash), None)
        }
        RoomLock::Absent => match password {
            Some(p) => {
                admit_hash(hub, me)?;
                let hash = hub
                    .passwords
                    .hash(p)
                    .await
                    .ok_or_else(|| Refusal::bad("the password could not be hashed"))?;
                (None, Some(hash))
            }
            None => (None, None),
        },
        RoomLock::Open => (None, None),
    };
    let joined = hub
        .store
        .join(JoinRequest {
            room_id: room.clone(),
            peer,
            verified,
            new_password,
        })
        .await
        .inspect_err(|&e| {
            if e == JoinError::WrongPassword {
                hub.passwords.handle_failure(&room, me.ip);
            }
        })
        .map_err(|e| match e {
            JoinError::InvalidRoomId => Refusal::bad(e.to_string()),
            JoinError::RoomFull => Refusal::new(ErrorCode::RoomFull, e.to_string()),
            JoinError::WrongPassword => Refusal::new(ErrorCode::WrongPassword, e.to_string()),
            JoinError::TooManyRooms => Refusal::bad(format!(
                "too many rooms for this connection (limit {})",
                hub.cfg.signaling.max_rooms_per_socket
            )),
        })?;
    if joined.is_new {
        tracing::debug!(peer = %me.id, room = %room, others = joined.others.len(), "Joined room");
        let notice = json!({"roomId": room, "peer": joined.me, "polite": false});
        for other in &joined.others {
            hub.notify(&other.peer_id, "user-joined", notice.clone())
                .await;
        }
    }
    let mut users = joined.others.clone();
    users.push(joined.me.clone());
    users.sort_by_key(|p| p.joined_at);
    hub.notify(
        &me.id,
        "room-users",
        json!({"roomId": room, "users": users}),
    )
    .await;
    // Not `user_id`: with auth off that is the client's word (SPEC section 2).
    let ice = hub.ice_servers(&me.turn_user);
    Ok(ok_with(json!({
        "roomId": room,
        "self": joined.me,
        "peers": joined.others,
        "polite": joined.polite,
        "iceServers": ice.ice_servers,
    })))
}
