//! Unit tests of the room logic: membership, capacity, passwords, polite flag, cleanup.

use serde_json::json;

use super::*;

fn peer(id: &str, at: u64) -> Peer {
    Peer {
        peer_id: id.into(),
        user_id: format!("user-{id}"),
        display_name: None,
        metadata: Value::Null,
        state: json!({}),
        joined_at: at,
    }
}

/// Joins the way the socket handler does: the password checked (or hashed) before the join.
fn join(rooms: &mut Rooms, room: &str, id: &str, pw: Option<&str>) -> Result<Joined, JoinError> {
    let (verified, new_password) = match rooms.lock_of(room) {
        RoomLock::Locked(h) => (pw.is_some_and(|p| h.matches(p)).then_some(h), None),
        RoomLock::Absent => (None, pw.and_then(|p| PasswordHash::new(p, [3; 16]))),
        RoomLock::Open => (None, None),
    };
    rooms.join(JoinRequest {
        room_id: room.into(),
        peer: peer(id, 1),
        verified,
        new_password,
    })
}

#[test]
fn room_ids_are_1_to_64_chars_of_alphanumerics_dash_and_underscore() {
    assert!(valid_room_id("a"));
    assert!(valid_room_id("Room_1-x"));
    assert!(valid_room_id(&"x".repeat(64)));
    assert!(valid_room_id("0b6f9d1e-7c55-4a43-9a57-2f8e7c1a0d11"));
    assert!(!valid_room_id(""));
    assert!(!valid_room_id(&"x".repeat(65)));
    assert!(!valid_room_id("a b"));
    assert!(!valid_room_id("a/b"));
    assert!(!valid_room_id("é"));
}

#[test]
fn first_joiner_is_impolite_and_later_joiners_are_polite_and_see_earlier_peers() {
    let mut r = Rooms::new(6, 4);
    let a = join(&mut r, "room", "a", None).expect("a joins");
    assert!(
        !a.polite,
        "alone in the room: impolite towards later joiners"
    );
    assert!(a.others.is_empty());
    let b = join(&mut r, "room", "b", None).expect("b joins");
    assert!(b.polite, "joiner is polite towards the peer already there");
    assert_eq!(
        b.others
            .iter()
            .map(|p| p.peer_id.as_str())
            .collect::<Vec<_>>(),
        ["a"]
    );
}

#[test]
fn joining_a_full_room_is_refused_and_exactly_capacity_peers_get_in() {
    let mut r = Rooms::new(2, 4);
    assert!(join(&mut r, "room", "a", None).is_ok());
    assert!(join(&mut r, "room", "b", None).is_ok());
    assert_eq!(join(&mut r, "room", "c", None), Err(JoinError::RoomFull));
    assert_eq!(r.members("room").map(|m| m.len()), Some(2));
}

#[test]
fn rejoining_a_room_is_a_no_op_that_takes_no_extra_seat() {
    let mut r = Rooms::new(2, 4);
    join(&mut r, "room", "a", None).expect("join");
    let again = join(&mut r, "room", "a", None).expect("rejoin");
    assert!(!again.is_new);
    assert!(join(&mut r, "room", "b", None).is_ok());
}

#[test]
fn the_first_joiner_sets_the_password_and_others_need_it() {
    let mut r = Rooms::new(6, 4);
    join(&mut r, "room", "a", Some("s3cret")).expect("create with password");
    assert_eq!(
        join(&mut r, "room", "b", None),
        Err(JoinError::WrongPassword)
    );
    assert_eq!(
        join(&mut r, "room", "b", Some("nope")),
        Err(JoinError::WrongPassword)
    );
    assert!(join(&mut r, "room", "b", Some("s3cret")).is_ok());
    assert!(r.get("room").is_some_and(|i| i.has_password));
}

#[test]
fn wrong_password_is_reported_before_room_full() {
    let mut r = Rooms::new(1, 4);
    join(&mut r, "room", "a", Some("pw")).expect("join");
    assert_eq!(
        join(&mut r, "room", "b", Some("x")),
        Err(JoinError::WrongPassword)
    );
    assert_eq!(
        join(&mut r, "room", "b", Some("pw")),
        Err(JoinError::RoomFull)
    );
}

#[test]
fn invalid_room_ids_are_refused() {
    let mut r = Rooms::new(6, 4);
    assert_eq!(
        join(&mut r, "bad id", "a", None),
        Err(JoinError::InvalidRoomId)
    );
}

#[test]
fn a_peer_cannot_be_in_more_rooms_than_the_cap() {
    let mut r = Rooms::new(6, 2);
    join(&mut r, "r1", "a", None).expect("r1");
    join(&mut r, "r2", "a", None).expect("r2");
    assert_eq!(join(&mut r, "r3", "a", None), Err(JoinError::TooManyRooms));
    r.leave("r1", "a").expect("leave");
    assert!(join(&mut r, "r3", "a", None).is_ok());
}

#[test]
fn empty_join_created_rooms_are_removed_but_rest_created_rooms_stay() {
    let mut r = Rooms::new(6, 4);
    r.create("kept".into(), Some("Standup".into()), None, None, 5)
        .expect("created");
    join(&mut r, "kept", "a", None).expect("join kept");
    join(&mut r, "temp", "a", None).expect("join temp");
    let left = r.leave_all("a");
    assert_eq!(left.len(), 2);
    assert!(
        r.get("temp").is_none(),
        "join-created room removed when empty"
    );
    assert!(r.get("kept").is_some(), "REST-created room kept");
    assert_eq!(r.counts(), (1, 0));
}

#[test]
fn leaving_reports_the_remaining_peers_and_leaving_twice_is_not_in_room() {
    let mut r = Rooms::new(6, 4);
    join(&mut r, "room", "a", None).expect("a");
    join(&mut r, "room", "b", None).expect("b");
    let left = r.leave("room", "a").expect("leave");
    assert_eq!(left.remaining, ["b"]);
    assert!(!left.room_removed);
    assert_eq!(r.leave("room", "a"), Err(NotInRoom));
    assert_eq!(r.leave("nowhere", "a"), Err(NotInRoom));
}

#[test]
fn a_peer_is_in_a_room_until_it_leaves_its_last_one_or_its_room_is_deleted() {
    let mut r = Rooms::new(6, 4);
    assert!(!r.in_any_room("a"));
    join(&mut r, "one", "a", None).expect("one");
    join(&mut r, "two", "a", None).expect("two");
    assert!(r.in_any_room("a"));
    r.leave("one", "a").expect("leave one");
    assert!(r.in_any_room("a"), "still in `two`");
    r.delete("two").expect("deleted");
    assert!(!r.in_any_room("a"), "its last room was deleted");
    join(&mut r, "three", "a", None).expect("three");
    r.leave_all("a");
    assert!(!r.in_any_room("a"));
}

#[test]
fn peers_share_a_room_only_when_both_are_members() {
    let mut r = Rooms::new(6, 4);
    join(&mut r, "one", "a", None).expect("a");
    join(&mut r, "one", "b", None).expect("b");
    join(&mut r, "two", "c", None).expect("c");
    assert!(r.share_room("a", "b", None));
    assert!(r.share_room("a", "b", Some("one")));
    assert!(!r.share_room("a", "b", Some("two")));
    assert!(!r.share_room("a", "c", None));
    assert!(!r.share_room("a", "a", None), "not with itself");
    assert!(!r.share_room("a", "ghost", None));
}

#[test]
fn state_updates_are_stored_and_name_the_other_members() {
    let mut r = Rooms::new(6, 4);
    join(&mut r, "room", "a", None).expect("a");
    join(&mut r, "room", "b", None).expect("b");
    let others = r
        .set_state("room", "a", json!({"muted": true}))
        .expect("set");
    assert_eq!(others, ["b"]);
    let members = r.members("room").unwrap_or_default();
    assert_eq!(members[0].state, json!({"muted": true}));
    assert_eq!(r.set_state("room", "ghost", json!({})), Err(NotInRoom));
}

#[test]
fn deleting_a_room_returns_its_members_and_frees_their_slots() {
    let mut r = Rooms::new(6, 1);
    r.create("x".into(), None, Some(2), None, 0)
        .expect("created");
    join(&mut r, "x", "a", None).expect("a");
    assert_eq!(r.delete("x"), Some(vec!["a".to_string()]));
    assert!(r.get("x").is_none());
    assert!(join(&mut r, "y", "a", None).is_ok(), "slot freed");
    assert_eq!(r.delete("x"), None);
}

#[test]
fn rest_created_capacity_is_clamped_to_the_configured_maximum() {
    let mut r = Rooms::new(4, 4);
    assert_eq!(
        r.create("a".into(), None, Some(100), None, 0)
            .expect("created")
            .max_peers,
        4
    );
    assert_eq!(
        r.create("b".into(), None, Some(0), None, 0)
            .expect("created")
            .max_peers,
        1
    );
    assert_eq!(
        r.create("c".into(), None, Some(2), None, 0)
            .expect("created")
            .max_peers,
        2
    );
}

#[test]
fn persistent_rooms_beyond_the_cap_are_refused_and_a_deleted_one_frees_its_place() {
    let mut r = Rooms::new(6, 4).with_max_persistent(2);
    r.create("a".into(), None, None, None, 0).expect("first");
    r.create("b".into(), None, None, None, 0).expect("second");
    assert_eq!(
        r.create("c".into(), None, None, None, 0),
        Err(TooManyRooms(2))
    );
    // Rooms made by joining are not persistent and do not count.
    join(&mut r, "free-form", "p1", None).expect("join");
    r.delete("a").expect("deleted");
    r.create("c".into(), None, None, None, 0)
        .expect("place freed");
}

#[test]
fn a_persistent_room_expires_only_after_being_empty_for_the_idle_time() {
    let mut r = Rooms::new(6, 4);
    r.create("idle".into(), None, None, None, 1_000)
        .expect("idle");
    r.create("used".into(), None, None, None, 1_000)
        .expect("used");
    join(&mut r, "used", "p1", None).expect("join");
    assert!(
        r.expire_idle(1_999, 1_000).is_empty(),
        "not idle long enough"
    );
    assert_eq!(r.expire_idle(2_000, 1_000), vec!["idle".to_string()]);
    assert!(r.get("idle").is_none());
    // The member leaves at about 3 s: the empty period starts at the first sweep after it.
    r.leave("used", "p1").expect("leave");
    assert!(r.expire_idle(3_000, 1_000).is_empty(), "just became empty");
    assert!(r.expire_idle(3_999, 1_000).is_empty());
    assert_eq!(r.expire_idle(4_000, 1_000), vec!["used".to_string()]);
    // The cap counts the expired rooms as gone.
    let mut r = r.with_max_persistent(1);
    r.create("again".into(), None, None, None, 5_000)
        .expect("place freed by expiry");
}
