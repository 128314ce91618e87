//! Sans-IO tests of the gate's hardening (SPEC section 3.1): 441, oversized requests,
//! pending-table bounds, 5-tuple reservations, the permission cap, channel range,
//! attributes after MESSAGE-INTEGRITY, no length wrap.

use super::*;

fn alice() -> switchboard_config::credentials::Credential {
    cred("alice")
}

fn cred(user: &str) -> switchboard_config::credentials::Credential {
    mint(
        &SecretString::from(SECRET.to_string()),
        user,
        std::time::Duration::from_secs(600),
        NOW,
    )
}

fn allocate_request(c: &switchboard_config::credentials::Credential, nonce: &str) -> Vec<u8> {
    request(
        METHOD_ALLOCATE,
        vec![Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        })],
        Some((&c.username, &c.password, nonce)),
    )
}

fn peer(ip: &str) -> Box<dyn Setter> {
    Box::new(PeerAddress {
        ip: ip.parse().expect("ip"),
        port: 9,
    })
}

/// A success response of `method` to `req`, as the crate would send it.
fn success(method: Method, req: &[u8]) -> Vec<u8> {
    let mut ok = Message::new();
    ok.build(&[
        Box::new(TransactionId(decode(req).transaction_id.0)),
        Box::new(MessageType::new(method, CLASS_SUCCESS_RESPONSE)),
    ])
    .expect("build");
    ok.raw
}

/// RFC 8656 section 5: a request on an allocation must carry the USERNAME that created it;
/// another user's valid credential on the victim's 5-tuple gets 441 for CreatePermission,
/// ChannelBind and Refresh (LIFETIME 0 would delete the allocation), and nothing reaches
/// the crate. The owner's requests still pass.
#[tokio::test]
async fn another_users_valid_credential_on_an_allocation_gets_441() {
    let (f, c, nonce) = allocated().await;
    let mallory = cred("mallory");
    let m_auth = Some((
        mallory.username.as_str(),
        mallory.password.as_str(),
        nonce.as_str(),
    ));
    let refresh_0 = || -> Vec<Box<dyn Setter>> {
        vec![Box::new(turn::proto::lifetime::Lifetime(
            std::time::Duration::ZERO,
        ))]
    };
    for (method, attrs) in [
        (METHOD_CREATE_PERMISSION, vec![peer("8.8.8.8")]),
        (stun::message::METHOD_REFRESH, refresh_0()),
        (
            stun::message::METHOD_CHANNEL_BIND,
            vec![
                Box::new(turn::proto::channum::ChannelNumber(0x4000)) as Box<dyn Setter>,
                peer("8.8.8.8"),
            ],
        ),
    ] {
        let out = f.client_packet(&request(method, attrs, m_auth));
        assert_eq!(reply_code(&out), Some(441), "{method:?}: {out:?}");
    }
    let owner = Some((c.username.as_str(), c.password.as_str(), nonce.as_str()));
    let out = f.client_packet(&request(stun::message::METHOD_REFRESH, refresh_0(), owner));
    assert!(matches!(out, Inbound::ToCrate(_)), "{out:?}");
    assert_eq!(f.gate.tables.allocations(), 1);
}

/// SPEC section 3.1: a request larger than the crate reads (1,500 bytes) gets 400 before
/// anything is recorded: no pending entry, no quota reservation.
#[tokio::test]
async fn a_request_larger_than_the_crate_reads_gets_400_and_records_nothing() {
    let (f, c, nonce) = allocated().await;
    let auth = Some((c.username.as_str(), c.password.as_str(), nonce.as_str()));
    let peers: Vec<Box<dyn Setter>> = (0..150u8).map(|i| peer(&format!("8.8.{i}.1"))).collect();
    let big = request(METHOD_CREATE_PERMISSION, peers, auth);
    assert!(big.len() > CRATE_READ_LIMIT);
    let out = f.client_packet(&big);
    assert_eq!(reply_code(&out), Some(400), "{out:?}");
    assert!(lock(&f.gate.pending).is_empty());

    // An oversized Allocate from a fresh client reserves no quota either.
    let f = fixture(vec![]);
    f.teach_crate_nonce();
    let bob = cred("bob");
    let nonce = f.our_nonce();
    let padding: Vec<Box<dyn Setter>> = vec![
        Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        }),
        Box::new(TextAttribute::new(
            stun::attributes::ATTR_SOFTWARE,
            "x".repeat(700),
        )),
        Box::new(TextAttribute::new(
            stun::attributes::ATTR_SOFTWARE,
            "y".repeat(700),
        )),
    ];
    let out = f.client_packet(&request(
        METHOD_ALLOCATE,
        padding,
        Some((&bob.username, &bob.password, &nonce)),
    ));
    assert_eq!(reply_code(&out), Some(400), "{out:?}");
    assert_eq!(lock(&f.gate.quota).total(), 0);
    assert!(lock(&f.gate.pending).is_empty());
}

/// SPEC section 3.1: reservations are keyed by the full client 5-tuple and transaction id.
/// One Allocate (one transaction id) replayed from another source port is another
/// allocation and counts against the user's quota (1 here): 486.
#[test]
fn one_allocate_replayed_from_another_source_port_counts_against_the_quota() {
    let f = fixture(vec![]);
    f.teach_crate_nonce();
    let c = alice();
    let bytes = allocate_request(&c, &f.our_nonce());
    let other: SocketAddr = "198.51.100.20:40001".parse().expect("addr");
    assert!(matches!(f.client_packet(&bytes), Inbound::ToCrate(_)));
    // A retransmission from the same 5-tuple is the same request: not counted twice (and,
    // over UDP, not handed to the crate again while the first awaits its answer).
    assert!(matches!(f.client_packet(&bytes), Inbound::Drop));
    assert_eq!(lock(&f.gate.quota).total(), 1);
    let out = f.packet_from(other, &bytes, f.t0);
    assert_eq!(reply_code(&out), Some(486), "{out:?}");
}

/// SPEC section 3.1: pending entries are bounded in count; a full table refuses an
/// Allocate with 508 (never lets an allocation through that our layer would not record),
/// gives its reservation back, and entries expire by time.
#[test]
fn a_full_pending_table_refuses_an_allocate_with_508_until_entries_expire() {
    let f = fixture_with(vec![], false, |cfg| {
        cfg.pending_cap = 1;
        cfg.max_allocations_per_user = 5;
    });
    f.teach_crate_nonce();
    let nonce = f.our_nonce();
    let c = alice();
    // The crate never answers this one.
    assert!(matches!(
        f.client_packet(&allocate_request(&c, &nonce)),
        Inbound::ToCrate(_)
    ));
    let other: SocketAddr = "198.51.100.20:1".parse().expect("addr");
    let out = f.packet_from(other, &allocate_request(&c, &nonce), f.t0);
    assert_eq!(reply_code(&out), Some(508), "{out:?}");
    assert_eq!(
        lock(&f.gate.quota).total(),
        1,
        "the refused one gave its slot back"
    );
    let later = f.t0 + PENDING_TIMEOUT;
    let out = f.packet_from(other, &allocate_request(&c, &nonce), later);
    assert!(matches!(out, Inbound::ToCrate(_)), "{out:?}");
    assert_eq!(
        lock(&f.gate.quota).total(),
        1,
        "the expired one released its reservation"
    );
}

/// An Allocate success for a request we no longer follow never reaches the client as a
/// success: it would hold a relayed port our layer neither counts nor relays for.
#[test]
fn an_allocate_success_for_an_unfollowed_request_becomes_508() {
    let f = fixture(vec![]);
    f.teach_crate_nonce();
    let req = allocate_request(&alice(), &f.our_nonce());
    let out = f.crate_says(&success(METHOD_ALLOCATE, &req), f.client);
    let Outbound::Replace(r) = out else {
        panic!("expected a replacement: {out:?}");
    };
    assert_eq!(wire::error_code(&decode(&r)), Some(508));
}

/// SPEC section 3.1 / RFC 8656 section 10.2: at most `max_permissions_per_allocation` peers
/// (2 here); a request that would exceed it gets 508 before the crate sees it, refreshing
/// installed ones does not, and a ChannelBind to a new peer counts too.
#[tokio::test]
async fn permissions_beyond_the_cap_get_508_before_the_crate_sees_them() {
    let (f, c, nonce) = allocated_with(false, |cfg| cfg.max_permissions_per_allocation = 2).await;
    let auth = Some((c.username.as_str(), c.password.as_str(), nonce.as_str()));
    let two = request(
        METHOD_CREATE_PERMISSION,
        vec![peer("8.8.8.8"), peer("8.8.4.4")],
        auth,
    );
    assert!(matches!(f.client_packet(&two), Inbound::ToCrate(_)));
    assert!(matches!(
        f.crate_says(&success(METHOD_CREATE_PERMISSION, &two), f.client),
        Outbound::Forward
    ));
    let third = request(METHOD_CREATE_PERMISSION, vec![peer("1.1.1.1")], auth);
    assert_eq!(reply_code(&f.client_packet(&third)), Some(508));
    let refresh = request(METHOD_CREATE_PERMISSION, vec![peer("8.8.4.4")], auth);
    assert!(matches!(f.client_packet(&refresh), Inbound::ToCrate(_)));
    let bind = request(
        stun::message::METHOD_CHANNEL_BIND,
        vec![
            Box::new(turn::proto::channum::ChannelNumber(0x4000)),
            peer("1.1.1.1"),
        ],
        auth,
    );
    assert_eq!(reply_code(&f.client_packet(&bind)), Some(508));
    assert!(
        f.gate
            .metrics
            .encode()
            .contains("switchboard_relay_requests_refused_total{reason=\"permission_cap\"} 2")
    );
}

/// RFC 8656 section 12.2 (range of RFC 5766 section 11): a CHANNEL-NUMBER outside
/// 0x4000-0x7FFF gets 400 from us, so the crate never binds it.
#[tokio::test]
async fn channel_numbers_outside_the_range_get_400() {
    let (f, c, nonce) = allocated().await;
    let auth = Some((c.username.as_str(), c.password.as_str(), nonce.as_str()));
    let bind = |n: u16| {
        request(
            stun::message::METHOD_CHANNEL_BIND,
            vec![
                Box::new(turn::proto::channum::ChannelNumber(n)),
                peer("8.8.8.8"),
            ],
            auth,
        )
    };
    for n in [0xFFFF, 0x3FFF, 0x8000, 0x0000] {
        assert_eq!(
            reply_code(&f.client_packet(&bind(n))),
            Some(400),
            "{n:#06x}"
        );
    }
    for n in [0x4000, 0x7FFF] {
        assert!(
            matches!(f.client_packet(&bind(n)), Inbound::ToCrate(_)),
            "{n:#06x}"
        );
    }
}

/// RFC 8489 section 14.5: attributes after MESSAGE-INTEGRITY are ignored: a denied peer
/// appended after it neither refuses the request nor reaches the crate, which gets only
/// the checked part.
#[tokio::test]
async fn attributes_after_message_integrity_decide_nothing_and_never_reach_the_crate() {
    let (f, c, nonce) = allocated().await;
    let auth = Some((c.username.as_str(), c.password.as_str(), nonce.as_str()));
    let mut m = decode(&request(
        METHOD_CREATE_PERMISSION,
        vec![peer("8.8.8.8")],
        auth,
    ));
    PeerAddress {
        ip: "10.0.0.1".parse().expect("ip"),
        port: 9,
    }
    .add_to(&mut m)
    .expect("append");
    let out = f.client_packet(&m.raw);
    let Inbound::ToCrate(bytes) = out else {
        panic!("expected the crate to get it: {out:?}");
    };
    assert_eq!(
        wire::peer_addresses(&decode(&bytes)),
        Some(vec!["8.8.8.8:9".parse().expect("addr")])
    );
}

/// RFC 8656 section 8.2: a Refresh for no allocation gets 437 from us (the crate would not
/// answer one with a non-zero lifetime at all).
#[test]
fn a_refresh_without_an_allocation_gets_437() {
    let f = fixture(vec![]);
    f.teach_crate_nonce();
    let c = alice();
    let nonce = f.our_nonce();
    let out = f.client_packet(&request(
        stun::message::METHOD_REFRESH,
        vec![],
        Some((&c.username, &c.password, &nonce)),
    ));
    assert_eq!(reply_code(&out), Some(437), "{out:?}");
}
