//! SPEC section 3.1 through the real binary, each test driving the relay the way the attack
//! of issue 12 does: oversized requests, another user's credential on a victim's 5-tuple
//! (441), one Allocate replayed from many source ports, the permission cap (508), channel
//! numbers out of range (400) and attributes appended after MESSAGE-INTEGRITY.

mod relay_support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use relay_support::{
    RawClient, Reply, allocations, credential, relay_addr, relay_config, round_trip, rss_kib,
    sample, scrape, udp_peer,
};
use stun::message::{Getter, METHOD_ALLOCATE, METHOD_CREATE_PERMISSION, Message, Setter};
use switchboard_tests::{Ports, Service, TEST_SECRET};
use turn::proto::PROTO_UDP;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::reqtrans::RequestedTransport;

fn start(ports: &Ports, extra: &str) -> Service {
    Service::start(
        "switchboard-relay",
        &relay_config(ports, &["127.0.0.0/8"], &[], extra),
    )
}

fn peer_attr(p: SocketAddr) -> Box<dyn Setter> {
    Box::new(PeerAddress {
        ip: p.ip(),
        port: p.port(),
    })
}

/// `n` distinct allowed peers (loopback addresses other than 127.0.0.1).
fn peers(n: usize, salt: u8) -> Vec<SocketAddr> {
    (0..n)
        .map(|i| {
            let [_, _, hi, lo] = u32::try_from(i + 1).expect("small").to_be_bytes();
            SocketAddr::from(([127, salt, hi, lo], 9))
        })
        .collect()
}

/// A legitimate user: an allocation with channel 0x4000 bound to a loopback peer.
struct Legit {
    client: RawClient,
    peer: UdpSocket,
    relayed: SocketAddr,
}

impl Legit {
    fn new(server: SocketAddr, user: &str) -> Self {
        let mut client = RawClient::new(server, &credential(TEST_SECRET, user));
        let relayed = client.allocate().expect("the legitimate user allocates");
        let (peer, peer_addr) = udp_peer("127.0.0.1");
        assert_eq!(client.channel_bind(0x4000, peer_addr), 200);
        Self {
            client,
            peer,
            relayed,
        }
    }

    fn relays(&self, data: &[u8]) {
        round_trip(&self.client, 0x4000, &self.peer, self.relayed, data);
    }
}

/// Issue 12, finding 1: a CreatePermission larger than the crate's 1,500-byte read buffer
/// was recorded, then dropped unanswered (220 KB of RSS each). Now each gets 400 at once,
/// nothing waits for an answer, RSS stays within 8 MiB for 300 of ~60 KB each, and
/// another user allocates and relays.
#[test]
fn an_oversized_create_permission_gets_400_and_leaves_no_state_behind() {
    let ports = Ports::new();
    let relay = start(&ports, "");
    let server = relay_addr(&ports);
    let mut mallory = RawClient::new(server, &credential(TEST_SECRET, "mallory"));
    mallory.allocate().expect("allocate");
    let many = peers(5000, 5);
    assert_eq!(mallory.create_permission(&many[..1]), 200, "warm-up");
    let before = rss_kib(relay.pid());
    for i in 0..300 {
        let code = mallory.create_permission(&many);
        assert_eq!(code, 400, "oversized request {i}");
    }
    let after = rss_kib(relay.pid());
    let metrics = scrape(&ports);
    assert_eq!(
        sample(
            &metrics,
            "switchboard_relay_requests_refused_total{reason=\"oversized\"}"
        ),
        300.0,
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "switchboard_relay_pending_requests"),
        0.0,
        "nothing waits for an answer"
    );
    eprintln!("300 oversized CreatePermissions: RSS {before} KiB -> {after} KiB");
    assert!(
        after <= before + 8 * 1024,
        "RSS grew from {before} KiB to {after} KiB (bound 8 MiB)"
    );
    Legit::new(server, "alice").relays(b"after the oversized ones");
}

/// Issue 12, finding 2 / RFC 8656 section 5: another user's valid credential sent on the
/// victim's 5-tuple can neither add a permission to nor delete (Refresh 0) the victim's
/// allocation: 441 Wrong Credentials, and the victim keeps relaying.
#[test]
fn another_users_credential_on_a_victims_5_tuple_gets_441_and_the_allocation_survives() {
    let ports = Ports::new();
    let _relay = start(&ports, "");
    let server = relay_addr(&ports);
    let victim = Legit::new(server, "victim");
    let mut mallory = victim.client.sharing(&credential(TEST_SECRET, "mallory"));
    let (_, elsewhere) = udp_peer("127.0.0.2");
    assert_eq!(mallory.create_permission(&[elsewhere]), 441);
    assert_eq!(mallory.channel_bind(0x4001, elsewhere), 441);
    assert_eq!(mallory.refresh(Duration::ZERO), 441, "Refresh 0 = delete");
    assert_eq!(mallory.refresh(Duration::from_secs(3000)), 441);
    assert_eq!(allocations(&ports), 1.0);
    victim.relays(b"still mine");
    let metrics = scrape(&ports);
    assert_eq!(
        sample(
            &metrics,
            "switchboard_relay_auth_failures_total{reason=\"wrong_credentials\"}"
        ),
        4.0,
        "{metrics}"
    );
}

/// Issue 12, finding 3: the same Allocate (one transaction id) sent from 16 source ports
/// counted once against the quota while the crate allocated for several (whenever two of
/// them were in flight at once on different listener sockets). Reservations are keyed by
/// the client 5-tuple and transaction id: with a quota of 2, exactly 2 allocate and the
/// rest get 486, every time (20 rounds, each a fresh user, to give the race its chances),
/// and the gauge counts every relayed port held.
#[test]
fn one_allocate_sent_from_16_source_ports_yields_no_more_than_the_users_quota() {
    const ROUNDS: usize = 20;
    let ports = Ports::new();
    let _relay = start(&ports, "max_allocations_per_user = 2");
    let server = relay_addr(&ports);
    // Every round's sockets stay open to the end: a closed one's port could be handed to a
    // later round, whose Allocate from that 5-tuple would then rightly get 437 (the earlier
    // round's allocation still holds it).
    let mut held = Vec::with_capacity(ROUNDS * 16);
    for round in 0..ROUNDS {
        let mut first = RawClient::new(server, &credential(TEST_SECRET, &format!("u{round}")));
        first.ensure_nonce();
        let allocate = first.signed_request(
            METHOD_ALLOCATE,
            vec![Box::new(RequestedTransport {
                protocol: PROTO_UDP,
            })],
        );
        let sockets: Vec<UdpSocket> = (0..16)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
                s.set_read_timeout(Some(Duration::from_millis(250)))
                    .expect("timeout");
                s
            })
            .collect();
        for s in &sockets {
            s.send_to(&allocate.raw, server).expect("send");
        }
        let codes: Vec<u16> = sockets
            .iter()
            .map(|s| answer(s, &allocate, server))
            .collect();
        let ok = codes.iter().filter(|c| **c == 200).count();
        assert_eq!(ok, 2, "round {round}: responses {codes:?}");
        assert_eq!(codes.iter().filter(|c| **c == 486).count(), 14, "{codes:?}");
        held.extend(sockets);
    }
    assert_eq!(allocations(&ports), (2 * ROUNDS) as f64);
}

/// The response to `req` on `sock`, retransmitting it (RFC 8489 section 6.2.1).
fn answer(sock: &UdpSocket, req: &Message, server: SocketAddr) -> u16 {
    for _ in 0..20 {
        let mut buf = [0u8; 2048];
        while let Ok((n, _)) = sock.recv_from(&mut buf) {
            let mut r = Message::new();
            r.raw = buf[..n].to_vec();
            if r.decode().is_ok() && r.transaction_id == req.transaction_id {
                let mut e = stun::error_code::ErrorCodeAttribute::default();
                return e.get_from(&r).map_or(200, |()| e.code.0);
            }
        }
        sock.send_to(&req.raw, server).expect("retransmit");
    }
    panic!("no response to the Allocate");
}

/// Issue 12, finding 4 / RFC 8656 section 10.2: at most `max_permissions_per_allocation`
/// peers (4 here). Beyond: 508, for CreatePermission and for a ChannelBind to a new peer;
/// refreshing installed permissions still works and they keep relaying.
#[test]
fn permissions_beyond_the_cap_get_508_and_installed_ones_keep_relaying() {
    let ports = Ports::new();
    let _relay = start(&ports, "max_permissions_per_allocation = 4");
    let server = relay_addr(&ports);
    let mut c = RawClient::new(server, &credential(TEST_SECRET, "alice"));
    let relayed = c.allocate().expect("allocate");
    let (peer, peer_addr) = udp_peer("127.0.0.1");
    let others = peers(10, 7);
    assert_eq!(c.create_permission(&[peer_addr, others[0], others[1]]), 200);
    assert_eq!(c.create_permission(&[others[2], others[3]]), 508, "5 > 4");
    assert_eq!(c.create_permission(&others[2..8]), 508);
    assert_eq!(c.create_permission(&[others[2]]), 200, "the fourth fits");
    assert_eq!(c.create_permission(&[others[3]]), 508);
    assert_eq!(
        c.channel_bind(0x4005, others[4]),
        508,
        "a new peer by ChannelBind"
    );
    assert_eq!(c.create_permission(&[peer_addr, others[0]]), 200, "refresh");
    assert_eq!(c.channel_bind(0x4000, peer_addr), 200, "an installed peer");
    round_trip(&c, 0x4000, &peer, relayed, b"within the cap");
    let metrics = scrape(&ports);
    assert_eq!(
        sample(
            &metrics,
            "switchboard_relay_requests_refused_total{reason=\"permission_cap\"}"
        ),
        4.0,
        "{metrics}"
    );
}

/// Issue 12, finding 5 / RFC 8656 section 12.2: a CHANNEL-NUMBER outside 0x4000-0x7FFF
/// (0xFFFF was accepted) gets 400; the range's ends still bind.
#[test]
fn channel_bind_outside_0x4000_to_0x7fff_gets_400() {
    let ports = Ports::new();
    let _relay = start(&ports, "");
    let mut c = RawClient::new(relay_addr(&ports), &credential(TEST_SECRET, "alice"));
    c.allocate().expect("allocate");
    let (_p1, a) = udp_peer("127.0.0.1");
    let (_p2, b) = udp_peer("127.0.0.1");
    for n in [0xFFFF, 0x8000, 0x3FFF, 0x0000] {
        assert_eq!(c.channel_bind(n, a), 400, "channel {n:#06x}");
    }
    assert_eq!(c.channel_bind(0x4000, a), 200);
    assert_eq!(c.channel_bind(0x7FFF, b), 200);
    assert_eq!(
        sample(
            &scrape(&ports),
            "switchboard_relay_requests_refused_total{reason=\"bad_channel\"}"
        ),
        4.0
    );
}

/// Issue 12, finding 7 / RFC 8489 section 14.5: attributes after MESSAGE-INTEGRITY are
/// ignored. A denied peer appended after it no longer refuses the request, and an allowed
/// peer appended after it gets no permission: its datagrams are not relayed, while the
/// signed peer's are.
#[test]
fn peer_addresses_appended_after_message_integrity_are_ignored() {
    let ports = Ports::new();
    let _relay = start(&ports, "");
    let server = relay_addr(&ports);
    let mut c = RawClient::new(server, &credential(TEST_SECRET, "alice"));
    let relayed = c.allocate().expect("allocate");
    let (signed_peer, signed_addr) = udp_peer("127.0.0.1");
    let (appended_peer, appended_addr) = udp_peer("127.0.0.2");

    let send = |c: &mut RawClient, appended: SocketAddr| {
        let mut m = c.signed_request(METHOD_CREATE_PERMISSION, vec![peer_attr(signed_addr)]);
        peer_attr(appended).add_to(&mut m).expect("append");
        c.transact(&m)
    };
    let denied: SocketAddr = "10.0.0.1:9".parse().expect("addr");
    let reply = send(&mut c, denied);
    assert!(
        matches!(reply, Reply::Ok(_)),
        "an unauthenticated denied peer refused the request: {reply:?}"
    );
    assert!(matches!(send(&mut c, appended_addr), Reply::Ok(_)));

    appended_peer
        .send_to(b"unauthenticated", relayed)
        .expect("send");
    signed_peer.send_to(b"signed", relayed).expect("send");
    assert_eq!(
        c.recv_data(Duration::from_secs(5)).as_deref(),
        Some(&b"signed"[..]),
        "only the signed peer's datagram is relayed (the other was sent first)"
    );
}
