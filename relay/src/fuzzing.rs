//! Harnesses of the fuzz targets in `fuzz/` (cargo fuzz), written as plain functions over
//! bytes so that the fuzz targets are one-liners and `tests/fuzz_corpus.rs` replays the
//! checked-in corpus and every regression through the same code on stable. Each harness
//! panics when an invariant fails. Not part of the relay's API.
//!
//! - [`client_packet`]: the gate's decision on one client packet, without and with an
//!   allocation (bound channel and permission included), over UDP and a stream, then the
//!   same bytes as if the crate had sent them; requests are also re-signed with a valid
//!   credential so that the fuzzer reaches the decisions behind MESSAGE-INTEGRITY.
//! - [`stream_framer`]: the TCP/TLS framer fed arbitrary chunks, against a reference model.
//! - [`stun_attributes`]: the attribute helpers of [`crate::wire`].
//!
//! [`seeds`] builds the messages of the seed corpus (with the harness's credentials, so
//! the fuzzer starts past authentication).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use secrecy::SecretString;
use stun::agent::TransactionId;
use stun::attributes::{
    ATTR_FINGERPRINT, ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_SOFTWARE, ATTR_USERNAME,
    ATTR_XOR_PEER_ADDRESS,
};
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE,
    METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_REFRESH, Message, MessageType, Setter,
};
use stun::textattrs::TextAttribute;
use switchboard_config::Secrets;
use switchboard_config::credentials::mint;
use tokio::net::UdpSocket;

use crate::control::auth::{Credentials, long_term_key};
use crate::control::gate::{Gate, GateConfig, Inbound, Outbound, SYNTHETIC_CLIENT};
use crate::control::nonce::NonceIssuer;
use crate::control::tables::{AllocState, RelaySlot};
use crate::dataplane::WorkerShared;
use crate::dataplane::forward::{self, Decision};
use crate::metrics::Metrics;
use crate::policy::PeerPolicy;
use crate::transport::framing::{
    CHANNEL_DATA_HEADER_LEN, FrameKind, Framer, FramingError, MAGIC_COOKIE, MAX_CHANNEL,
    MAX_MESSAGE_LEN, MIN_CHANNEL, STUN_HEADER_LEN, encode_for_stream, padded_len,
};
use crate::transport::{ClientTransport, Received};
use crate::wire;

/// The harness's clock: every credential and nonce is made for this instant.
pub const NOW: u64 = 1_800_000_000;
pub const SECRET: &str = "fuzz-secret";
pub const REALM: &str = "switchboard";
pub const USER: &str = "alice";
/// The nonce the fake crate hands out (and expects).
pub const CRATE_NONCE: &str = "crate-nonce";
/// The channel the allocation fixture binds to [`PEER`].
pub const CHANNEL: u16 = 0x4000;
const NONCE_KEY: [u8; 32] = [7; 32];
const LISTENER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)), 3478);
/// The client every packet comes from.
pub const CLIENT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 20)), 40000);
/// The relayed address the fake crate hands out (`external_ip`:port of the one slot).
pub const RELAYED_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10)), 50000);
/// The peer the allocation fixture has a permission and a channel for.
pub const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(8, 8, 8, 8)), 5000);

/// A listener that never does I/O; `stream` = a TCP/TLS listener.
#[derive(Debug)]
struct FakeTransport {
    stream: bool,
}

#[async_trait]
impl ClientTransport for FakeTransport {
    async fn recv(&self, _buf: &mut [u8]) -> std::io::Result<Received> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
    async fn send_to(&self, buf: &[u8], _client: SocketAddr) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(LISTENER)
    }
    fn is_stream(&self) -> bool {
        self.stream
    }
}

/// The runtime the relayed socket is registered with (it never does I/O: the relay becomes
/// sans-IO in a later issue, and then this goes).
static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("a runtime for the fuzz harness")
});

/// One relayed socket, bound once and shared by every fixture (advertised as
/// [`RELAYED_ADDR`] whatever port it got).
static RELAYED: LazyLock<Arc<UdpSocket>> = LazyLock::new(|| {
    let std = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind the relayed socket");
    std.set_nonblocking(true).expect("non-blocking socket");
    let _guard = RUNTIME.enter();
    Arc::new(UdpSocket::from_std(std).expect("register the relayed socket"))
});

static METRICS: LazyLock<Arc<Metrics>> = LazyLock::new(|| Arc::new(Metrics::new()));

static GATE_CONFIG: LazyLock<GateConfig> = LazyLock::new(|| GateConfig {
    realm: REALM.into(),
    policy: PeerPolicy::new(
        vec![],
        vec![],
        vec![LISTENER],
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST), RELAYED_ADDR.ip()],
    ),
    max_allocations: 10,
    max_allocations_per_user: 2,
    bytes_per_second: None,
    unauth_requests_per_second: 5,
    max_permissions_per_allocation: 4,
    pending_cap: 16,
    strict_expiry: true,
});

/// The harness user's credential, our nonce for it and its long-term key, made once.
struct Auth {
    credential: switchboard_config::credentials::Credential,
    nonce: String,
    key: Vec<u8>,
}

static AUTH: LazyLock<Auth> = LazyLock::new(|| {
    let credential = mint(&secret(), USER, Duration::from_secs(600), NOW);
    let key = long_term_key(&secret(), &credential.username, REALM);
    Auth {
        credential,
        nonce: NonceIssuer::new(NONCE_KEY).issue(CLIENT.ip(), NOW),
        key,
    }
});

/// The harness user's REST credential (valid at [`NOW`]).
#[must_use]
pub fn credential() -> switchboard_config::credentials::Credential {
    AUTH.credential.clone()
}

fn secret() -> SecretString {
    SecretString::from(SECRET.to_string())
}

/// Our NONCE for [`CLIENT`] at [`NOW`], as the harness's gate issues it.
#[must_use]
pub fn nonce() -> String {
    AUTH.nonce.clone()
}

/// The long-term key of the harness user.
fn key() -> Vec<u8> {
    AUTH.key.clone()
}

/// The seed corpus: named messages built with the harness's credentials.
pub mod seeds {
    use turn::proto::PROTO_UDP;
    use turn::proto::channum::ChannelNumber;
    use turn::proto::data::Data;
    use turn::proto::lifetime::Lifetime;
    use turn::proto::peeraddr::PeerAddress;
    use turn::proto::relayaddr::RelayedAddress;
    use turn::proto::reqtrans::RequestedTransport;

    use super::*;

    /// A message of `method`/`class` with transaction id `[tid; 12]` and these attributes,
    /// signed as the harness user when `auth` is true.
    fn message(
        method: stun::message::Method,
        class: stun::message::MessageClass,
        tid: u8,
        mut attrs: Vec<Box<dyn Setter>>,
        auth: bool,
    ) -> Vec<u8> {
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId([tid; 12])),
            Box::new(MessageType::new(method, class)),
        ];
        setters.append(&mut attrs);
        if auth {
            let c = credential();
            setters.push(Box::new(TextAttribute::new(ATTR_USERNAME, c.username)));
            setters.push(Box::new(TextAttribute::new(ATTR_REALM, REALM.into())));
            setters.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce())));
            setters.push(Box::new(MessageIntegrity(key())));
        }
        let mut m = Message::new();
        m.build(&setters).expect("a seed message builds");
        m.raw
    }

    fn peer(addr: SocketAddr) -> Box<dyn Setter> {
        Box::new(PeerAddress {
            ip: addr.ip(),
            port: addr.port(),
        })
    }

    fn udp() -> Box<dyn Setter> {
        Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        })
    }

    /// Signed Allocate (transaction id 1).
    #[must_use]
    pub fn allocate() -> Vec<u8> {
        message(METHOD_ALLOCATE, CLASS_REQUEST, 1, vec![udp()], true)
    }

    /// The crate's success response to [`allocate`], naming `relayed`.
    #[must_use]
    pub fn allocate_success(relayed: SocketAddr) -> Vec<u8> {
        let attrs: Vec<Box<dyn Setter>> = vec![Box::new(RelayedAddress {
            ip: relayed.ip(),
            port: relayed.port(),
        })];
        message(METHOD_ALLOCATE, CLASS_SUCCESS_RESPONSE, 1, attrs, false)
    }

    /// Signed CreatePermission for [`PEER`] (transaction id 2).
    #[must_use]
    pub fn create_permission() -> Vec<u8> {
        message(
            METHOD_CREATE_PERMISSION,
            CLASS_REQUEST,
            2,
            vec![peer(PEER)],
            true,
        )
    }

    /// Signed ChannelBind of [`CHANNEL`] to [`PEER`] (transaction id 3).
    #[must_use]
    pub fn channel_bind() -> Vec<u8> {
        let attrs: Vec<Box<dyn Setter>> = vec![Box::new(ChannelNumber(CHANNEL)), peer(PEER)];
        message(METHOD_CHANNEL_BIND, CLASS_REQUEST, 3, attrs, true)
    }

    /// A bare success response of `method` for transaction id `tid`.
    #[must_use]
    pub fn success(method: stun::message::Method, tid: u8) -> Vec<u8> {
        message(method, CLASS_SUCCESS_RESPONSE, tid, vec![], false)
    }

    fn error(method: stun::message::Method, tid: u8, code: u16, nonce: Option<&str>) -> Vec<u8> {
        let Some(req) = wire::parse(&message(method, CLASS_REQUEST, tid, vec![], false)) else {
            return Vec::new();
        };
        wire::error_response(&req, code, nonce.map(|n| (n, REALM)), None)
    }

    /// Every seed of `relay_client_packet` and `stun_attributes`: (file name, bytes).
    #[must_use]
    pub fn client_packets() -> Vec<(&'static str, Vec<u8>)> {
        let denied = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 9);
        let other = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(8, 8, 4, 4)), 6000);
        let v6 = "[2606:4700::1111]:443".parse().unwrap_or(PEER);
        let lifetime = |s| -> Box<dyn Setter> { Box::new(Lifetime(Duration::from_secs(s))) };
        let send_attrs =
            || -> Vec<Box<dyn Setter>> { vec![peer(PEER), Box::new(Data(b"hello peer".to_vec()))] };
        let mut channel_data = Vec::new();
        wire::encode_channel_data(CHANNEL, b"hello over a channel", &mut channel_data)
            .expect("fixture: ChannelData");
        let mut data_v4 = Vec::new();
        wire::encode_data_indication(PEER, b"from the peer", [4; 12], &mut data_v4)
            .expect("fixture: Data indication");
        let mut data_v6 = Vec::new();
        wire::encode_data_indication(v6, b"from a v6 peer", [5; 12], &mut data_v6)
            .expect("fixture: Data indication");
        vec![
            (
                "binding-request",
                message(
                    stun::message::METHOD_BINDING,
                    CLASS_REQUEST,
                    9,
                    vec![],
                    false,
                ),
            ),
            (
                "binding-request-software-fingerprint",
                message(
                    stun::message::METHOD_BINDING,
                    CLASS_REQUEST,
                    10,
                    vec![
                        Box::new(TextAttribute::new(ATTR_SOFTWARE, "fuzz seed".into())),
                        Box::new(stun::fingerprint::FINGERPRINT),
                    ],
                    false,
                ),
            ),
            (
                "allocate-unauthenticated",
                message(METHOD_ALLOCATE, CLASS_REQUEST, 11, vec![udp()], false),
            ),
            ("allocate", allocate()),
            ("allocate-success", allocate_success(RELAYED_ADDR)),
            (
                "allocate-success-v6",
                allocate_success("[2001:db8::5]:50000".parse().unwrap_or(PEER)),
            ),
            (
                "refresh",
                message(METHOD_REFRESH, CLASS_REQUEST, 12, vec![lifetime(600)], true),
            ),
            (
                "refresh-release",
                message(METHOD_REFRESH, CLASS_REQUEST, 13, vec![lifetime(0)], true),
            ),
            ("create-permission", create_permission()),
            (
                "create-permission-denied-peer",
                message(
                    METHOD_CREATE_PERMISSION,
                    CLASS_REQUEST,
                    14,
                    vec![peer(other), peer(denied)],
                    true,
                ),
            ),
            (
                "create-permission-v6",
                message(
                    METHOD_CREATE_PERMISSION,
                    CLASS_REQUEST,
                    15,
                    vec![peer(v6)],
                    true,
                ),
            ),
            ("channel-bind", channel_bind()),
            (
                "channel-bind-other-peer",
                message(
                    METHOD_CHANNEL_BIND,
                    CLASS_REQUEST,
                    16,
                    vec![Box::new(ChannelNumber(0x4001)), peer(other)],
                    true,
                ),
            ),
            (
                "send-indication",
                message(
                    stun::message::METHOD_SEND,
                    stun::message::CLASS_INDICATION,
                    17,
                    send_attrs(),
                    false,
                ),
            ),
            ("channel-data", channel_data),
            ("data-indication", data_v4),
            ("data-indication-v6", data_v6),
            (
                "crate-401-with-nonce",
                error(METHOD_ALLOCATE, 1, 401, Some("crate-nonce-2")),
            ),
            (
                "crate-438-with-nonce",
                error(METHOD_REFRESH, 12, 438, Some("crate-nonce-3")),
            ),
            ("crate-403", error(METHOD_CREATE_PERMISSION, 14, 403, None)),
            (
                "crate-permission-success",
                success(METHOD_CREATE_PERMISSION, 2),
            ),
        ]
    }

    /// The seeds of `stream_framer`: the signed client messages in their stream form, one
    /// after the other, cut into chunks of 1, 7 and 255 bytes (the harness's input format:
    /// a settings byte, then chunks each led by its length byte).
    #[must_use]
    pub fn streams() -> Vec<(&'static str, Vec<u8>)> {
        let mut channel_data = Vec::new();
        wire::encode_channel_data(CHANNEL, b"odd", &mut channel_data).expect("fixture: odd");
        let session = [
            allocate(),
            create_permission(),
            channel_bind(),
            channel_data.clone(),
            message(METHOD_REFRESH, CLASS_REQUEST, 13, vec![], true),
        ];
        let mut wire_bytes = BytesMut::new();
        for m in &session {
            encode_for_stream(m, &mut wire_bytes);
        }
        let chunked = |settings: u8, size: usize| {
            let mut out = vec![settings];
            for c in wire_bytes.chunks(size) {
                out.push(u8::try_from(c.len()).unwrap_or(u8::MAX));
                out.extend_from_slice(c);
            }
            out
        };
        let mut padded = BytesMut::new();
        encode_for_stream(&channel_data, &mut padded);
        let mut garbage = vec![0x00, 8];
        garbage.extend_from_slice(b"GET / HT");
        vec![
            ("session-chunks-255", chunked(0x00, 255)),
            ("session-chunks-7", chunked(0x00, 7)),
            ("session-chunks-1", chunked(0x00, 1)),
            // 0x80 | 10: a 160-byte limit, which the signed requests exceed.
            ("session-small-limit", chunked(0x8A, 64)),
            (
                "channel-data-padding-split",
                [&[0x00, 7][..], &padded[..7], &[1], &padded[7..]].concat(),
            ),
            ("http-garbage", garbage),
        ]
    }
}

/// A gate as the relay builds it, optionally with an allocation for [`CLIENT`] holding a
/// permission for [`PEER`] and [`CHANNEL`] bound to it, made by replaying the requests
/// and the crate's answers.
struct World {
    gate: Gate,
    worker: Arc<WorkerShared>,
    transport: Arc<dyn ClientTransport>,
    alloc: Option<Arc<AllocState>>,
    t0: Instant,
}

/// What the relay does with one client packet: the data plane's relay, or the gate's
/// decision on what the data plane handed it.
#[derive(Debug)]
enum Out {
    Gate(Inbound),
    ToPeer {
        peer: SocketAddr,
        start: usize,
        len: usize,
    },
}

/// The fixture's request bytes, built once.
struct Script {
    allocate: Vec<u8>,
    allocate_ok: Vec<u8>,
    permission: Vec<u8>,
    permission_ok: Vec<u8>,
    bind: Vec<u8>,
    bind_ok: Vec<u8>,
    crate_challenge: Vec<u8>,
}

static SCRIPT: LazyLock<Script> = LazyLock::new(|| {
    let probe = wire::parse(&Gate::synthetic_request()).expect("synthetic request parses");
    Script {
        allocate: seeds::allocate(),
        allocate_ok: seeds::allocate_success(RELAYED_ADDR),
        permission: seeds::create_permission(),
        permission_ok: seeds::success(METHOD_CREATE_PERMISSION, 2),
        bind: seeds::channel_bind(),
        bind_ok: seeds::success(METHOD_CHANNEL_BIND, 3),
        crate_challenge: wire::error_response(&probe, 401, Some((CRATE_NONCE, REALM)), None),
    }
});

static SECRETS: OnceLock<Secrets> = OnceLock::new();

impl World {
    fn new(with_allocation: bool, stream: bool) -> Self {
        let secrets = SECRETS
            .get_or_init(|| Secrets::new(vec![secret()]).expect("one secret"))
            .clone();
        let gate = Gate::new(
            GATE_CONFIG.clone(),
            Arc::new(Credentials::new(secrets)),
            NONCE_KEY,
            Arc::clone(&METRICS),
        );
        let mut w = Self {
            gate,
            worker: WorkerShared::detached(0, RUNTIME.handle().clone()),
            transport: Arc::new(FakeTransport { stream }),
            alloc: None,
            t0: Instant::now(),
        };
        let s = &*SCRIPT;
        let taught = w.gate.handle_crate_output(
            &w.worker,
            w.transport.as_ref(),
            LISTENER,
            &s.crate_challenge,
            SYNTHETIC_CLIENT,
            w.t0,
            NOW,
        );
        assert!(matches!(taught, Outbound::Swallow), "fixture: crate nonce");
        // The relayed socket the crate would bind for the next Allocate.
        w.gate.tables.add_slot(Arc::new(RelaySlot {
            socket: Arc::clone(&RELAYED),
            advertised: RELAYED_ADDR,
            state: OnceLock::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
            close_notify: tokio::sync::Notify::new(),
        }));
        if with_allocation {
            w.expect_to_crate(&s.allocate);
            w.crate_says(&s.allocate_ok);
            w.alloc = w
                .gate
                .tables
                .slot_by_port(RELAYED_ADDR.port())
                .and_then(|slot| slot.state.get().cloned());
            assert!(w.alloc.is_some(), "fixture: allocation recorded");
            w.expect_to_crate(&s.permission);
            w.crate_says(&s.permission_ok);
            w.expect_to_crate(&s.bind);
            w.crate_says(&s.bind_ok);
            let key =
                crate::control::tables::ClientKey::new(w.transport.as_ref(), LISTENER, CLIENT);
            let channel = w
                .worker
                .table()
                .get(&key)
                .and_then(|e| e.channel_peer(CHANNEL, w.t0));
            assert_eq!(channel, Some(PEER), "fixture: channel");
        }
        w
    }

    /// The data plane's decision on `packet` from [`CLIENT`], then the gate's on what it
    /// hands to the control plane (as `dataplane::worker` does).
    fn client(&self, packet: &[u8]) -> Out {
        let key = crate::control::tables::ClientKey::new(self.transport.as_ref(), LISTENER, CLIENT);
        let control = {
            let mut table = self.worker.table();
            match forward::decide(&mut table, &key, packet, self.t0, |p| {
                self.gate.peer_allowed(p)
            }) {
                Decision::ToPeer {
                    peer, start, len, ..
                } => return Out::ToPeer { peer, start, len },
                Decision::Control(m) => m,
                _ => return Out::Gate(Inbound::Drop),
            }
        };
        Out::Gate(self.gate.handle_control(
            &control,
            &self.transport,
            LISTENER,
            CLIENT,
            self.t0,
            NOW,
        ))
    }

    fn expect_to_crate(&self, packet: &[u8]) {
        let out = self.client(packet);
        assert!(
            matches!(out, Out::Gate(Inbound::ToCrate(_))),
            "fixture: {out:?}"
        );
    }

    fn crate_says(&self, packet: &[u8]) {
        let out = self.gate.handle_crate_output(
            &self.worker,
            self.transport.as_ref(),
            LISTENER,
            packet,
            CLIENT,
            self.t0,
            NOW,
        );
        assert!(
            matches!(out, Outbound::Forward | Outbound::Allocated),
            "fixture: {out:?}"
        );
    }

    /// What must hold of any decision on `packet`.
    fn check_inbound(&self, packet: &[u8], out: &Out) {
        match out {
            Out::Gate(Inbound::Drop) => {}
            Out::Gate(Inbound::Reply(bytes)) => {
                let r = wire::parse(bytes).expect("a reply is a STUN message");
                let req = wire::parse(packet).expect("only STUN requests are answered");
                assert_eq!(
                    r.transaction_id, req.transaction_id,
                    "reply to this transaction"
                );
                assert_eq!(
                    r.typ.method, req.typ.method,
                    "reply of the request's method"
                );
                assert!(
                    r.typ.class == CLASS_SUCCESS_RESPONSE || r.typ.class == CLASS_ERROR_RESPONSE,
                    "a reply is a response"
                );
            }
            Out::Gate(Inbound::ToCrate(bytes)) => {
                let mut m = wire::parse(bytes).expect("the crate gets STUN");
                assert_eq!(m.typ.class, CLASS_REQUEST, "the crate gets requests only");
                assert_eq!(wire::text(&m, ATTR_NONCE).as_deref(), Some(CRATE_NONCE));
                let username = wire::text(&m, ATTR_USERNAME).expect("a USERNAME");
                let realm = wire::text(&m, ATTR_REALM).expect("a REALM");
                MessageIntegrity(long_term_key(&secret(), &username, &realm))
                    .check(&mut m)
                    .expect("signed with a key of a configured secret");
            }
            Out::ToPeer { peer, start, len } => {
                let end = start.checked_add(*len).expect("no overflow");
                assert!(end <= packet.len(), "payload inside the packet");
                assert!(
                    self.gate.peer_allowed(*peer),
                    "never relayed to a denied peer"
                );
                let own = self
                    .alloc
                    .as_ref()
                    .expect("relayed only with an allocation");
                assert!(
                    own.has_permission(peer.ip(), self.t0),
                    "only to a permitted peer"
                );
                let key = crate::control::tables::ClientKey::new(
                    self.transport.as_ref(),
                    LISTENER,
                    CLIENT,
                );
                assert!(
                    self.worker
                        .table()
                        .get(&key)
                        .is_some_and(|e| e.has_permission(peer.ip(), self.t0)),
                    "the data plane's permission agrees"
                );
            }
        }
    }

    /// What must hold of the crate-output decision on `packet` sent to [`CLIENT`].
    fn check_outbound(packet: &[u8], out: &Outbound) {
        match out {
            Outbound::Forward => {}
            Outbound::Allocated => {
                let m = wire::parse(packet).expect("only STUN is an allocation");
                assert_eq!(m.typ.method, METHOD_ALLOCATE, "only an Allocate answer");
                assert_eq!(
                    m.typ.class, CLASS_SUCCESS_RESPONSE,
                    "only a success allocates"
                );
            }
            Outbound::Swallow => panic!("only the synthetic client's answers are swallowed"),
            Outbound::Replace(bytes) => {
                let r = wire::parse(bytes).expect("a replacement is STUN");
                let orig = wire::parse(packet).expect("only STUN is replaced");
                assert_eq!(r.transaction_id, orig.transaction_id);
                match wire::error_code(&r) {
                    // The crate's own challenge, swapped for ours.
                    Some(438) => {
                        assert!(wire::text(&r, ATTR_NONCE).is_some_and(|n| n != CRATE_NONCE));
                    }
                    // An Allocate success our layer does not follow is never passed on.
                    Some(508) => {
                        assert_eq!(orig.typ.method, METHOD_ALLOCATE, "508 only for Allocate");
                        assert_eq!(orig.typ.class, CLASS_SUCCESS_RESPONSE);
                    }
                    other => panic!("unexpected replacement {other:?}"),
                }
            }
        }
    }
}

/// `packet` re-signed as the harness user with our nonce: every attribute before
/// MESSAGE-INTEGRITY/FINGERPRINT kept in order except USERNAME, REALM and NONCE, which
/// are replaced. `None` unless it is a request the gate authenticates.
fn resign(packet: &[u8]) -> Option<Vec<u8>> {
    let m = wire::parse(packet)?;
    let authenticated = [
        METHOD_ALLOCATE,
        METHOD_REFRESH,
        METHOD_CREATE_PERMISSION,
        METHOD_CHANNEL_BIND,
    ];
    if m.typ.class != CLASS_REQUEST || !authenticated.contains(&m.typ.method) {
        return None;
    }
    // Room for our three attributes and MESSAGE-INTEGRITY within the 16-bit length.
    if packet.len() > 60_000 {
        return None;
    }
    let mut out = Message::new();
    out.typ = m.typ;
    out.transaction_id = m.transaction_id;
    out.write_header();
    for a in &m.attributes.0 {
        if a.typ == ATTR_MESSAGE_INTEGRITY || a.typ == ATTR_FINGERPRINT {
            break;
        }
        if a.typ != ATTR_USERNAME && a.typ != ATTR_REALM && a.typ != ATTR_NONCE {
            out.add(a.typ, &a.value);
        }
    }
    out.add(ATTR_USERNAME, credential().username.as_bytes());
    out.add(ATTR_REALM, REALM.as_bytes());
    out.add(ATTR_NONCE, nonce().as_bytes());
    MessageIntegrity(key()).add_to(&mut out).ok()?;
    Some(out.raw)
}

/// The crate's answer to the request `sent` (as the gate handed it over), made of the
/// fuzzer's bytes: the attributes of `packet` under the request's transaction id, as a
/// success or (when the first transaction id byte is odd) an error response.
fn crate_answer(sent: &[u8], packet: &[u8]) -> Option<Vec<u8>> {
    let req = wire::parse(sent)?;
    let body = wire::parse(packet)?;
    let class = if body.transaction_id.0[0] & 1 == 0 {
        CLASS_SUCCESS_RESPONSE
    } else {
        CLASS_ERROR_RESPONSE
    };
    let mut out = Message::new();
    out.typ = MessageType::new(req.typ.method, class);
    out.transaction_id = req.transaction_id;
    out.write_header();
    for a in &body.attributes.0 {
        out.add(a.typ, &a.value);
    }
    (out.raw.len() <= 20 + usize::from(u16::MAX)).then_some(out.raw)
}

/// The gate's decision on `packet` from [`CLIENT`] over UDP, without or with the
/// allocation fixture: `"drop"`, `"reply"`, `"to-crate"` or `"to-peer"` (for tests of the
/// seeds).
#[must_use]
pub fn decision(packet: &[u8], with_allocation: bool) -> &'static str {
    match World::new(with_allocation, false).client(packet) {
        Out::Gate(Inbound::Drop) => "drop",
        Out::Gate(Inbound::Reply(_)) => "reply",
        Out::Gate(Inbound::ToCrate(_)) => "to-crate",
        Out::ToPeer { .. } => "to-peer",
    }
}

/// The gate's decisions on one client packet; panics when an invariant fails.
pub fn client_packet(packet: &[u8]) {
    for (with_allocation, stream) in [(false, false), (false, true), (true, false)] {
        let w = World::new(with_allocation, stream);
        let out = w.client(packet);
        w.check_inbound(packet, &out);
        // The same bytes as if the crate had sent them to the client.
        let out = w.gate.handle_crate_output(
            &w.worker,
            w.transport.as_ref(),
            LISTENER,
            packet,
            CLIENT,
            w.t0,
            NOW,
        );
        World::check_outbound(packet, &out);
    }
    let Some(signed) = resign(packet) else {
        return;
    };
    for with_allocation in [false, true] {
        let w = World::new(with_allocation, true);
        let out = w.client(&signed);
        w.check_inbound(&signed, &out);
        let Out::Gate(Inbound::ToCrate(sent)) = out else {
            continue;
        };
        let Some(answer) = crate_answer(&sent, packet) else {
            continue;
        };
        let out = w.gate.handle_crate_output(
            &w.worker,
            w.transport.as_ref(),
            LISTENER,
            &answer,
            CLIENT,
            w.t0,
            NOW,
        );
        World::check_outbound(&answer, &out);
        // Whatever the crate answered, no permission or channel to a denied peer exists.
        let alloc = w.alloc.clone().or_else(|| {
            let key =
                crate::control::tables::ClientKey::new(w.transport.as_ref(), LISTENER, CLIENT);
            w.gate.tables.get(&key)
        });
        let (Some(alloc), Some(m)) = (alloc, wire::parse(&signed)) else {
            continue;
        };
        let table = w.worker.table();
        let entry = table.get(&alloc.key);
        for p in wire::peer_addresses(&m).unwrap_or_default() {
            let data_permits = entry.is_some_and(|e| e.has_permission(p.ip(), w.t0));
            assert_eq!(
                data_permits,
                alloc.has_permission(p.ip(), w.t0),
                "the data plane and the gate agree on permissions"
            );
            if data_permits {
                assert!(
                    w.gate.peer_allowed(p),
                    "permission installed for denied peer {p}"
                );
            }
            if let Some(n) = entry.and_then(|e| e.channel_of(p, w.t0)) {
                assert!(
                    w.gate.peer_allowed(p),
                    "channel {n:#x} bound to denied peer {p}"
                );
                assert_eq!(
                    entry.and_then(|e| e.channel_peer(n, w.t0)),
                    Some(p),
                    "channel tables agree"
                );
            }
        }
    }
}

/// Splits the harness input into (max message length, chunks): the first byte picks the
/// limit (below 0x80: the default; else 16 × its low 7 bits), then each chunk is led by
/// its length byte (the last one takes what is left).
fn framer_input(data: &[u8]) -> (usize, Vec<&[u8]>) {
    let Some((&settings, mut rest)) = data.split_first() else {
        return (MAX_MESSAGE_LEN, Vec::new());
    };
    let max = if settings < 0x80 {
        MAX_MESSAGE_LEN
    } else {
        usize::from(settings & 0x7F) * 16
    };
    let mut chunks = Vec::new();
    while let Some((&n, tail)) = rest.split_first() {
        let n = usize::from(n).min(tail.len());
        let (chunk, next) = tail.split_at(n);
        chunks.push(chunk);
        rest = next;
    }
    (max, chunks)
}

/// What a reference reading of the whole stream at once gives.
#[derive(Debug, PartialEq, Eq)]
enum Reference {
    /// Every complete message was read; this many bytes of a partial one remain.
    Partial(usize),
    Failed(FramingError),
}

/// RFC 8656 section 12.5 read straight off the whole stream: (kind, message) pairs and how
/// the stream ends. Written independently of [`Framer`] (no buffering, no state).
fn reference_frames(stream: &[u8], max: usize) -> (Vec<(FrameKind, Vec<u8>)>, Reference) {
    let mut frames = Vec::new();
    let mut pos = 0;
    let u16_at = |at: usize| {
        stream
            .get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    let too_large = |len: usize| Reference::Failed(FramingError::TooLarge { len, max });
    while let Some(&first) = stream.get(pos) {
        let partial = Reference::Partial(stream.len() - pos);
        match first >> 6 {
            0 => {
                let Some(len) = u16_at(pos + 2) else {
                    return (frames, partial);
                };
                if len % 4 != 0 {
                    let len = u16::try_from(len).unwrap_or(u16::MAX);
                    return (
                        frames,
                        Reference::Failed(FramingError::UnalignedStunLength(len)),
                    );
                }
                let total = STUN_HEADER_LEN + len;
                if total > max {
                    return (frames, too_large(total));
                }
                let Some(c) = stream.get(pos + 4..pos + 8) else {
                    return (frames, partial);
                };
                let cookie = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                if cookie != MAGIC_COOKIE {
                    return (
                        frames,
                        Reference::Failed(FramingError::BadMagicCookie(cookie)),
                    );
                }
                let Some(m) = stream.get(pos..pos + total) else {
                    return (frames, partial);
                };
                frames.push((FrameKind::Stun, m.to_vec()));
                pos += total;
            }
            1 => {
                let (Some(channel), Some(len)) = (u16_at(pos), u16_at(pos + 2)) else {
                    return (frames, partial);
                };
                let total = CHANNEL_DATA_HEADER_LEN + len;
                if total > max {
                    return (frames, too_large(total));
                }
                let Some(m) = stream.get(pos..pos + total) else {
                    return (frames, partial);
                };
                let channel = u16::try_from(channel).unwrap_or(u16::MAX);
                frames.push((FrameKind::ChannelData { channel }, m.to_vec()));
                pos = (pos + padded_len(total)).min(stream.len());
            }
            _ => {
                return (
                    frames,
                    Reference::Failed(FramingError::UnknownMessage(first)),
                );
            }
        }
    }
    (frames, Reference::Partial(0))
}

/// The stream framer on arbitrary chunks: it yields exactly what a reference reading of
/// the whole stream yields, whatever the chunking; no frame exceeds the limit; garbage
/// is an error that sticks; at most one partial message is buffered.
pub fn stream_framer(data: &[u8]) {
    let (max, chunks) = framer_input(data);
    let mut framer = Framer::with_max_message_len(max);
    let mut frames = Vec::new();
    let mut failed = None;
    'feed: for chunk in &chunks {
        framer.push(chunk);
        loop {
            match framer.poll_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.as_bytes().len() <= max, "frame over the limit");
                    frames.push(frame);
                }
                Ok(None) => break,
                Err(e) => {
                    failed = Some(e);
                    break 'feed;
                }
            }
        }
        // Only a partial message is ever held (a slow client cannot make it grow).
        assert!(
            framer.buffered_len() < max.max(CHANNEL_DATA_HEADER_LEN).max(STUN_HEADER_LEN),
            "buffered {} bytes with a limit of {max}",
            framer.buffered_len()
        );
    }
    let stream: Vec<u8> = chunks.concat();
    let (expected, end) = reference_frames(&stream, max);
    let got: Vec<(FrameKind, Vec<u8>)> = frames
        .iter()
        .map(|f| (f.kind(), f.as_bytes().to_vec()))
        .collect();
    assert_eq!(got, expected, "the frames of the whole stream, in order");
    match (end, failed) {
        (Reference::Failed(want), Some(e)) => {
            assert_eq!(e, want, "the stream's first error");
            assert_eq!(framer.poll_frame(), Err(e), "an error sticks");
            assert_eq!(framer.buffered_len(), 0, "nothing kept after an error");
        }
        (Reference::Partial(left), None) => {
            assert_eq!(framer.buffered_len(), left, "the partial message is kept");
        }
        (end, failed) => panic!("reference ends {end:?}, framer with {failed:?}"),
    }
    for f in &frames {
        let FrameKind::ChannelData { channel } = f.kind() else {
            continue;
        };
        assert!((MIN_CHANNEL..=MAX_CHANNEL).contains(&channel));
        // Re-encoding a frame for the stream and framing it again gives it back.
        let mut again = Framer::new();
        let mut out = BytesMut::new();
        encode_for_stream(f.as_bytes(), &mut out);
        assert_eq!(out.len() % 4, 0, "stream form is padded");
        again.push(&out);
        assert_eq!(again.poll_frame(), Ok(Some(f.clone())));
        assert_eq!(again.buffered_len(), 0);
    }
}

/// The attribute helpers of [`crate::wire`] on arbitrary bytes, with round trips through
/// our own encoders.
pub fn stun_attributes(data: &[u8]) {
    if let Some((number, start, len)) = wire::channel_data(data) {
        assert!(wire::looks_like_channel_data(data));
        assert_eq!(number >> 14, 1, "channel numbers start 0b01");
        assert!(start + len <= data.len(), "payload inside the packet");
    }
    let Some(m) = wire::parse(data) else {
        return;
    };
    assert!(data.len() >= STUN_HEADER_LEN);
    assert_eq!(m.transaction_id.0[..], data[8..20]);
    for t in [ATTR_USERNAME, ATTR_REALM, ATTR_NONCE, ATTR_SOFTWARE] {
        if let Some(s) = wire::text(&m, t) {
            assert_eq!(Some(s.into_bytes()), m.get(t).ok());
        }
    }
    let peers = wire::peer_addresses(&m);
    let every = m
        .attributes
        .0
        .iter()
        .filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS)
        .count();
    if let Some(peers) = &peers {
        assert_eq!(peers.len(), every, "one address per XOR-PEER-ADDRESS");
        for p in peers {
            let mut out = Vec::new();
            wire::encode_data_indication(*p, b"x", m.transaction_id.0, &mut out)
                .expect("a one-byte Data indication fits");
            let d = wire::parse(&out).expect("our Data indication parses");
            assert_eq!(
                wire::peer_addresses(&d),
                Some(vec![*p]),
                "address round trip"
            );
        }
    }
    if let Some(relayed) = wire::relayed_address(&m) {
        let ok = seeds::allocate_success(relayed);
        let back = wire::parse(&ok).expect("our success response parses");
        assert_eq!(wire::relayed_address(&back), Some(relayed));
    }
    let _ = wire::error_code(&m);
    let key = b"0123456789abcdef";
    for code in [401, 403, 437, 438, 486, 508] {
        let r = wire::error_response(&m, code, Some(("n", REALM)), Some(key));
        let mut r = wire::parse(&r).expect("our error response parses");
        assert_eq!(r.transaction_id, m.transaction_id);
        assert_eq!(r.typ.method, m.typ.method);
        assert_eq!(wire::error_code(&r), Some(code));
        MessageIntegrity(key.to_vec())
            .check(&mut r)
            .expect("signed error response");
    }
    let binding = wire::binding_success(&m, CLIENT);
    let binding = wire::parse(&binding).expect("our binding response parses");
    assert_eq!(binding.transaction_id, m.transaction_id);
    check_with_nonce(&m, key);
}

/// [`wire::with_nonce`]: the attributes before MESSAGE-INTEGRITY/FINGERPRINT in order, the
/// NONCE replaced, then MESSAGE-INTEGRITY with the key.
fn check_with_nonce(m: &Message, key: &[u8]) {
    let nonce = "a-rather-longer-nonce-than-the-one-before";
    let Some(rewritten) = wire::with_nonce(m, nonce, key) else {
        return;
    };
    let mut r = wire::parse(&rewritten).expect("a rewritten request parses");
    assert_eq!(r.typ, m.typ);
    assert_eq!(r.transaction_id, m.transaction_id);
    let expected: Vec<(u16, Vec<u8>)> = m
        .attributes
        .0
        .iter()
        .take_while(|a| a.typ != ATTR_MESSAGE_INTEGRITY && a.typ != ATTR_FINGERPRINT)
        .map(|a| {
            let v = if a.typ == ATTR_NONCE {
                nonce.as_bytes().to_vec()
            } else {
                a.value.clone()
            };
            (a.typ.0, v)
        })
        .collect();
    let got: Vec<(u16, Vec<u8>)> = r
        .attributes
        .0
        .iter()
        .map(|a| (a.typ.0, a.value.clone()))
        .collect();
    let (last, before) = got.split_last().expect("at least MESSAGE-INTEGRITY");
    assert_eq!(before, &expected[..], "attributes kept in order");
    assert_eq!(last.0, ATTR_MESSAGE_INTEGRITY.0, "MESSAGE-INTEGRITY last");
    MessageIntegrity(key.to_vec())
        .check(&mut r)
        .expect("re-signed with the key");
}
