//! The two services agree on credentials: what `GET /api/ice-servers` hands out is exactly
//! what the relay accepts (SPEC section 2), and a relay with another secret refuses it.

#[path = "common/signaling.rs"]
mod common;
mod relay_support;

use relay_support::{RawClient, relay_addr};
use switchboard_tests::{Ports, Service, test_config};

fn ice_servers(ports: &Ports) -> (String, String) {
    let url = format!("{}/api/ice-servers?username=carol", common::base(ports));
    let reply = common::http("GET", &url, &[], None);
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    let turn = &reply.body["iceServers"][1];
    let username = turn["username"].as_str().expect("username").to_string();
    let credential = turn["credential"].as_str().expect("credential").to_string();
    // Auth off: the server chooses the user id; `?username=` only prefixes it.
    assert!(username.contains(":carol-"), "{username}");
    (username, credential)
}

#[test]
fn a_credential_from_the_signaling_service_allocates_on_the_relay() {
    let ports = Ports::new();
    let config = test_config(&ports, "");
    let _relay = Service::start("switchboard-relay", &config);
    let _signaling = Service::start("switchboard-signaling", &config);
    let (username, password) = ice_servers(&ports);
    let mut client = RawClient::with(relay_addr(&ports), &username, &password);
    let relayed = client
        .allocate()
        .expect("the relay accepts the issued credential");
    assert!(relayed.ip().is_loopback(), "{relayed}");
}

#[test]
fn a_relay_with_a_different_secret_refuses_the_issued_credential_with_401() {
    let ports = Ports::new();
    let config = test_config(&ports, "");
    let other = config.replace(switchboard_tests::TEST_SECRET, "another-secret-0123456789");
    let _relay = Service::start("switchboard-relay", &other);
    let _signaling = Service::start("switchboard-signaling", &config);
    let (username, password) = ice_servers(&ports);
    let mut client = RawClient::with(relay_addr(&ports), &username, &password);
    assert_eq!(client.allocate(), Err(401));
}
