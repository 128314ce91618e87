//! Sans-IO tests of the gate: packets and the clock go in, decisions come out.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use secrecy::SecretString;
use stun::agent::TransactionId;
use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::integrity::MessageIntegrity;
use stun::message::{
    BINDING_REQUEST, CLASS_ERROR_RESPONSE, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE,
    METHOD_CREATE_PERMISSION, Message, MessageType, Method, Setter,
};
use stun::textattrs::TextAttribute;
use switchboard_config::Secrets;
use switchboard_config::credentials::mint;
use turn::proto::PROTO_UDP;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;

use super::*;
use crate::control::tables::RelaySlot;
use crate::dataplane::WorkerShared;

const NOW: u64 = 1_800_000_000;
const SECRET: &str = "unit-secret";

/// A listener on this address; `true` = a TCP/TLS stream listener.
#[derive(Debug)]
struct FakeTransport(SocketAddr, bool);

#[async_trait]
impl ClientTransport for FakeTransport {
    async fn recv(&self, _buf: &mut [u8]) -> std::io::Result<crate::transport::Received> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
    async fn send_to(&self, buf: &[u8], _client: SocketAddr) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.0)
    }
    fn is_stream(&self) -> bool {
        self.1
    }
}

/// The runtime the fixtures' workers spawn on (never driven: no relayed socket is read).
static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
});

fn worker() -> Arc<WorkerShared> {
    WorkerShared::detached(0, RUNTIME.handle().clone())
}

struct Fixture {
    gate: Gate,
    worker: Arc<WorkerShared>,
    transport: Arc<dyn ClientTransport>,
    local: SocketAddr,
    client: SocketAddr,
    t0: Instant,
}

fn fixture(allowed: Vec<ipnet::IpNet>) -> Fixture {
    fixture_on(allowed, false)
}

/// A fixture whose client reaches the relay over a stream listener (`stream`) or UDP.
fn fixture_on(allowed: Vec<ipnet::IpNet>, stream: bool) -> Fixture {
    fixture_with(allowed, stream, |_| {})
}

/// A fixture with settings adjusted by `tweak`.
fn fixture_with(
    allowed: Vec<ipnet::IpNet>,
    stream: bool,
    tweak: impl FnOnce(&mut GateConfig),
) -> Fixture {
    let local: SocketAddr = "127.0.0.1:3478".parse().expect("addr");
    let mut cfg = GateConfig {
        realm: "r".into(),
        policy: PeerPolicy::new(
            allowed,
            vec![],
            vec![local],
            vec!["127.0.0.1".parse().expect("ip")],
        ),
        max_allocations: 10,
        max_allocations_per_user: 1,
        bytes_per_second: None,
        unauth_requests_per_second: 5,
        max_permissions_per_allocation: 64,
        pending_cap: PENDING_CAP,
        strict_expiry: true,
    };
    tweak(&mut cfg);
    let secrets = Secrets::new(vec![SecretString::from(SECRET.to_string())]).expect("secrets");
    let gate = Gate::new(
        cfg,
        Arc::new(Credentials::new(secrets)),
        [3; 32],
        Arc::new(Metrics::new()),
    );
    Fixture {
        gate,
        worker: worker(),
        transport: Arc::new(FakeTransport(local, stream)),
        local,
        client: "198.51.100.20:40000".parse().expect("addr"),
        t0: Instant::now(),
    }
}

fn decode(raw: &[u8]) -> Message {
    wire::parse(raw).expect("STUN")
}

fn request(
    method: Method,
    mut attrs: Vec<Box<dyn Setter>>,
    auth: Option<(&str, &str, &str)>,
) -> Vec<u8> {
    let mut setters: Vec<Box<dyn Setter>> = vec![
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(method, CLASS_REQUEST)),
    ];
    setters.append(&mut attrs);
    if let Some((user, pass, nonce)) = auth {
        setters.push(Box::new(TextAttribute::new(ATTR_USERNAME, user.into())));
        setters.push(Box::new(TextAttribute::new(ATTR_REALM, "r".into())));
        setters.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce.into())));
        setters.push(Box::new(MessageIntegrity::new_long_term_integrity(
            user.into(),
            "r".into(),
            pass.into(),
        )));
    }
    let mut m = Message::new();
    m.build(&setters).expect("build");
    m.raw
}

impl Fixture {
    fn client_packet(&self, p: &[u8]) -> Inbound {
        self.gate
            .handle_client(&self.transport, self.local, p, self.client, self.t0, NOW)
    }

    /// A packet from `client` at `now`.
    fn packet_from(&self, client: SocketAddr, p: &[u8], now: Instant) -> Inbound {
        self.gate
            .handle_client(&self.transport, self.local, p, client, now, NOW)
    }

    /// What the gate does with a packet the crate sends to `client`.
    fn crate_says(&self, p: &[u8], client: SocketAddr) -> Outbound {
        self.gate.handle_crate_output(
            &self.worker,
            self.transport.as_ref(),
            self.local,
            p,
            client,
            self.t0,
            NOW,
        )
    }

    /// The crate's answer to the synthetic request, carrying its nonce.
    fn teach_crate_nonce(&self) {
        let probe = decode(&Gate::synthetic_request());
        let answer = wire::error_response(&probe, 401, Some(("crate-nonce", "r")), None);
        let out = self.crate_says(&answer, SYNTHETIC_CLIENT);
        assert!(matches!(out, Outbound::Swallow));
    }

    fn our_nonce(&self) -> String {
        self.gate.nonces.issue(self.client.ip(), NOW)
    }
}

fn reply_code(i: &Inbound) -> Option<u16> {
    match i {
        Inbound::Reply(b) => {
            let m = decode(b);
            (m.typ.class == CLASS_ERROR_RESPONSE)
                .then(|| wire::error_code(&m))
                .flatten()
        }
        _ => None,
    }
}

/// RFC 8489 section 6.3.1: a Binding request is answered with XOR-MAPPED-ADDRESS.
#[test]
fn a_binding_request_is_answered_by_our_layer() {
    let f = fixture(vec![]);
    let mut m = Message::new();
    m.build(&[Box::new(TransactionId::new()), Box::new(BINDING_REQUEST)])
        .expect("build");
    let Inbound::Reply(r) = f.client_packet(&m.raw) else {
        panic!("expected a reply");
    };
    assert_eq!(decode(&r).typ.class, CLASS_SUCCESS_RESPONSE);
}

/// RFC 8489 section 9.2.4: no MESSAGE-INTEGRITY gets 401 with NONCE and REALM, answered
/// by us so the crate's nonce table never grows.
#[test]
fn an_unauthenticated_allocate_gets_401_from_us_and_never_reaches_the_crate() {
    let f = fixture(vec![]);
    let out = f.client_packet(&request(
        METHOD_ALLOCATE,
        vec![Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        })],
        None,
    ));
    assert_eq!(reply_code(&out), Some(401));
    let Inbound::Reply(r) = out else {
        unreachable!()
    };
    let r = decode(&r);
    assert!(wire::text(&r, ATTR_NONCE).is_some());
    assert_eq!(wire::text(&r, ATTR_REALM).as_deref(), Some("r"));
}

#[test]
fn unauthenticated_requests_beyond_the_per_source_burst_are_dropped() {
    let f = fixture(vec![]);
    let p = request(METHOD_ALLOCATE, vec![], None);
    let answered = (0..50)
        .filter(|_| matches!(f.client_packet(&p), Inbound::Reply(_)))
        .count();
    assert_eq!(answered, 10, "burst of twice the per-second rate");
}

/// A valid request reaches the crate re-signed with the crate's nonce.
#[test]
fn an_authenticated_allocate_is_handed_to_the_crate_with_the_crate_nonce() {
    let f = fixture(vec![]);
    f.teach_crate_nonce();
    let c = mint(
        &SecretString::from(SECRET.to_string()),
        "alice",
        std::time::Duration::from_secs(600),
        NOW,
    );
    let nonce = f.our_nonce();
    let out = f.client_packet(&request(
        METHOD_ALLOCATE,
        vec![Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        })],
        Some((&c.username, &c.password, &nonce)),
    ));
    let Inbound::ToCrate(bytes) = out else {
        panic!("expected the crate to get it: {out:?}");
    };
    let mut m = decode(&bytes);
    assert_eq!(wire::text(&m, ATTR_NONCE).as_deref(), Some("crate-nonce"));
    MessageIntegrity::new_long_term_integrity(c.username.clone(), "r".into(), c.password.clone())
        .check(&mut m)
        .expect("re-signed with the client's key");
}

/// SPEC section 2: never 400 for credentials; the crate's 438 for its expired nonce becomes
/// our 438 + NONCE, and the crate's new nonce is used from then on (its table stays small).
#[test]
fn a_crate_nonce_challenge_is_replaced_with_ours_and_its_new_nonce_adopted() {
    let f = fixture(vec![]);
    f.teach_crate_nonce();
    let req = decode(&request(METHOD_ALLOCATE, vec![], None));
    let crate_438 = wire::error_response(&req, 438, Some(("crate-nonce-2", "r")), None);
    let Outbound::Replace(r) = f.crate_says(&crate_438, f.client) else {
        panic!("expected a replacement");
    };
    let r = decode(&r);
    assert_eq!(wire::error_code(&r), Some(438));
    let ours = wire::text(&r, ATTR_NONCE).expect("nonce");
    assert_ne!(ours, "crate-nonce-2");
    let c = mint(
        &SecretString::from(SECRET.to_string()),
        "alice",
        std::time::Duration::from_secs(600),
        NOW,
    );
    let out = f.client_packet(&request(
        METHOD_ALLOCATE,
        vec![Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        })],
        Some((&c.username, &c.password, &ours)),
    ));
    let Inbound::ToCrate(bytes) = out else {
        panic!("expected the crate to get it: {out:?}");
    };
    assert_eq!(
        wire::text(&decode(&bytes), ATTR_NONCE).as_deref(),
        Some("crate-nonce-2")
    );
}

/// A fixture whose client holds an allocation (the crate's success response replayed),
/// and the credential it used.
async fn allocated() -> (Fixture, switchboard_config::credentials::Credential, String) {
    allocated_on(false).await
}

async fn allocated_on(
    stream: bool,
) -> (Fixture, switchboard_config::credentials::Credential, String) {
    allocated_with(stream, |_| {}).await
}

/// The crate's success answer to `alloc_req`, with a relayed socket bound for it.
async fn crate_success_for(f: &Fixture, alloc_req: &[u8]) -> Message {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let relayed = socket.local_addr().expect("addr");
    f.gate
        .tables
        .add_slot(Arc::new(RelaySlot::new(socket, relayed)));
    let req = decode(alloc_req);
    let mut ok = Message::new();
    ok.build(&[
        Box::new(TransactionId(req.transaction_id.0)),
        Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_SUCCESS_RESPONSE)),
        Box::new(RelayedAddress {
            ip: relayed.ip(),
            port: relayed.port(),
        }),
    ])
    .expect("build");
    ok
}

async fn allocated_with(
    stream: bool,
    tweak: impl FnOnce(&mut GateConfig),
) -> (Fixture, switchboard_config::credentials::Credential, String) {
    let f = fixture_with(vec![], stream, tweak);
    f.teach_crate_nonce();
    let c = mint(
        &SecretString::from(SECRET.to_string()),
        "alice",
        std::time::Duration::from_secs(600),
        NOW,
    );
    let nonce = f.our_nonce();
    let auth = Some((c.username.as_str(), c.password.as_str(), nonce.as_str()));
    // Allocate, and let the "crate" answer with a relayed address we bound.
    let alloc_req = request(
        METHOD_ALLOCATE,
        vec![Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        })],
        auth,
    );
    assert!(matches!(f.client_packet(&alloc_req), Inbound::ToCrate(_)));
    let ok = crate_success_for(&f, &alloc_req).await;
    assert!(
        matches!(f.crate_says(&ok.raw, f.client), Outbound::Allocated),
        "an allocation success is forwarded and reported to the transport"
    );
    assert_eq!(f.gate.tables.allocations(), 1);
    (f, c, nonce)
}

/// RFC 8656 section 9.1 + SPEC section 3: any denied XOR-PEER-ADDRESS refuses the whole
/// CreatePermission with 403; an allowed one reaches the crate.
#[tokio::test]
async fn create_permission_naming_any_denied_peer_gets_403() {
    let (f, c, nonce) = allocated().await;
    let auth = Some((c.username.as_str(), c.password.as_str(), nonce.as_str()));

    let public = || PeerAddress {
        ip: "8.8.8.8".parse().expect("ip"),
        port: 9,
    };
    let private = PeerAddress {
        ip: "10.0.0.1".parse().expect("ip"),
        port: 9,
    };
    let out = f.client_packet(&request(
        METHOD_CREATE_PERMISSION,
        vec![Box::new(public()), Box::new(private)],
        auth,
    ));
    assert_eq!(reply_code(&out), Some(403));
    let out = f.client_packet(&request(
        METHOD_CREATE_PERMISSION,
        vec![Box::new(public())],
        auth,
    ));
    assert!(matches!(out, Inbound::ToCrate(_)), "{out:?}");
}

/// RFC 8656 section 7.4: when a stream client goes away, the crate gets a Refresh with
/// LIFETIME 0 signed with the Allocate's key and its own nonce, and deletes the allocation.
#[tokio::test]
async fn a_closed_stream_client_gets_its_allocation_released_by_a_signed_refresh() {
    let (f, c, _) = allocated_on(true).await;
    let bytes = f
        .gate
        .client_closed(f.transport.as_ref(), f.local, f.client)
        .expect("a release request");
    let mut m = decode(&bytes);
    assert_eq!(
        m.typ,
        MessageType::new(stun::message::METHOD_REFRESH, CLASS_REQUEST)
    );
    assert_eq!(
        m.get(stun::attributes::ATTR_LIFETIME).ok(),
        Some(vec![0; 4])
    );
    assert_eq!(wire::text(&m, ATTR_NONCE).as_deref(), Some("crate-nonce"));
    MessageIntegrity::new_long_term_integrity(c.username.clone(), "r".into(), c.password.clone())
        .check(&mut m)
        .expect("signed with the client's key");
    let stranger: SocketAddr = "198.51.100.99:1".parse().expect("addr");
    assert!(
        f.gate
            .client_closed(f.transport.as_ref(), f.local, stranger)
            .is_none()
    );
}

/// A UDP and a TCP listener may share an address and a UDP and a TCP client an ip:port: each
/// client finds only its own allocation, and releasing one leaves the other.
#[tokio::test]
async fn a_udp_and_a_stream_client_with_one_ip_port_keep_separate_allocations() {
    let local: SocketAddr = "127.0.0.1:3478".parse().expect("addr");
    let client: SocketAddr = "198.51.100.7:50000".parse().expect("addr");
    let tables = Tables::default();
    let mut slots = Vec::new();
    for stream in [false, true] {
        let transport: Arc<dyn ClientTransport> = Arc::new(FakeTransport(local, stream));
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let relayed = socket.local_addr().expect("addr");
        let slot = Arc::new(RelaySlot::new(socket, relayed));
        let key = ClientKey::new(transport.as_ref(), local, client);
        let state = Arc::new(AllocState::new(
            client,
            Arc::clone(&transport),
            worker(),
            key,
            if stream { "tcp-user" } else { "udp-user" }.into(),
        ));
        slot.state.set(Arc::clone(&state)).expect("fresh slot");
        tables.add_slot(Arc::clone(&slot));
        tables.insert(ClientKey::new(transport.as_ref(), local, client), state);
        slots.push(slot);
    }
    assert_eq!(tables.allocations(), 2);
    let key = |stream| ClientKey {
        stream,
        local,
        client,
    };
    let user = |stream| tables.get(&key(stream)).map(|a| a.user.clone());
    assert_eq!(user(false).as_deref(), Some("udp-user"));
    assert_eq!(user(true).as_deref(), Some("tcp-user"));
    tables.remove_slot(&slots[1]);
    assert_eq!(user(true), None);
    assert_eq!(user(false).as_deref(), Some("udp-user"));
}

mod hardening;

/// RFC 8656 section 7.2: a datagram retransmission of an Allocate still awaiting the
/// crate is dropped (the crate answers the first copy; a second copy would get a 437 once
/// the first made the allocation), and one sent after the allocation exists gets the
/// original success answer, byte for byte. Seen as a flake: under load a client's first
/// answer came late, its retransmission reached the crate and was answered 437.
#[tokio::test]
async fn a_retransmitted_allocate_is_dropped_in_flight_and_answered_with_the_original_success_after()
 {
    let f = fixture_with(vec![], false, |_| {});
    f.teach_crate_nonce();
    let c = mint(
        &SecretString::from(SECRET.to_string()),
        "alice",
        std::time::Duration::from_secs(600),
        NOW,
    );
    let nonce = f.our_nonce();
    let auth = Some((c.username.as_str(), c.password.as_str(), nonce.as_str()));
    let alloc_req = request(
        METHOD_ALLOCATE,
        vec![Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        })],
        auth,
    );
    assert!(matches!(f.client_packet(&alloc_req), Inbound::ToCrate(_)));
    assert!(
        matches!(f.client_packet(&alloc_req), Inbound::Drop),
        "a retransmission in flight is not handed to the crate again"
    );
    let ok = crate_success_for(&f, &alloc_req).await;
    assert!(matches!(
        f.crate_says(&ok.raw, f.client),
        Outbound::Allocated
    ));
    let Inbound::Reply(again) = f.client_packet(&alloc_req) else {
        panic!("a retransmission after the allocation gets a reply");
    };
    assert_eq!(again, ok.raw, "the original success answer");
    assert_eq!(f.gate.tables.allocations(), 1);
    // A new Allocate (another transaction id) on the same 5-tuple still goes to the crate,
    // which answers 437.
    let other = request(
        METHOD_ALLOCATE,
        vec![Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        })],
        auth,
    );
    assert!(matches!(f.client_packet(&other), Inbound::ToCrate(_)));
}
