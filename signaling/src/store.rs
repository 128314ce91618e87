//! The one interface between the handlers and room state, and its in-memory implementation.
//!
//! Handlers only ever talk to `dyn RoomStore`, so the Redis-held state of the multi-instance
//! mode (SPEC section 4) can come as a second implementation without touching them. Every
//! method is one atomic step (a join checks capacity and inserts under the same lock).

use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;

use crate::rooms::PasswordHash;
use crate::rooms::{
    JoinError, JoinRequest, Joined, Left, NotInRoom, Peer, RoomInfo, RoomLock, Rooms, TooManyRooms,
};

/// Room state, shared by every connection of the service.
#[async_trait]
pub trait RoomStore: Send + Sync + 'static {
    /// Whether `room_id` exists and asks for a password (checked before [`RoomStore::join`],
    /// because the check is slow).
    async fn lock_of(&self, room_id: &str) -> RoomLock;
    async fn join(&self, req: JoinRequest) -> Result<Joined, JoinError>;
    async fn leave(&self, room_id: &str, peer_id: &str) -> Result<Left, NotInRoom>;
    async fn leave_all(&self, peer_id: &str) -> Vec<Left>;
    async fn members(&self, room_id: &str) -> Option<Vec<Peer>>;
    /// Other members of `room_id` when `peer_id` is a member.
    async fn others_in(&self, room_id: &str, peer_id: &str) -> Result<Vec<String>, NotInRoom>;
    async fn share_room(&self, a: &str, b: &str, room_id: Option<&str>) -> bool;
    /// Whether `peer_id` is in at least one room (it is then owed credential refreshes).
    async fn in_any_room(&self, peer_id: &str) -> bool;
    async fn set_state(
        &self,
        room_id: &str,
        peer_id: &str,
        state: Value,
    ) -> Result<Vec<String>, NotInRoom>;
    async fn create_room(
        &self,
        id: String,
        name: Option<String>,
        max_peers: Option<usize>,
        password: Option<PasswordHash>,
        now_ms: u64,
    ) -> Result<RoomInfo, TooManyRooms>;
    /// Removes persistent rooms empty for `idle_ms` (see [`Rooms::expire_idle`]).
    async fn expire_idle(&self, now_ms: u64, idle_ms: u64) -> Vec<String>;
    async fn get_room(&self, room_id: &str) -> Option<RoomInfo>;
    async fn list_rooms(&self) -> Vec<RoomInfo>;
    /// Removes a room; the ids of its former members.
    async fn delete_room(&self, room_id: &str) -> Option<Vec<String>>;
    /// (rooms, peers in rooms).
    async fn counts(&self) -> (usize, usize);
}

/// Single-instance state: [`Rooms`] behind a mutex (held only for the synchronous step).
#[derive(Debug)]
pub struct MemoryStore(Mutex<Rooms>);

impl MemoryStore {
    #[must_use]
    pub fn new(default_max_peers: usize, max_rooms_per_peer: usize) -> Self {
        Self::from_rooms(Rooms::new(default_max_peers, max_rooms_per_peer))
    }

    #[must_use]
    pub fn from_rooms(rooms: Rooms) -> Self {
        Self(Mutex::new(rooms))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Rooms) -> R) -> R {
        // A panic while holding the lock leaves consistent data (every step is one call).
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

#[async_trait]
impl RoomStore for MemoryStore {
    async fn lock_of(&self, room_id: &str) -> RoomLock {
        self.with(|r| r.lock_of(room_id))
    }
    async fn join(&self, req: JoinRequest) -> Result<Joined, JoinError> {
        self.with(|r| r.join(req))
    }
    async fn leave(&self, room_id: &str, peer_id: &str) -> Result<Left, NotInRoom> {
        self.with(|r| r.leave(room_id, peer_id))
    }
    async fn leave_all(&self, peer_id: &str) -> Vec<Left> {
        self.with(|r| r.leave_all(peer_id))
    }
    async fn members(&self, room_id: &str) -> Option<Vec<Peer>> {
        self.with(|r| r.members(room_id))
    }
    async fn others_in(&self, room_id: &str, peer_id: &str) -> Result<Vec<String>, NotInRoom> {
        self.with(|r| r.others_in(room_id, peer_id))
    }
    async fn share_room(&self, a: &str, b: &str, room_id: Option<&str>) -> bool {
        self.with(|r| r.share_room(a, b, room_id))
    }
    async fn in_any_room(&self, peer_id: &str) -> bool {
        self.with(|r| r.in_any_room(peer_id))
    }
    async fn set_state(
        &self,
        room_id: &str,
        peer_id: &str,
        state: Value,
    ) -> Result<Vec<String>, NotInRoom> {
        self.with(|r| r.set_state(room_id, peer_id, state))
    }
    async fn create_room(
        &self,
        id: String,
        name: Option<String>,
        max_peers: Option<usize>,
        password: Option<PasswordHash>,
        now_ms: u64,
    ) -> Result<RoomInfo, TooManyRooms> {
        self.with(|r| r.create(id, name, max_peers, password, now_ms))
    }
    async fn expire_idle(&self, now_ms: u64, idle_ms: u64) -> Vec<String> {
        self.with(|r| r.expire_idle(now_ms, idle_ms))
    }
    async fn get_room(&self, room_id: &str) -> Option<RoomInfo> {
        self.with(|r| r.get(room_id))
    }
    async fn list_rooms(&self) -> Vec<RoomInfo> {
        self.with(|r| r.list())
    }
    async fn delete_room(&self, room_id: &str) -> Option<Vec<String>> {
        self.with(|r| r.delete(room_id))
    }
    async fn counts(&self) -> (usize, usize) {
        self.with(|r| r.counts())
    }
}
