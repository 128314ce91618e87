//! TURN REST credentials against the real relay (SPEC section 2): what the signaling
//! service mints is accepted; expired, wrong-secret and tampered credentials get 401 with a
//! NONCE (never 400); secret rotation by SIGHUP.

mod relay_support;

use std::time::Duration;

use relay_support::{RawClient, Reply, credential, eventually, relay_addr, relay_config};
use stun::message::METHOD_ALLOCATE;
use switchboard_tests::{Ports, Service, TEST_SECRET};
use turn::proto::PROTO_UDP;
use turn::proto::reqtrans::RequestedTransport;

fn start(ports: &Ports) -> Service {
    Service::start(
        "switchboard-relay",
        &relay_config(ports, &["127.0.0.0/8"], &[], ""),
    )
}

/// RFC 8656 section 7.2 / RFC 8489 section 9.2.4: long-term credentials.
#[test]
fn a_credential_minted_by_the_signaling_code_allocates() {
    let ports = Ports::new();
    let _relay = start(&ports);
    let mut c = RawClient::new(relay_addr(&ports), &credential(TEST_SECRET, "alice"));
    let relayed = c.allocate().expect("allocation");
    assert_eq!(relayed.ip().to_string(), "127.0.0.1");
    assert_eq!(c.release(), 200);
}

/// RFC 8489 section 9.2.4: a request without MESSAGE-INTEGRITY gets 401 with NONCE and
/// REALM.
#[test]
fn a_request_without_credentials_gets_401_with_a_nonce() {
    let ports = Ports::new();
    let _relay = start(&ports);
    let mut c = RawClient::new(relay_addr(&ports), &credential(TEST_SECRET, "alice"));
    match c.unsigned(
        METHOD_ALLOCATE,
        vec![Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        })],
    ) {
        Reply::Err(401, Some(nonce)) => assert!(!nonce.is_empty()),
        other => panic!("expected 401 with a nonce, got {other:?}"),
    }
}

fn assert_401(reply: Result<std::net::SocketAddr, u16>, what: &str) {
    assert_eq!(
        reply,
        Err(401),
        "{what} must get 401 (SPEC section 2: never 400)"
    );
}

/// SPEC section 2: a bad or expired credential gets 401 with a fresh NONCE; never 400.
#[test]
fn expired_wrong_secret_and_tampered_credentials_get_401_not_400() {
    let ports = Ports::new();
    let _relay = start(&ports);
    let server = relay_addr(&ports);

    let expired = switchboard_config::credentials::mint(
        &secrecy::SecretString::from(TEST_SECRET.to_string()),
        "alice",
        Duration::from_secs(60),
        relay_support::now_unix() - 3600,
    );
    assert_401(
        RawClient::new(server, &expired).allocate(),
        "an expired credential",
    );

    let wrong = credential("some-other-secret-entirely", "alice");
    assert_401(
        RawClient::new(server, &wrong).allocate(),
        "a wrong-secret credential",
    );

    let good = credential(TEST_SECRET, "alice");
    let longer = good.username.replacen(':', "9:", 1);
    assert_401(
        RawClient::with(server, &longer, &good.password).allocate(),
        "a credential with a tampered expiry",
    );
    let other_user = good.username.replace("alice", "mallory");
    assert_401(
        RawClient::with(server, &other_user, &good.password).allocate(),
        "a credential with a tampered user",
    );
    assert_401(
        RawClient::with(server, "alice", &good.password).allocate(),
        "a username without an expiry",
    );
}

fn write_secrets(relay: &Service, ports: &Ports, secrets: &[&str]) {
    std::fs::write(
        relay.dir().join("switchboard.toml"),
        relay_config(ports, &["127.0.0.0/8"], secrets, ""),
    )
    .expect("rewrite config");
}

/// SPEC section 5: SIGHUP reloads the secrets; a listed old secret still verifies, a
/// removed one is refused, and existing allocations keep relaying.
#[test]
fn sighup_rotation_accepts_listed_old_secrets_and_refuses_removed_ones() {
    let ports = Ports::new();
    let old = "old-secret-0123456789abcdef";
    let new = "new-secret-0123456789abcdef";
    let mut relay = Service::start(
        "switchboard-relay",
        &relay_config(&ports, &["127.0.0.0/8"], &[old], ""),
    );
    let server = relay_addr(&ports);

    // An allocation made with the old secret, with a loopback peer to prove it relays.
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").expect("peer");
    peer.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let peer_addr = peer.local_addr().expect("addr");
    let mut kept = RawClient::new(server, &credential(old, "kept"));
    kept.allocate().expect("old-secret allocation");
    assert_eq!(kept.create_permission(&[peer_addr]), 200);

    // Rotation step 1: new secret first, old one still listed.
    write_secrets(&relay, &ports, &[new, old]);
    relay.signal("HUP");
    assert!(eventually(Duration::from_secs(10), || relay
        .logs()
        .matches("Configuration reloaded")
        .count()
        == 1));
    assert!(
        RawClient::new(server, &credential(new, "a"))
            .allocate()
            .is_ok()
    );
    assert!(
        RawClient::new(server, &credential(old, "b"))
            .allocate()
            .is_ok()
    );

    // Step 2: the old secret is removed.
    write_secrets(&relay, &ports, &[new]);
    relay.signal("HUP");
    assert!(eventually(Duration::from_secs(10), || relay
        .logs()
        .matches("Configuration reloaded")
        .count()
        == 2));
    assert_eq!(
        RawClient::new(server, &credential(old, "c")).allocate(),
        Err(401)
    );
    assert!(
        RawClient::new(server, &credential(new, "d"))
            .allocate()
            .is_ok()
    );

    // The allocation made before the rotation still relays.
    kept.send_indication(peer_addr, b"still here");
    let mut buf = [0u8; 64];
    let (n, _) = peer.recv_from(&mut buf).expect("relayed datagram");
    assert_eq!(&buf[..n], b"still here");

    relay.signal("TERM");
    let status = relay.wait_exit(Duration::from_secs(10)).expect("exit");
    assert!(status.success(), "{status}");
}

/// SPEC 3.2 `relay.strict_expiry`. A credential valid for 2 s makes an allocation; once its
/// expiry time has passed (a wall-clock condition, polled):
/// - `false` (the default): the allocation's own credential still refreshes it, adds a
///   permission and binds a channel, and the allocation relays: a call outlives
///   `credential_ttl`;
/// - `true`: the Refresh gets 401 (the allocation ends with its lifetime);
///
/// and in both modes a new Allocate with the expired credential gets 401, and another
/// user's valid credential still cannot touch the allocation (441).
fn past_expiry(strict: bool) {
    let ports = Ports::new();
    let extra = if strict { "strict_expiry = true" } else { "" };
    let _relay = Service::start(
        "switchboard-relay",
        &relay_config(&ports, &["127.0.0.0/8"], &[], extra),
    );
    let server = relay_addr(&ports);
    let issued = relay_support::now_unix();
    let short = switchboard_config::credentials::mint(
        &secrecy::SecretString::from(TEST_SECRET.to_string()),
        "alice",
        Duration::from_secs(2),
        issued,
    );
    let mut c = RawClient::new(server, &short);
    let relayed = c
        .allocate()
        .expect("allocates while the credential is valid");
    assert!(
        eventually(Duration::from_secs(15), || relay_support::now_unix()
            > issued + 2),
        "the credential's expiry time never passed"
    );
    let (peer, peer_addr) = relay_support::udp_peer("127.0.0.1");
    let refreshed = c.refresh(Duration::from_secs(600));
    if strict {
        assert_eq!(
            refreshed, 401,
            "strict_expiry: the expired credential is refused"
        );
    } else {
        assert_eq!(
            refreshed, 200,
            "the allocation's own credential refreshes it"
        );
        assert_eq!(c.create_permission(&[peer_addr]), 200);
        assert_eq!(c.channel_bind(0x4000, peer_addr), 200);
        relay_support::round_trip(&c, 0x4000, &peer, relayed, b"still talking");
        let mut mallory = c.sharing(&credential(TEST_SECRET, "mallory"));
        assert_eq!(
            mallory.refresh(Duration::from_secs(600)),
            441,
            "another user's credential on this allocation"
        );
    }
    assert_401(
        RawClient::new(server, &short).allocate(),
        "a new Allocate with the expired credential",
    );
}

#[test]
fn with_strict_expiry_off_an_allocation_outlives_its_credential() {
    past_expiry(false);
}

#[test]
fn with_strict_expiry_on_the_refresh_after_expiry_is_refused() {
    past_expiry(true);
}

/// SPEC 3.2: `GET /ready` on `metrics_listen` answers 200 once the relay accepts
/// allocations (READY=1 has been sent), beside `/health`. (503 while shutting down is covered
/// by the router's unit test: the window during a real shutdown is too short to observe.)
#[test]
fn ready_answers_200_on_the_metrics_listener_while_the_relay_serves() {
    let ports = Ports::new();
    let _relay = start(&ports);
    let mut res = ureq::get(&format!("http://127.0.0.1:{}/ready", ports.metrics))
        .call()
        .expect("GET /ready");
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.body_mut().read_to_string().expect("body"), "ready\n");
    let mut c = RawClient::new(relay_addr(&ports), &credential(TEST_SECRET, "alice"));
    c.allocate().expect("it does accept allocations");
}
