//! The relay is never an SSRF proxy (SPEC section 3): CreatePermission and ChannelBind to
//! denied peers get 403 Forbidden (RFC 8656 sections 9.1 and 12.1 let the server refuse),
//! and no datagram reaches a listener there, while a known-good relay path proves the
//! pipeline works. With loopback in `allowed_peers`, loopback relaying works.

mod relay_support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use relay_support::{RawClient, credential, relay_addr, relay_config};
use switchboard_tests::{Ports, Service, TEST_SECRET};

/// Every target of the acceptance list; the relay's own address is added per test.
const DENIED: &[&str] = &[
    "127.0.0.1:5000",
    "0.0.0.0:5000",
    "10.0.0.1:5000",
    "169.254.169.254:80",
    "192.168.1.1:5000",
    "[::1]:5000",
    "[::]:5000",
    "[::ffff:127.0.0.1]:5000",
    "[64:ff9b::7f00:1]:5000",
    // SPEC section 3.1: the rest of the IANA special-purpose registries and embedded forms.
    "192.88.99.1:5000",                            // deprecated 6to4 relay anycast
    "100.64.0.1:5000",                             // shared address space (CGNAT)
    "198.18.0.1:5000",                             // benchmarking
    "240.0.0.1:5000",                              // reserved
    "[64:ff9b:1::a00:1]:5000",                     // local-use NAT64
    "[64:ff9b::a9fe:a9fe]:80",                     // NAT64 of the metadata address
    "[::ffff:0:a9fe:a9fe]:80",                     // SIIT form of the metadata address
    "[::a9fe:a9fe]:80",                            // IPv4-compatible metadata address
    "[2002:a9fe:a9fe::1]:80",                      // 6to4 of the metadata address
    "[2001:0:4136:e378:8000:63bf:3fff:fdd2]:5000", // Teredo, client in TEST-NET-1
    "[2001:0:a00:1:0:0:f7f7:f7f7]:5000",           // Teredo, server 10.0.0.1
    "[fec0::1]:5000",                              // site-local
    "[100::1]:5000",                               // discard-only
    "[2001:2::1]:5000",                            // benchmarking
    "[2001:db8::1]:5000",                          // documentation
    "[3fff::1]:5000",                              // documentation (RFC 9637)
    "[fe80::1]:5000",                              // link-local
    "[fd00::1]:5000",                              // unique local
    "[ff02::1]:5000",                              // multicast
];

fn targets(ports: &Ports, victim: SocketAddr) -> Vec<SocketAddr> {
    let mut t: Vec<SocketAddr> = DENIED.iter().map(|s| s.parse().expect("addr")).collect();
    t.push(relay_addr(ports));
    t.push(victim);
    t
}

#[test]
fn create_permission_and_channel_bind_to_denied_peers_get_403_and_nothing_arrives() {
    let ports = Ports::new();
    let relay = Service::start("switchboard-relay", &relay_config(&ports, &[], &[], ""));
    let server = relay_addr(&ports);
    let victim = UdpSocket::bind("127.0.0.1:0").expect("victim");
    let victim_addr = victim.local_addr().expect("addr");

    let mut a = RawClient::new(server, &credential(TEST_SECRET, "a"));
    let mut b = RawClient::new(server, &credential(TEST_SECRET, "b"));
    let a_relayed = a.allocate().expect("allocate a");
    let b_relayed = b.allocate().expect("allocate b");

    for (i, target) in targets(&ports, victim_addr).into_iter().enumerate() {
        assert_eq!(
            a.create_permission(&[target]),
            403,
            "CreatePermission to {target}"
        );
        let channel = 0x4000 + i as u16;
        assert_eq!(
            a.channel_bind(channel, target),
            403,
            "ChannelBind to {target}"
        );
        // The crate installs only the first XOR-PEER-ADDRESS; we refuse the whole
        // request when any of them is denied.
        assert_eq!(
            a.create_permission(&[b_relayed, target]),
            403,
            "CreatePermission to {b_relayed} and {target}"
        );
        // What a client would try next: Send indications and ChannelData anyway.
        a.send_indication(target, b"ssrf");
        a.send_channel_data(channel, b"ssrf");
    }

    // Known-good path: two clients of this relay reach each other through their relayed
    // addresses (ordinary TURN), so the pipeline itself works.
    assert_eq!(a.create_permission(&[b_relayed]), 200);
    assert_eq!(b.create_permission(&[a_relayed]), 200);
    a.send_indication(b_relayed, b"proof");
    assert_eq!(
        b.recv_data(Duration::from_secs(5)).as_deref(),
        Some(&b"proof"[..])
    );

    // Nothing reached the victim (bounded wait, after the later good packet arrived).
    victim
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    assert!(
        victim.recv_from(&mut buf).is_err(),
        "a datagram reached a denied peer"
    );

    let metrics = relay_support::scrape(&ports);
    let n = targets(&ports, victim_addr).len() as f64;
    assert!(
        relay_support::sample(
            &metrics,
            "switchboard_relay_denied_peers_total{request=\"create_permission\"}"
        ) >= 2.0 * n
    );
    assert!(
        relay_support::sample(
            &metrics,
            "switchboard_relay_denied_peers_total{request=\"channel_bind\"}"
        ) >= n
    );
    assert!(
        relay_support::sample(
            &metrics,
            "switchboard_relay_denied_peers_total{request=\"send\"}"
        ) >= n
    );
    drop(relay);
}

#[test]
fn with_loopback_in_allowed_peers_loopback_relaying_works_both_ways() {
    let ports = Ports::new();
    let _relay = Service::start(
        "switchboard-relay",
        &relay_config(&ports, &["127.0.0.0/8"], &[], ""),
    );
    let peer = UdpSocket::bind("127.0.0.1:0").expect("peer");
    peer.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let peer_addr = peer.local_addr().expect("addr");
    let mut c = RawClient::new(relay_addr(&ports), &credential(TEST_SECRET, "c"));
    let relayed = c.allocate().expect("allocate");

    // RFC 8656 section 12: over a channel, both ways.
    assert_eq!(c.channel_bind(0x4001, peer_addr), 200);
    c.send_channel_data(0x4001, b"to peer");
    let mut buf = [0u8; 64];
    let (n, from) = peer.recv_from(&mut buf).expect("relayed to peer");
    assert_eq!(&buf[..n], b"to peer");
    assert_eq!(from, relayed, "the peer sees the relayed address");
    peer.send_to(b"to client", relayed).expect("send");
    assert_eq!(
        c.recv_data(Duration::from_secs(5)).as_deref(),
        Some(&b"to client"[..])
    );
}

#[test]
fn the_relays_own_listening_address_is_refused_even_when_loopback_is_allowed() {
    let ports = Ports::new();
    let _relay = Service::start(
        "switchboard-relay",
        &relay_config(&ports, &["127.0.0.0/8", "::/0"], &[], ""),
    );
    let mut c = RawClient::new(relay_addr(&ports), &credential(TEST_SECRET, "c"));
    c.allocate().expect("allocate");
    assert_eq!(c.create_permission(&[relay_addr(&ports)]), 403);
    assert_eq!(c.channel_bind(0x4002, relay_addr(&ports)), 403);
}
