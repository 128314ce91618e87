//! Rooms, membership, capacity, passwords and the `polite` flag: the deciding logic of the
//! signaling protocol as plain data structures (no sockets, no tokio, no socketioxide).
//!
//! Time and randomness come in as arguments so that tests are deterministic.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value;

pub mod attempts;
mod password;

pub use password::PasswordHash;

/// Longest free-form room id (SPEC section 4).
pub const MAX_ROOM_ID_LEN: usize = 64;
/// Longest display name we store; longer ones are refused.
pub const MAX_DISPLAY_NAME_LEN: usize = 128;

/// A free-form room id: 1–64 characters of `[A-Za-z0-9_-]` (server-made UUIDs fit too).
#[must_use]
pub fn valid_room_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ROOM_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One peer in one room, as clients see it (`{peerId, userId, displayName, metadata, state, joinedAt}`).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Peer {
    pub peer_id: String,
    pub user_id: String,
    pub display_name: Option<String>,
    pub metadata: Value,
    pub state: Value,
    /// Unix milliseconds.
    pub joined_at: u64,
}

/// What REST shows of a room (never the password).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomInfo {
    pub id: String,
    pub name: Option<String>,
    pub max_peers: usize,
    pub has_password: bool,
    /// Created over REST: kept when empty, until deleted.
    pub persistent: bool,
    /// Unix milliseconds.
    pub created_at: u64,
    pub peers: Vec<Peer>,
}

#[derive(Debug, Clone)]
struct Room {
    name: Option<String>,
    max_peers: usize,
    password: Option<PasswordHash>,
    persistent: bool,
    created_at: u64,
    /// In join order.
    members: Vec<Peer>,
    /// Persistent rooms: since when (Unix ms) the room has been seen empty, for idle expiry.
    empty_since: Option<u64>,
}

impl Room {
    fn info(&self, id: &str) -> RoomInfo {
        RoomInfo {
            id: id.to_string(),
            name: self.name.clone(),
            max_peers: self.max_peers,
            has_password: self.password.is_some(),
            persistent: self.persistent,
            created_at: self.created_at,
            peers: self.members.clone(),
        }
    }

    fn position(&self, peer_id: &str) -> Option<usize> {
        self.members.iter().position(|p| p.peer_id == peer_id)
    }
}

/// A request to join a room.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub room_id: String,
    pub peer: Peer,
    /// The room's password hash that the joiner's password was checked against (slow, so
    /// done before, off the lock); `None` when not checked or wrong.
    pub verified: Option<PasswordHash>,
    /// The password of the room when this join creates it.
    pub new_password: Option<PasswordHash>,
}

/// Whether a room asks for a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomLock {
    /// No such room (a join would create it).
    Absent,
    Open,
    Locked(PasswordHash),
}

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("invalid room id: use 1-64 characters of A-Z, a-z, 0-9, _ and -")]
    InvalidRoomId,
    #[error("room is full")]
    RoomFull,
    #[error("wrong room password")]
    WrongPassword,
    #[error("too many rooms for this connection")]
    TooManyRooms,
}

/// A successful join.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    /// The joiner as stored.
    pub me: Peer,
    /// The other members, in join order.
    pub others: Vec<Peer>,
    /// Perfect negotiation: the joiner is polite towards the peers already present, and
    /// impolite (`false`) when it is alone (towards later joiners).
    pub polite: bool,
    /// `false` when the peer was already a member (the join was a no-op).
    pub is_new: bool,
}

/// The peer is not a member of that room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not in room")]
pub struct NotInRoom;

/// `POST /api/rooms` beyond `signaling.max_persistent_rooms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many persistent rooms (limit {0})")]
pub struct TooManyRooms(pub usize);

/// After a peer left a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Left {
    pub room_id: String,
    /// Peer ids still in the room (to be told `user-left`).
    pub remaining: Vec<String>,
    /// The room was removed because it became empty and was not REST-created.
    pub room_removed: bool,
}

/// All rooms of one signaling instance.
#[derive(Debug)]
pub struct Rooms {
    rooms: HashMap<String, Room>,
    /// peer id → ids of the rooms it is in.
    by_peer: HashMap<String, BTreeSet<String>>,
    default_max_peers: usize,
    max_rooms_per_peer: usize,
    /// Persistent (REST-created) rooms that exist, and their cap.
    persistent: usize,
    max_persistent: usize,
}

impl Rooms {
    #[must_use]
    pub fn new(default_max_peers: usize, max_rooms_per_peer: usize) -> Self {
        Self {
            rooms: HashMap::new(),
            by_peer: HashMap::new(),
            default_max_peers,
            max_rooms_per_peer,
            persistent: 0,
            max_persistent: usize::MAX,
        }
    }

    /// Caps the persistent (REST-created) rooms (`signaling.max_persistent_rooms`).
    #[must_use]
    pub fn with_max_persistent(mut self, max: usize) -> Self {
        self.max_persistent = max;
        self
    }

    /// Creates a persistent room (REST). `max_peers` is capped by the configured maximum;
    /// refused beyond `max_persistent` persistent rooms.
    pub fn create(
        &mut self,
        id: String,
        name: Option<String>,
        max_peers: Option<usize>,
        password: Option<PasswordHash>,
        now_ms: u64,
    ) -> Result<RoomInfo, TooManyRooms> {
        if self.persistent >= self.max_persistent {
            return Err(TooManyRooms(self.max_persistent));
        }
        let max_peers = max_peers
            .unwrap_or(self.default_max_peers)
            .clamp(1, self.default_max_peers);
        let room = Room {
            name,
            max_peers,
            password,
            persistent: true,
            created_at: now_ms,
            members: Vec::new(),
            empty_since: Some(now_ms),
        };
        let info = room.info(&id);
        if let Some(old) = self.rooms.insert(id, room)
            && old.persistent
        {
            self.persistent -= 1;
        }
        self.persistent += 1;
        Ok(info)
    }

    /// Removes the persistent rooms that have had no member for `idle_ms`, and returns their
    /// ids. A room's empty period starts when it is created or when a sweep first finds it
    /// empty, so a room goes between `idle_ms` and `idle_ms` + one sweep interval after its
    /// last member left.
    pub fn expire_idle(&mut self, now_ms: u64, idle_ms: u64) -> Vec<String> {
        let mut gone = Vec::new();
        for (id, room) in &mut self.rooms {
            if !room.persistent || !room.members.is_empty() {
                room.empty_since = None;
                continue;
            }
            match room.empty_since {
                None => room.empty_since = Some(now_ms),
                Some(t) if now_ms.saturating_sub(t) >= idle_ms => gone.push(id.clone()),
                Some(_) => {}
            }
        }
        for id in &gone {
            self.rooms.remove(id);
            self.persistent -= 1;
        }
        gone
    }

    /// Joins a room, creating it (not persistent) on first join. Capacity, password and the
    /// per-peer room cap are checked in the same step as the insertion, so two joiners racing
    /// for the last seat cannot both get in.
    pub fn join(&mut self, req: JoinRequest) -> Result<Joined, JoinError> {
        if !valid_room_id(&req.room_id) {
            return Err(JoinError::InvalidRoomId);
        }
        let peer_id = req.peer.peer_id.clone();
        let in_rooms = self.by_peer.get(&peer_id).map_or(0, BTreeSet::len);
        if let Some(room) = self.rooms.get(&req.room_id) {
            if let Some(i) = room.position(&peer_id) {
                return Ok(Joined {
                    me: room.members[i].clone(),
                    others: others(&room.members, &peer_id),
                    polite: i > 0,
                    is_new: false,
                });
            }
            if let Some(hash) = &room.password
                && req.verified.as_ref() != Some(hash)
            {
                return Err(JoinError::WrongPassword);
            }
            if room.members.len() >= room.max_peers {
                return Err(JoinError::RoomFull);
            }
        }
        if in_rooms >= self.max_rooms_per_peer {
            return Err(JoinError::TooManyRooms);
        }
        let default_max = self.default_max_peers;
        let room = self
            .rooms
            .entry(req.room_id.clone())
            .or_insert_with(|| Room {
                name: None,
                max_peers: default_max,
                password: req.new_password,
                persistent: false,
                created_at: req.peer.joined_at,
                members: Vec::new(),
                empty_since: None,
            });
        room.empty_since = None;
        let others = room.members.clone();
        room.members.push(req.peer.clone());
        self.by_peer.entry(peer_id).or_default().insert(req.room_id);
        Ok(Joined {
            me: req.peer,
            polite: !others.is_empty(),
            others,
            is_new: true,
        })
    }

    /// Whether `room_id` exists and asks for a password.
    #[must_use]
    pub fn lock_of(&self, room_id: &str) -> RoomLock {
        match self.rooms.get(room_id) {
            None => RoomLock::Absent,
            Some(Room { password: None, .. }) => RoomLock::Open,
            Some(Room {
                password: Some(h), ..
            }) => RoomLock::Locked(h.clone()),
        }
    }

    /// Leaves one room.
    pub fn leave(&mut self, room_id: &str, peer_id: &str) -> Result<Left, NotInRoom> {
        let room = self.rooms.get_mut(room_id).ok_or(NotInRoom)?;
        let i = room.position(peer_id).ok_or(NotInRoom)?;
        room.members.remove(i);
        let remaining = room.members.iter().map(|p| p.peer_id.clone()).collect();
        let room_removed = room.members.is_empty() && !room.persistent;
        if room_removed {
            self.rooms.remove(room_id);
        }
        if let Some(set) = self.by_peer.get_mut(peer_id) {
            set.remove(room_id);
            if set.is_empty() {
                self.by_peer.remove(peer_id);
            }
        }
        Ok(Left {
            room_id: room_id.to_string(),
            remaining,
            room_removed,
        })
    }

    /// Leaves every room (disconnect).
    pub fn leave_all(&mut self, peer_id: &str) -> Vec<Left> {
        let ids: Vec<String> = self
            .by_peer
            .get(peer_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        ids.iter()
            .filter_map(|id| self.leave(id, peer_id).ok())
            .collect()
    }

    /// Members of a room in join order, `None` when there is no such room.
    #[must_use]
    pub fn members(&self, room_id: &str) -> Option<Vec<Peer>> {
        self.rooms.get(room_id).map(|r| r.members.clone())
    }

    /// Stores a peer's state (mute, camera, ...) and returns the other members' ids.
    pub fn set_state(
        &mut self,
        room_id: &str,
        peer_id: &str,
        state: Value,
    ) -> Result<Vec<String>, NotInRoom> {
        let room = self.rooms.get_mut(room_id).ok_or(NotInRoom)?;
        let i = room.position(peer_id).ok_or(NotInRoom)?;
        room.members[i].state = state;
        Ok(room
            .members
            .iter()
            .filter(|p| p.peer_id != peer_id)
            .map(|p| p.peer_id.clone())
            .collect())
    }

    /// Other members of `room_id`, when `peer_id` is one of its members.
    pub fn others_in(&self, room_id: &str, peer_id: &str) -> Result<Vec<String>, NotInRoom> {
        let room = self.rooms.get(room_id).ok_or(NotInRoom)?;
        room.position(peer_id).ok_or(NotInRoom)?;
        Ok(room
            .members
            .iter()
            .filter(|p| p.peer_id != peer_id)
            .map(|p| p.peer_id.clone())
            .collect())
    }

    /// Whether `a` and `b` share a room (`room_id` given: that room).
    #[must_use]
    pub fn share_room(&self, a: &str, b: &str, room_id: Option<&str>) -> bool {
        if a == b {
            return false;
        }
        let (Some(ra), Some(rb)) = (self.by_peer.get(a), self.by_peer.get(b)) else {
            return false;
        };
        match room_id {
            Some(id) => ra.contains(id) && rb.contains(id),
            None => ra.intersection(rb).next().is_some(),
        }
    }

    #[must_use]
    pub fn get(&self, room_id: &str) -> Option<RoomInfo> {
        self.rooms.get(room_id).map(|r| r.info(room_id))
    }

    /// Every room, sorted by id.
    #[must_use]
    pub fn list(&self) -> Vec<RoomInfo> {
        let mut out: Vec<RoomInfo> = self.rooms.iter().map(|(id, r)| r.info(id)).collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Deletes a room; returns the ids of the peers that were in it.
    pub fn delete(&mut self, room_id: &str) -> Option<Vec<String>> {
        let room = self.rooms.remove(room_id)?;
        if room.persistent {
            self.persistent -= 1;
        }
        let ids: Vec<String> = room.members.into_iter().map(|p| p.peer_id).collect();
        for id in &ids {
            if let Some(set) = self.by_peer.get_mut(id) {
                set.remove(room_id);
                if set.is_empty() {
                    self.by_peer.remove(id);
                }
            }
        }
        Some(ids)
    }

    /// Whether `peer_id` is in at least one room.
    #[must_use]
    pub fn in_any_room(&self, peer_id: &str) -> bool {
        self.by_peer.contains_key(peer_id)
    }

    /// (rooms, peers in rooms) for gauges.
    #[must_use]
    pub fn counts(&self) -> (usize, usize) {
        (self.rooms.len(), self.by_peer.len())
    }
}

fn others(members: &[Peer], peer_id: &str) -> Vec<Peer> {
    members
        .iter()
        .filter(|p| p.peer_id != peer_id)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
