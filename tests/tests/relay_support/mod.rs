//! Helpers shared by the relay's end-to-end tests: a relay-only configuration, a small
//! blocking STUN/TURN client that shows exact response codes, metric scraping and coturn's
//! `turnutils_uclient` output parsing.

#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use stun::agent::TransactionId;
use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_INDICATION, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, Getter,
    METHOD_ALLOCATE, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, METHOD_REFRESH, METHOD_SEND,
    Message, MessageType, Method, Setter,
};
use stun::textattrs::TextAttribute;
use switchboard_config::credentials::{Credential, mint};
use switchboard_tests::{Ports, TEST_SECRET};
use turn::proto::PROTO_UDP;
use turn::proto::channum::ChannelNumber;
use turn::proto::data::Data;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;

pub const REALM: &str = "switchboard";

/// A relay-only configuration on loopback. `allowed` is `relay.allowed_peers`; `extra` is
/// appended under `[relay]`; `secrets` replaces the test secret when given.
#[must_use]
pub fn relay_config(ports: &Ports, allowed: &[&str], secrets: &[&str], extra: &str) -> String {
    let secrets = if secrets.is_empty() {
        vec![TEST_SECRET]
    } else {
        secrets.to_vec()
    };
    let quote = |v: &[&str]| {
        v.iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"log_level = "info"

[turn]
realm = "{REALM}"
secrets = [{secrets}]
public_host = "127.0.0.1"

[relay]
listen_udp = ["127.0.0.1:{relay}"]
listen_tcp = []
relay_ip = "127.0.0.1"
external_ip = "127.0.0.1"
port_range = [40000, 49999]
allowed_peers = [{allowed}]
metrics_listen = "127.0.0.1:{metrics}"
{extra}
"#,
        secrets = quote(&secrets),
        allowed = quote(allowed),
        relay = ports.relay,
        metrics = ports.metrics,
    )
}

#[must_use]
pub fn relay_addr(ports: &Ports) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ports.relay))
}

#[must_use]
pub fn now_unix() -> u64 {
    switchboard_config::unix_now()
}

/// A credential the signaling service would issue (same code path).
#[must_use]
pub fn credential(secret: &str, user: &str) -> Credential {
    mint(
        &SecretString::from(secret.to_string()),
        user,
        Duration::from_secs(3600),
        now_unix(),
    )
}

/// A response: success, or an error code with the NONCE it carried.
#[derive(Debug)]
pub enum Reply {
    Ok(Message),
    Err(u16, Option<String>),
}

impl Reply {
    #[must_use]
    pub fn code(&self) -> u16 {
        match self {
            Reply::Ok(_) => 200,
            Reply::Err(c, _) => *c,
        }
    }
}

/// A blocking TURN client over one UDP socket.
#[derive(Debug)]
pub struct RawClient {
    pub sock: UdpSocket,
    server: SocketAddr,
    username: String,
    password: String,
    nonce: Option<String>,
}

impl RawClient {
    #[must_use]
    pub fn new(server: SocketAddr, cred: &Credential) -> Self {
        Self::with(server, &cred.username, &cred.password)
    }

    #[must_use]
    pub fn with(server: SocketAddr, username: &str, password: &str) -> Self {
        let local = if server.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let sock = UdpSocket::bind(local).expect("bind client");
        sock.set_read_timeout(Some(Duration::from_millis(250)))
            .expect("timeout");
        Self {
            sock,
            server,
            username: username.into(),
            password: password.into(),
            nonce: None,
        }
    }

    /// Another client on this client's very socket (same 5-tuple) signing with `cred`: what
    /// an attacker who can send from (or spoof) the victim's address does.
    #[must_use]
    pub fn sharing(&self, cred: &Credential) -> Self {
        Self {
            sock: self.sock.try_clone().expect("clone socket"),
            server: self.server,
            username: cred.username.clone(),
            password: cred.password.clone(),
            nonce: None,
        }
    }

    /// Learns a nonce (RFC 8489 section 9.2.4) if we have none.
    pub fn ensure_nonce(&mut self) {
        if self.nonce.is_none() {
            let probe = self.build(METHOD_ALLOCATE, CLASS_REQUEST, Vec::new(), false);
            match self.transact(&probe) {
                Reply::Err(401, Some(n)) => self.nonce = Some(n),
                other => panic!("expected 401 with a nonce, got {other:?}"),
            }
        }
    }

    /// A request signed with our credential and nonce (call [`Self::ensure_nonce`] first),
    /// without FINGERPRINT, for tests that send it themselves.
    #[must_use]
    pub fn signed_request(&self, method: Method, attrs: Vec<Box<dyn Setter>>) -> Message {
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(method, CLASS_REQUEST)),
        ];
        setters.extend(attrs);
        setters.push(Box::new(TextAttribute::new(
            ATTR_USERNAME,
            self.username.clone(),
        )));
        setters.push(Box::new(TextAttribute::new(ATTR_REALM, REALM.into())));
        setters.push(Box::new(TextAttribute::new(
            ATTR_NONCE,
            self.nonce.clone().unwrap_or_default(),
        )));
        setters.push(Box::new(MessageIntegrity::new_long_term_integrity(
            self.username.clone(),
            REALM.into(),
            self.password.clone(),
        )));
        let mut m = Message::new();
        m.build(&setters).expect("build request");
        m
    }

    /// The server's address.
    #[must_use]
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    fn build(
        &self,
        method: Method,
        class: stun::message::MessageClass,
        mut attrs: Vec<Box<dyn Setter>>,
        sign: bool,
    ) -> Message {
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(method, class)),
        ];
        setters.append(&mut attrs);
        if sign {
            setters.push(Box::new(TextAttribute::new(
                ATTR_USERNAME,
                self.username.clone(),
            )));
            setters.push(Box::new(TextAttribute::new(ATTR_REALM, REALM.into())));
            setters.push(Box::new(TextAttribute::new(
                ATTR_NONCE,
                self.nonce.clone().unwrap_or_default(),
            )));
            setters.push(Box::new(MessageIntegrity::new_long_term_integrity(
                self.username.clone(),
                REALM.into(),
                self.password.clone(),
            )));
        }
        setters.push(Box::new(FINGERPRINT));
        let mut m = Message::new();
        m.build(&setters).expect("build request");
        m
    }

    /// Sends a request and waits for its response (retransmitting, RFC 8489 section
    /// 6.2.1, at most 20 times).
    pub fn transact(&mut self, m: &Message) -> Reply {
        for _ in 0..20 {
            self.sock.send_to(&m.raw, self.server).expect("send");
            let deadline = Instant::now() + Duration::from_millis(250);
            while Instant::now() < deadline {
                let mut buf = [0u8; 2048];
                let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                    break;
                };
                let mut r = Message::new();
                r.raw = buf[..n].to_vec();
                if r.decode().is_err() || r.transaction_id != m.transaction_id {
                    continue;
                }
                if r.typ.class == CLASS_SUCCESS_RESPONSE {
                    return Reply::Ok(r);
                }
                if r.typ.class == CLASS_ERROR_RESPONSE {
                    let mut e = ErrorCodeAttribute::default();
                    e.get_from(&r).expect("error code");
                    let nonce = r
                        .get(ATTR_NONCE)
                        .ok()
                        .and_then(|v| String::from_utf8(v).ok());
                    return Reply::Err(e.code.0, nonce);
                }
            }
        }
        panic!("no response from the relay at {}", self.server);
    }

    /// Sends a signed request, first learning a nonce (the 401 dance of RFC 8489
    /// section 9.2) when we have none or it went stale.
    pub fn signed(&mut self, method: Method, attrs: impl Fn() -> Vec<Box<dyn Setter>>) -> Reply {
        if self.nonce.is_none() {
            let probe = self.build(method, CLASS_REQUEST, attrs(), false);
            match self.transact(&probe) {
                Reply::Err(401, Some(n)) => self.nonce = Some(n),
                other => return other,
            }
        }
        let m = self.build(method, CLASS_REQUEST, attrs(), true);
        match self.transact(&m) {
            Reply::Err(438, Some(n)) => {
                self.nonce = Some(n);
                let m = self.build(method, CLASS_REQUEST, attrs(), true);
                self.transact(&m)
            }
            r => r,
        }
    }

    /// An unsigned request, as a client without credentials sends it.
    pub fn unsigned(&mut self, method: Method, attrs: Vec<Box<dyn Setter>>) -> Reply {
        let m = self.build(method, CLASS_REQUEST, attrs, false);
        self.transact(&m)
    }

    /// RFC 8656 section 7.1: Allocate; returns the relayed address.
    pub fn allocate(&mut self) -> Result<SocketAddr, u16> {
        match self.signed(METHOD_ALLOCATE, || {
            vec![Box::new(RequestedTransport {
                protocol: PROTO_UDP,
            })]
        }) {
            Reply::Ok(m) => {
                let mut r = RelayedAddress::default();
                r.get_from(&m).expect("XOR-RELAYED-ADDRESS");
                Ok(SocketAddr::new(r.ip, r.port))
            }
            Reply::Err(c, _) => Err(c),
        }
    }

    /// RFC 8656 section 7.4: Refresh with LIFETIME 0 deletes the allocation.
    pub fn release(&mut self) -> u16 {
        self.signed(METHOD_REFRESH, || vec![Box::new(Lifetime(Duration::ZERO))])
            .code()
    }

    /// RFC 8656 section 8: Refresh with `lifetime`; the response code.
    pub fn refresh(&mut self, lifetime: Duration) -> u16 {
        self.signed(METHOD_REFRESH, || vec![Box::new(Lifetime(lifetime))])
            .code()
    }

    /// RFC 8656 section 9.1: CreatePermission for every peer in `peers`.
    pub fn create_permission(&mut self, peers: &[SocketAddr]) -> u16 {
        let peers = peers.to_vec();
        self.signed(METHOD_CREATE_PERMISSION, || {
            peers
                .iter()
                .map(|p| {
                    Box::new(PeerAddress {
                        ip: p.ip(),
                        port: p.port(),
                    }) as Box<dyn Setter>
                })
                .collect()
        })
        .code()
    }

    /// RFC 8656 section 12.1: ChannelBind.
    pub fn channel_bind(&mut self, number: u16, peer: SocketAddr) -> u16 {
        self.signed(METHOD_CHANNEL_BIND, || {
            vec![
                Box::new(ChannelNumber(number)),
                Box::new(PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }),
            ]
        })
        .code()
    }

    /// RFC 8656 section 11.1: a Send indication.
    pub fn send_indication(&self, peer: SocketAddr, data: &[u8]) {
        let m = self.build(
            METHOD_SEND,
            CLASS_INDICATION,
            vec![
                Box::new(PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }),
                Box::new(Data(data.to_vec())),
            ],
            false,
        );
        self.sock.send_to(&m.raw, self.server).expect("send");
    }

    /// RFC 8656 section 12.4: ChannelData.
    pub fn send_channel_data(&self, number: u16, data: &[u8]) {
        let mut out = number.to_be_bytes().to_vec();
        out.extend_from_slice(&(data.len() as u16).to_be_bytes());
        out.extend_from_slice(data);
        self.sock.send_to(&out, self.server).expect("send");
    }

    /// The next relayed payload (Data indication or ChannelData) within `wait`.
    pub fn recv_data(&self, wait: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            let mut buf = vec![0u8; 65_536];
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            let b = &buf[..n];
            if (0x40..0x80).contains(&b[0]) && n >= 4 {
                let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
                return Some(b[4..4 + len].to_vec());
            }
            let mut m = Message::new();
            m.raw = b.to_vec();
            if m.decode().is_ok() && m.typ.class == CLASS_INDICATION {
                let mut d = Data::default();
                if d.get_from(&m).is_ok() {
                    return Some(d.0);
                }
            }
        }
        None
    }
}

/// The relay's `/metrics` text.
#[must_use]
pub fn scrape(ports: &Ports) -> String {
    let url = format!("http://127.0.0.1:{}/metrics", ports.metrics);
    ureq::get(&url)
        .call()
        .expect("GET /metrics")
        .body_mut()
        .read_to_string()
        .expect("metrics body")
}

/// The value of one sample line (`name{labels}`) in a scrape; 0 when absent.
#[must_use]
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// What `turnutils_uclient` reports at the end of a run.
#[derive(Debug, Clone, Copy)]
pub struct UclientResult {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub loss_percent: f64,
}

/// Parses `tot_send_msgs=N, tot_recv_msgs=M` and `Total lost packets L (P%)`.
#[must_use]
pub fn parse_uclient(out: &str) -> Option<UclientResult> {
    let mut sent = None;
    let mut received = None;
    let mut lost = None;
    let mut pct = None;
    for line in out.lines() {
        if let Some(i) = line.find("start_mclient: tot_send_msgs=") {
            let rest = &line[i + "start_mclient: tot_send_msgs=".len()..];
            let (s, r) = rest.split_once(", tot_recv_msgs=")?;
            sent = s.trim().parse().ok();
            received = r.trim().parse().ok();
        }
        if let Some(i) = line.find("Total lost packets ") {
            let rest = &line[i + "Total lost packets ".len()..];
            let (l, r) = rest.split_once(" (")?;
            lost = l.trim().parse().ok();
            pct = r.split('%').next().and_then(|p| p.trim().parse().ok());
        }
    }
    Some(UclientResult {
        sent: sent?,
        received: received?,
        lost: lost?,
        loss_percent: pct?,
    })
}

/// Polls `cond` until it holds or `timeout` passes (for effects of signals, which have
/// no reply to wait on).
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// VmRSS of a process, in KiB.
#[must_use]
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("read /proc status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// The allocations gauge, for tests that wait for the relay to settle.
#[must_use]
pub fn allocations(ports: &Ports) -> f64 {
    sample(&scrape(ports), "switchboard_relay_allocations")
}

/// A UDP peer on loopback `ip` with a read timeout, and its address.
#[must_use]
pub fn udp_peer(ip: &str) -> (UdpSocket, SocketAddr) {
    let peer = UdpSocket::bind((ip, 0)).expect("bind peer");
    peer.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let addr = peer.local_addr().expect("addr");
    (peer, addr)
}

/// One relayed round trip over channel `channel` (already bound to `peer`): client to peer
/// and back. The check a legitimate user's call depends on.
pub fn round_trip(c: &RawClient, channel: u16, peer: &UdpSocket, relayed: SocketAddr, data: &[u8]) {
    c.send_channel_data(channel, data);
    let mut buf = [0u8; 2048];
    let (n, from) = peer
        .recv_from(&mut buf)
        .expect("the peer receives the datagram");
    assert_eq!((&buf[..n], from), (data, relayed));
    peer.send_to(data, relayed).expect("peer send");
    assert_eq!(
        c.recv_data(Duration::from_secs(5)).as_deref(),
        Some(data),
        "the client receives the peer's answer"
    );
}
