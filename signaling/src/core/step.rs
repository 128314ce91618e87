//! The seam between the rules and room state: each client event needs exactly one atomic
//! [`Step`] on the state, and gets back a [`StepOutput`] or a [`StepError`].
//!
//! [`apply`] runs a step on the in-memory [`Rooms`] (synchronous, infallible but for the
//! protocol's refusals). A Redis-backed executor (issue 15) runs the same steps as Lua
//! scripts, asynchronously, and answers [`StepError::Unavailable`] when Redis cannot be
//! reached; the rules on either side of the step ([`super::Rules::plan`] and
//! [`super::Rules::finish`]) are shared.

use serde_json::Value;

use super::event::RoomId;
use crate::rooms::{JoinError, JoinRequest, Joined, Left, Rooms};

/// One atomic operation on room state on behalf of one peer.
#[derive(Debug, Clone)]
pub enum Step {
    /// Capacity, password, per-peer room cap and insertion in one step.
    Join(JoinRequest),
    Leave {
        room_id: RoomId,
    },
    /// The sender reaches `target` only if they share a room (`room_id`, when given, and the
    /// sender must then be a member of it).
    Reach {
        target: String,
        room_id: Option<String>,
    },
    /// The other members of a room the sender is in.
    Others {
        room_id: RoomId,
    },
    /// Stores the sender's state in a room it is in; the other members.
    SetState {
        room_id: RoomId,
        state: Value,
    },
}

/// What a step returns.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutput {
    Joined(Joined),
    Left(Left),
    Reached,
    /// Peer ids of the other members, in join order.
    Others(Vec<String>),
}

/// Why a step was not performed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepError {
    Join(JoinError),
    NotInRoom,
    UnknownPeer,
    /// The shared state could not be reached (never from the in-memory state).
    Unavailable,
    /// The target's instance has too many events waiting (never from the in-memory state).
    Busy,
}

/// Runs `step` for `peer_id` on the in-memory state.
pub fn apply(rooms: &mut Rooms, peer_id: &str, step: Step) -> Result<StepOutput, StepError> {
    match step {
        Step::Join(req) => rooms
            .join(req)
            .map(StepOutput::Joined)
            .map_err(StepError::Join),
        Step::Leave { room_id } => rooms
            .leave(room_id.as_str(), peer_id)
            .map(StepOutput::Left)
            .map_err(|_| StepError::NotInRoom),
        Step::Reach { target, room_id } => {
            if let Some(room) = &room_id
                && rooms.others_in(room, peer_id).is_err()
            {
                return Err(StepError::NotInRoom);
            }
            if rooms.share_room(peer_id, &target, room_id.as_deref()) {
                Ok(StepOutput::Reached)
            } else {
                Err(StepError::UnknownPeer)
            }
        }
        Step::Others { room_id } => rooms
            .others_in(room_id.as_str(), peer_id)
            .map(StepOutput::Others)
            .map_err(|_| StepError::NotInRoom),
        Step::SetState { room_id, state } => rooms
            .set_state(room_id.as_str(), peer_id, state)
            .map(StepOutput::Others)
            .map_err(|_| StepError::NotInRoom),
    }
}
