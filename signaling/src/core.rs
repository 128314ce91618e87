//! The sans-IO signaling core (SPEC section 4): plain data in, decisions out. It never reads
//! a clock, touches a socket or awaits; callers pass the time and execute what it decides.
//!
//! ```text
//! Core::handle(peer, ClientEvent, now_ms) -> Outcome { ack, deliveries }
//! Core::handle_disconnect(peer)           -> Vec<Delivery>   (user-left to every room-mate)
//! Core::delete_room(id)                   -> Option<Vec<Delivery>>   (REST)
//! ```
//!
//! It owns rooms, membership, capacity and peer state ([`Rooms`]), and the rules: payload
//! validation ([`event`]), user ids, reach (a sender reaches only room-mates: `unknown-peer`;
//! a `roomId` it is not in: `not-in-room`), fan-out (`room-users` to the joiner,
//! `user-joined`/`user-left`/`peer-updated`/`message` to the others, relayed events with
//! `from`), the polite flag (the joiner is polite, members already present impolite) and the
//! error codes.
//!
//! # The seam for shared state
//!
//! Every event is three steps, and only the middle one touches state:
//!
//! 1. [`Rules::plan`] (pure): resolves the user id, builds the bodies, and names the one
//!    atomic [`Step`] the event needs (join with capacity, leave, reach check, members,
//!    set state).
//! 2. The step runs on the state: here [`step::apply`] on the in-memory [`Rooms`], behind
//!    `&mut self`, synchronous. A Redis executor (issue 15) runs the same [`Step`] as one
//!    Lua script, async, and maps a lost connection to [`StepError::Unavailable`].
//! 3. [`Rules::finish`] (pure): from the step's [`StepOutput`] (or [`StepError`]), the ack
//!    body or refusal and the deliveries.
//!
//! So the rules are shared by both executors and only step 2 differs; [`Core`] is the
//! in-memory executor. Room passwords are checked before the core (argon2 is slow and runs on
//! the blocking pool): [`Core::password_step`] says what the caller must check, and the
//! caller puts the result in [`JoinRoom::admission`]; the state then compares hashes in the
//! same atomic step as capacity.

pub mod event;
pub mod outcome;
pub mod rules;
pub mod step;

pub use event::{Admission, ClientEvent, JoinRoom, RoomId};
pub use outcome::{AckBody, Delivery, Origin, Outcome, ServerEvent};
pub use rules::{PeerInfo, Rules, UserId, resolve_user_id};
pub use step::{Step, StepError, StepOutput};

use crate::protocol::Refusal;
use crate::rooms::{PasswordHash, RoomInfo, RoomLock, Rooms, TooManyRooms};

/// What the caller must do about a room password before handing a join to the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordStep {
    /// Nothing: the room is open, or absent and created without a password.
    None,
    /// The room asks for a password: check the attempt limits, then `password` (if given)
    /// against `hash`; on a match pass [`Admission::Verified`].
    Verify {
        hash: PasswordHash,
        password: Option<String>,
    },
    /// The join creates the room with `password`: hash it, pass [`Admission::NewPassword`].
    Hash { password: String },
}

/// The in-memory signaling core: the rules plus the rooms of one instance.
#[derive(Debug)]
pub struct Core {
    rules: Rules,
    rooms: Rooms,
}

impl Core {
    #[must_use]
    pub fn new(rules: Rules, rooms: Rooms) -> Self {
        Self { rules, rooms }
    }

    #[must_use]
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Runs one client event from `peer` at `now_ms` (Unix milliseconds).
    pub fn handle(&mut self, peer: &PeerInfo, event: ClientEvent, now_ms: u64) -> Outcome {
        match self.rules.plan(peer, event, now_ms) {
            Err(r) => Outcome::refused(r),
            Ok(plan) => {
                let result = step::apply(&mut self.rooms, &peer.id, plan.step);
                self.rules.finish(peer, plan.then, result)
            }
        }
    }

    /// The peer disconnected: it leaves every room (empty non-persistent rooms go), and its
    /// room-mates get `user-left`.
    #[must_use]
    pub fn handle_disconnect(&mut self, peer: &PeerInfo) -> Vec<Delivery> {
        self.rooms
            .leave_all(&peer.id)
            .iter()
            .flat_map(|left| rules::user_left(&peer.id, left))
            .collect()
    }

    /// The password work a join needs before [`Core::handle`]. Refuses an invalid user id
    /// first, so that no slow hash is spent on a join that cannot succeed.
    pub fn password_step(&self, peer: &PeerInfo, join: &JoinRoom) -> Result<PasswordStep, Refusal> {
        rules::join_user_id(peer, join.user_id.as_deref())?;
        let password = join.given_password().map(str::to_string);
        Ok(
            match (self.rooms.lock_of(join.room_id.as_str()), password) {
                (RoomLock::Locked(hash), password) => PasswordStep::Verify { hash, password },
                (RoomLock::Absent, Some(password)) => PasswordStep::Hash { password },
                (RoomLock::Absent | RoomLock::Open, _) => PasswordStep::None,
            },
        )
    }

    /// Whether the peer is in at least one room (it is then owed credential refreshes).
    #[must_use]
    pub fn in_any_room(&self, peer_id: &str) -> bool {
        self.rooms.in_any_room(peer_id)
    }

    /// REST `POST /api/rooms`: a persistent room.
    pub fn create_room(
        &mut self,
        id: String,
        name: Option<String>,
        max_peers: Option<usize>,
        password: Option<PasswordHash>,
        now_ms: u64,
    ) -> Result<RoomInfo, TooManyRooms> {
        self.rooms.create(id, name, max_peers, password, now_ms)
    }

    /// REST `DELETE /api/rooms/{id}`: every member is removed and told `user-left` for
    /// every member (itself included, so it learns it is out). `None`: no such room.
    #[must_use]
    pub fn delete_room(&mut self, room_id: &str) -> Option<Vec<Delivery>> {
        let members = self.rooms.delete(room_id)?;
        Some(delete_deliveries(room_id, &members))
    }

    /// Removes persistent rooms empty for `idle_ms`; their ids.
    pub fn expire_idle(&mut self, now_ms: u64, idle_ms: u64) -> Vec<String> {
        self.rooms.expire_idle(now_ms, idle_ms)
    }

    #[must_use]
    pub fn get_room(&self, room_id: &str) -> Option<RoomInfo> {
        self.rooms.get(room_id)
    }

    #[must_use]
    pub fn list_rooms(&self) -> Vec<RoomInfo> {
        self.rooms.list()
    }

    /// (rooms, peers in rooms).
    #[must_use]
    pub fn counts(&self) -> (usize, usize) {
        self.rooms.counts()
    }
}

/// A deleted room's `user-left` for every member, to every member (itself included, so it
/// learns it is out).
#[must_use]
pub fn delete_deliveries(room_id: &str, members: &[String]) -> Vec<Delivery> {
    let mut out = Vec::with_capacity(members.len() * members.len());
    for gone in members {
        out.extend(rules::user_left(
            gone,
            &crate::rooms::Left {
                room_id: room_id.to_string(),
                remaining: members.to_vec(),
                room_removed: true,
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests;
