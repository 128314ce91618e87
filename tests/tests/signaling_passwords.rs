//! End-to-end tests of room-password guessing: failed attempts are limited per (room, source
//! IP) and per source IP (`rate-limited`), and the right password from another source still
//! gets in. Sources are distinct 127.0.0.0/8 addresses (all on Linux loopback).

#[path = "common/signaling.rs"]
mod common;

use serde_json::{Value, json};
use switchboard_tests::Ports;

fn codes(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|c| c.as_str().unwrap_or_default())
        .collect()
}

#[test]
fn guessing_a_room_password_is_cut_off_per_room_and_per_ip_while_other_sources_still_get_in() {
    let ports = Ports::new();
    let svc = common::start(&ports, "max_rooms_per_socket = 8");
    let r = common::drive(&svc, &ports, "passwordGuessing", &json!({"guesses": 7}));
    assert_eq!(r["create"]["ok"], json!(true), "{r}");

    // One source, one room: 5 wrong passwords are answered as such, then it is cut off,
    // even for the right password (the guesser cannot tell a hit from the limit).
    assert_eq!(
        codes(&r["guesses"]),
        [
            "wrong-password",
            "wrong-password",
            "wrong-password",
            "wrong-password",
            "wrong-password",
            "rate-limited",
            "rate-limited"
        ],
        "{r}"
    );
    assert_eq!(r["rightFromGuesser"], "rate-limited", "{r}");
    assert_eq!(
        r["rightFromOtherIp"], "ok",
        "the owner's friends still get in: {r}"
    );

    // One source, many rooms: 20 wrong passwords in total cut it off everywhere.
    let spray = codes(&r["spray"]);
    assert_eq!(spray.len(), 20, "{r}");
    assert!(spray.iter().all(|c| *c == "wrong-password"), "{r}");
    assert_eq!(r["sixthRoomFromSprayer"], "rate-limited", "{r}");
    assert_eq!(r["sixthRoomFromOtherIp"], "ok", "{r}");
    assert!(
        !svc.logs().contains("right-one"),
        "passwords never reach the log"
    );
}

#[test]
fn one_address_can_make_only_a_bounded_number_of_slow_password_hashes_per_minute() {
    // argon2 is slow on purpose; creating password rooms must not be a way to burn the CPU.
    let ports = Ports::new();
    let svc = common::start(&ports, "");
    let r = common::drive(&svc, &ports, "hashBudget", &json!({"creations": 61}));
    let statuses: Vec<u64> = r["statuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect();
    assert_eq!(statuses.len(), 61, "{r}");
    assert!(statuses[..60].iter().all(|s| *s == 201), "{r}");
    assert_eq!(statuses[60], 429, "{r}");
    assert_eq!(r["joinFromSameIp"], "rate-limited", "{r}");
    assert_eq!(
        r["openJoinFromSameIp"], "ok",
        "rooms without a password are unaffected: {r}"
    );
    assert_eq!(r["joinFromOtherIp"], "ok", "{r}");
}
