//! A flood of unauthenticated (and forged-credential) requests must not grow memory (SPEC section 3): nonces are
//! stateless, the per-source limiter's table is capped, and the `turn` crate (whose nonce
//! table grows on every 401 it sends) never sees them. A legitimate client still
//! allocates afterwards.

mod relay_support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use relay_support::{
    REALM, RawClient, credential, relay_addr, relay_config, rss_kib, sample, scrape,
};
use stun::agent::TransactionId;
use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::integrity::MessageIntegrity;
use stun::message::{CLASS_REQUEST, METHOD_ALLOCATE, Message, MessageType, Setter};
use stun::textattrs::TextAttribute;
use switchboard_tests::{Ports, Service, TEST_SECRET};
use turn::proto::PROTO_UDP;
use turn::proto::reqtrans::RequestedTransport;

/// Total requests sent.
const FLOOD: usize = 100_000;
/// Distinct source addresses: 100 loopback IPs x 4 ports.
const SOURCE_IPS: u8 = 100;
const PORTS_PER_IP: usize = 4;
/// The stated bound on RSS growth.
const MAX_GROWTH_KIB: u64 = 16 * 1024;

/// An Allocate without credentials, or (`forged`) with made-up ones: USERNAME, REALM, a
/// NONCE we never issued and a MESSAGE-INTEGRITY from a guessed password.
fn allocate_request(forged: bool) -> Vec<u8> {
    let mut m = Message::new();
    let mut setters: Vec<Box<dyn Setter>> = vec![
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
        Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        }),
    ];
    if forged {
        let user = "4102444800:mallory".to_string();
        setters.push(Box::new(TextAttribute::new(ATTR_USERNAME, user.clone())));
        setters.push(Box::new(TextAttribute::new(ATTR_REALM, REALM.into())));
        setters.push(Box::new(TextAttribute::new(ATTR_NONCE, "0".repeat(40))));
        setters.push(Box::new(MessageIntegrity::new_long_term_integrity(
            user,
            REALM.into(),
            "guess".into(),
        )));
    }
    m.build(&setters).expect("build");
    m.raw
}

#[test]
fn a_flood_of_unauthenticated_allocates_keeps_rss_bounded_and_service_up() {
    flood("", true);
}

/// Without the per-source limit every request is answered with 401 and a stateless nonce:
/// memory stays bounded by design, not only thanks to the limiter.
#[test]
fn with_the_limiter_disabled_every_request_gets_401_and_rss_stays_bounded() {
    flood("unauth_requests_per_second = 1000000", false);
}

fn flood(extra: &str, limited: bool) {
    let ports = Ports::new();
    let relay = Service::start(
        "switchboard-relay",
        &relay_config(&ports, &["127.0.0.0/8"], &[], extra),
    );
    let server: SocketAddr = relay_addr(&ports);
    // Warm up: one full allocation so every lazy structure exists before the baseline.
    let mut warm = RawClient::new(server, &credential(TEST_SECRET, "warm"));
    warm.allocate().expect("warm-up allocation");
    let before = rss_kib(relay.pid());

    let mut sockets = Vec::new();
    for ip in 1..=SOURCE_IPS {
        for _ in 0..PORTS_PER_IP {
            sockets.push(
                UdpSocket::bind(("127.0.1.".to_owned() + &ip.to_string(), 0)).expect("bind source"),
            );
        }
    }
    // Requests carry fresh transaction ids; the relay answers some and drops the rest.
    let templates: Vec<Vec<u8>> = (0..64).map(|i| allocate_request(i % 4 == 0)).collect();
    for i in 0..FLOOD {
        let mut pkt = templates[i % templates.len()].clone();
        pkt[8..12].copy_from_slice(&(i as u32).to_be_bytes());
        let _ = sockets[i % sockets.len()].send_to(&pkt, server);
    }
    drop(sockets);

    // The relay has processed the flood once its counters stop moving; then measure.
    let counted = |m: &str| {
        sample(
            m,
            "switchboard_relay_auth_failures_total{reason=\"missing\"}",
        ) + sample(
            m,
            "switchboard_relay_auth_failures_total{reason=\"bad_nonce\"}",
        ) + sample(m, "switchboard_relay_rate_limited_total")
    };
    let mut last = -1.0;
    for _ in 0..100 {
        let now = counted(&scrape(&ports));
        if (now - last).abs() < f64::EPSILON {
            break;
        }
        last = now;
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = rss_kib(relay.pid());
    let metrics = scrape(&ports);
    let seen = counted(&metrics);
    eprintln!(
        "flood: {FLOOD} sent, {seen} processed by the relay ({} rate-limited); RSS {before} KiB -> {after} KiB",
        sample(&metrics, "switchboard_relay_rate_limited_total")
    );
    assert!(
        seen > (FLOOD / 10) as f64,
        "the flood reached the relay: {seen}"
    );
    assert_eq!(
        sample(&metrics, "switchboard_relay_rate_limited_total") > 0.0,
        limited,
        "{metrics}"
    );
    assert!(
        after <= before + MAX_GROWTH_KIB,
        "RSS grew from {before} KiB to {after} KiB (bound {MAX_GROWTH_KIB} KiB)"
    );

    // A legitimate client (same loopback network) still allocates.
    let mut c = RawClient::new(server, &credential(TEST_SECRET, "legit"));
    c.allocate().expect("allocation after the flood");
}

/// Users behind one NAT share a source address. With the default limit, 150 of them
/// allocating back to back (300 requests before their allocations exist) are all served on
/// the first try: nothing is dropped, so nobody waits for a retransmission.
#[test]
fn many_users_behind_one_address_allocate_at_once_without_being_rate_limited() {
    let ports = Ports::new();
    let _relay = Service::start("switchboard-relay", &relay_config(&ports, &[], &[], ""));
    let server = relay_addr(&ports);
    let mut clients: Vec<RawClient> = (0..150)
        .map(|i| RawClient::new(server, &credential(TEST_SECRET, &format!("user{i}"))))
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        assert!(c.allocate().is_ok(), "allocation {i}");
    }
    let metrics = scrape(&ports);
    assert_eq!(
        sample(&metrics, "switchboard_relay_rate_limited_total"),
        0.0,
        "requests from the shared address were dropped"
    );
    assert_eq!(
        sample(&metrics, "switchboard_relay_allocations"),
        150.0,
        "{metrics}"
    );
}
