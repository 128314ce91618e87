//! End-to-end tests of the signaling hardening of issue 12 (SPEC section 4), each driving the
//! real `switchboard-signaling` binary the way the attack does.

#[path = "common/signaling.rs"]
mod common;

use serde_json::{Value, json};
use switchboard_tests::Ports;

fn assert_ok(ack: &Value, what: &str) {
    assert_eq!(ack["ok"], json!(true), "{what}: {ack}");
}

/// A long-polling victim's peer id, which every room-mate learns, is not its Engine.IO sid:
/// POSTing packets with it, polling with it and upgrading with it are all refused, and the
/// bystander receives nothing forged.
#[test]
fn a_peer_id_gives_no_way_to_send_on_read_from_or_upgrade_the_peers_session() {
    let ports = Ports::new();
    let svc = common::start(&ports, "");
    let r = common::drive(&svc, &ports, "hijack", &json!({}));
    let peer_id = r["peerId"].as_str().expect("peer id");
    assert_ne!(Some(peer_id), r["victimEngineSid"].as_str(), "{r}");
    assert!(peer_id.len() >= 22, "128 random bits: {peer_id}");
    assert_eq!(r["postStatus"], json!(400), "forged POST refused: {r}");
    assert_eq!(
        r["getStatus"],
        json!(400),
        "poll with the peer id refused: {r}"
    );
    assert_ne!(r["upgrade"]["outcome"], json!("upgraded"), "{r}");
    assert_eq!(r["forgedMessages"], json!(0), "{r}");
    assert_eq!(r["forgedOffers"], json!(0), "{r}");
    assert_eq!(r["genuineMessages"], json!(1), "{r}");
    assert_eq!(r["victimConnected"], json!(true), "{r}");
    assert_ok(&r["victimStillWorks"], "the victim's session is untouched");
}
