//! TURN over TCP and TLS through the real `switchboard-relay` binary (issue 3): coturn's
//! `turnutils_uclient` over `-t` and `-S -t`, our own client over a tokio-rustls stream
//! (the browser-shaped check), certificate reload on SIGHUP, the connection cap, the
//! idle timeout, hostile connections, and allocations that die with their connection.
//! Certificates are made at test time with `rcgen`; none is committed.

#[path = "relay_stream_support/client.rs"]
mod client;
mod relay_support;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use client::{StreamTurnClient, connect_tls, served_cert};
use relay_support::{UclientResult, credential, eventually, parse_uclient, sample, scrape};
use switchboard_tests::{Ports, Service, TEST_SECRET, free_port, require_tool, test_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// A self-signed certificate for `localhost`: (cert PEM, key PEM, cert DER).
fn make_cert() -> (String, String, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    (
        ck.cert.pem(),
        ck.key_pair.serialize_pem(),
        ck.cert.der().to_vec(),
    )
}

/// The relay on UDP+TCP `ports.relay` and TLS `ports.relay_tls`, with `cert`, and `extra`
/// keys under `[relay]`.
fn start(ports: &Ports, cert: &(String, String, Vec<u8>), extra: &str) -> Service {
    let relay = format!(
        "listen_tls = [\"127.0.0.1:{}\"]\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n{extra}",
        ports.relay_tls
    );
    Service::start_with(
        "switchboard-relay",
        &test_config(ports, &relay),
        &[
            ("cert.pem", cert.0.as_bytes()),
            ("key.pem", cert.1.as_bytes()),
        ],
        &[],
    )
}

fn tcp_addr(ports: &Ports) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ports.relay))
}

fn tls_addr(ports: &Ports) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], ports.relay_tls))
}

async fn tcp_client(ports: &Ports, user: &str) -> StreamTurnClient<TcpStream> {
    let tcp = TcpStream::connect(tcp_addr(ports)).await.expect("connect");
    StreamTurnClient::new(tcp, &credential(TEST_SECRET, user))
}

/// A UDP peer on loopback.
async fn udp_peer() -> (UdpSocket, SocketAddr) {
    let peer = UdpSocket::bind("127.0.0.1:0").await.expect("peer");
    let addr = peer.local_addr().expect("addr");
    (peer, addr)
}

/// Sends `data` on channel 0x4001 and checks it reaches `peer` from `relayed`; the peer's
/// answer comes back as ChannelData on the same channel (RFC 8656 sections 12.4-12.6).
async fn round_trip<S>(
    c: &mut StreamTurnClient<S>,
    peer: &UdpSocket,
    relayed: SocketAddr,
    data: &[u8],
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    c.send_channel_data(0x4001, data).await;
    let mut buf = [0u8; 2048];
    let (n, from) = timeout(WAIT, peer.recv_from(&mut buf))
        .await
        .expect("the peer receives in time")
        .expect("recv");
    assert_eq!((&buf[..n], from), (data, relayed));
    let reply = [data, b"+reply"].concat();
    peer.send_to(&reply, from).await.expect("peer send");
    assert_eq!(c.recv_channel_data().await, (0x4001, reply));
}

/// Allocates, permits and binds channel 0x4001 to `peer`; returns the relayed address.
async fn allocate_and_bind<S>(c: &mut StreamTurnClient<S>, peer: SocketAddr) -> SocketAddr
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let relayed = c.allocate().await.expect("allocate");
    assert_eq!(c.create_permission(peer).await, 200);
    assert_eq!(c.channel_bind(0x4001, peer).await, 200);
    relayed
}

/// `turnutils_peer`, killed on drop.
struct UdpEchoPeer(Child, u16);

impl UdpEchoPeer {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new(require_tool("turnutils_peer"))
            .args(["-L", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start turnutils_peer");
        Self(child, port)
    }
}

impl Drop for UdpEchoPeer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn uclient(port: u16, args: &[&str]) -> UclientResult {
    let out = Command::new("timeout")
        .arg("120")
        .arg(require_tool("turnutils_uclient"))
        .args(args)
        .args(["-W", TEST_SECRET, "-p", &port.to_string(), "127.0.0.1"])
        .stdin(Stdio::null())
        .output()
        .expect("run turnutils_uclient");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_uclient(&text).unwrap_or_else(|| panic!("no summary from turnutils_uclient:\n{text}"))
}

fn assert_lossless(r: UclientResult, expected: u64) {
    assert_eq!(
        (r.sent, r.received, r.lost),
        (expected, expected, 0),
        "{r:?}"
    );
}

/// RFC 8656 section 12.5 over TCP: coturn's client, client-to-client over channels and
/// towards a UDP peer, loses nothing.
#[test]
fn uclient_over_tcp_relays_without_loss() {
    let ports = Ports::new();
    let cert = make_cert();
    let _relay = start(&ports, &cert, "max_allocations_per_user = 100");
    let r = uclient(
        ports.relay,
        &["-t", "-y", "-m", "4", "-n", "50", "-l", "170", "-z", "5"],
    );
    assert_lossless(r, 4 * 50);
    let peer = UdpEchoPeer::start();
    let peer_port = peer.1.to_string();
    let r = uclient(
        ports.relay,
        &[
            "-t",
            "-e",
            "127.0.0.1",
            "-r",
            &peer_port,
            "-m",
            "4",
            "-n",
            "50",
            "-l",
            "170",
            "-z",
            "5",
        ],
    );
    assert_lossless(r, 4 * 50);
}

/// TURN over TLS with coturn's client, client-to-client over channels and towards a UDP
/// peer, paced, loses nothing. (The same client loses messages against coturn itself over
/// TLS: it handles one message per TLS record, and coturn, like us, writes one record per
/// message, but it still loses some; see scripts/bench-relay.sh for the figures.)
#[test]
fn uclient_over_tls_relays_without_loss() {
    let ports = Ports::new();
    let cert = make_cert();
    let _relay = start(&ports, &cert, "max_allocations_per_user = 100");
    let r = uclient(
        ports.relay_tls,
        &[
            "-S", "-t", "-y", "-m", "4", "-n", "20", "-l", "170", "-z", "20",
        ],
    );
    assert_lossless(r, 4 * 20);
    let peer = UdpEchoPeer::start();
    let peer_port = peer.1.to_string();
    let r = uclient(
        ports.relay_tls,
        &[
            "-S",
            "-t",
            "-e",
            "127.0.0.1",
            "-r",
            &peer_port,
            "-m",
            "4",
            "-n",
            "20",
            "-l",
            "170",
            "-z",
            "20",
        ],
    );
    assert_lossless(r, 4 * 20);
}

/// The browser-shaped check: over TLS, Allocate (401 then signed with the REST
/// credential), CreatePermission, ChannelBind, ChannelData to a UDP peer and the peer's
/// answer back as padded ChannelData (RFC 8656 sections 7, 9, 12).
#[tokio::test(flavor = "multi_thread")]
async fn an_allocation_over_tls_relays_udp_to_a_peer_and_back() {
    let ports = Ports::new();
    let cert = make_cert();
    let _relay = start(&ports, &cert, "");
    let tls = connect_tls(tls_addr(&ports), &cert.2).await;
    let mut c = StreamTurnClient::new(tls, &credential(TEST_SECRET, "alice"));
    let (peer, peer_addr) = udp_peer().await;
    let relayed = allocate_and_bind(&mut c, peer_addr).await;
    // Lengths 14 and 1: both need stream padding.
    round_trip(&mut c, &peer, relayed, b"hello over tls").await;
    round_trip(&mut c, &peer, relayed, b"x").await;
}

/// A TLS client that hangs up normally is counted as `peer_closed`, the reason a TCP client's
/// EOF gets, whether it sends close_notify first (RFC 8446 section 6.1) or just closes the
/// TCP connection, as many clients do; neither is an I/O failure.
#[tokio::test(flavor = "multi_thread")]
async fn a_tls_client_closing_cleanly_counts_as_peer_closed_not_io() {
    let ports = Ports::new();
    let cert = make_cert();
    let _relay = start(&ports, &cert, "");
    let mut notify = connect_tls(tls_addr(&ports), &cert.2).await;
    let bare = connect_tls(tls_addr(&ports), &cert.2).await;
    let open = "switchboard_relay_stream_connections_open{transport=\"tls\"}";
    assert!(
        eventually(WAIT, || sample(&scrape(&ports), open) == 2.0),
        "both handshakes done"
    );

    // close_notify, then wait for the relay's own close_notify (end of stream).
    timeout(WAIT, notify.shutdown())
        .await
        .expect("shutdown in time")
        .expect("close_notify sent");
    let mut buf = [0u8; 16];
    let read = timeout(WAIT, notify.read(&mut buf))
        .await
        .expect("relay closes in time");
    assert!(matches!(read, Ok(0)), "{read:?}");
    // A TCP FIN with no close_notify (a FIN, not a close: closing with the unread session
    // tickets would make the kernel send a reset).
    let (mut tcp, _) = bare.into_inner();
    timeout(WAIT, tcp.shutdown())
        .await
        .expect("shutdown in time")
        .expect("FIN sent");

    let closed = |reason: &str| {
        format!(
            "switchboard_relay_stream_connections_closed_total{{transport=\"tls\",reason=\"{reason}\"}}"
        )
    };
    assert!(
        eventually(WAIT, || sample(&scrape(&ports), open) == 0.0),
        "both connections are closed"
    );
    let text = scrape(&ports);
    assert_eq!(sample(&text, &closed("peer_closed")), 2.0, "{text}");
    assert_eq!(sample(&text, &closed("io")), 0.0, "{text}");
}

/// SIGHUP reloads the certificate: new handshakes get the new one, while an allocation
/// made over a connection that began with the old one keeps relaying.
#[tokio::test(flavor = "multi_thread")]
async fn sighup_serves_the_new_certificate_and_existing_allocations_keep_relaying() {
    let ports = Ports::new();
    let cert_a = make_cert();
    let mut relay = start(&ports, &cert_a, "");
    let tls = connect_tls(tls_addr(&ports), &cert_a.2).await;
    assert_eq!(served_cert(&tls), cert_a.2);
    let mut c = StreamTurnClient::new(tls, &credential(TEST_SECRET, "alice"));
    let (peer, peer_addr) = udp_peer().await;
    let relayed = allocate_and_bind(&mut c, peer_addr).await;
    round_trip(&mut c, &peer, relayed, b"before reload").await;

    let cert_b = make_cert();
    std::fs::write(relay.dir().join("key.pem"), &cert_b.1).expect("write key");
    std::fs::write(relay.dir().join("cert.pem"), &cert_b.0).expect("write cert");
    relay.signal("HUP");
    relay.wait_notify("RELOADING=1", WAIT).expect("reloading");
    relay.wait_notify("READY=1", WAIT).expect("reloaded");
    assert!(
        relay.logs().contains("TLS certificate reloaded"),
        "{}",
        relay.logs()
    );

    let fresh = connect_tls(tls_addr(&ports), &cert_b.2).await;
    assert_eq!(
        served_cert(&fresh),
        cert_b.2,
        "a new connection sees cert B"
    );
    round_trip(&mut c, &peer, relayed, b"after reload").await;
}

/// RFC 8656 section 3.1 (RFC 6062 spirit): an allocation over TCP is deleted when its
/// connection closes: the allocation gauge drops back and the user's quota is free.
#[tokio::test(flavor = "multi_thread")]
async fn closing_the_connection_deletes_its_allocation_and_frees_the_quota() {
    let ports = Ports::new();
    let cert = make_cert();
    let _relay = start(&ports, &cert, "max_allocations_per_user = 1");
    let mut first = tcp_client(&ports, "bob").await;
    first.allocate().await.expect("first allocation");
    let mut second = tcp_client(&ports, "bob").await;
    assert_eq!(second.allocate().await, Err(486), "one allocation per user");
    assert_eq!(
        sample(&scrape(&ports), "switchboard_relay_allocations"),
        1.0
    );

    drop(first);
    assert!(
        eventually(WAIT, || sample(
            &scrape(&ports),
            "switchboard_relay_allocations"
        ) == 0.0),
        "the allocation is gone once its connection closed"
    );
    let mut third = tcp_client(&ports, "bob").await;
    third.allocate().await.expect("the quota is free again");
}

/// Connections over `max_stream_connections` are refused (closed at once and counted),
/// and a slot frees when a connection ends.
#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_cap_are_refused_until_one_closes() {
    let ports = Ports::new();
    let cert = make_cert();
    // The per-IP cap may not exceed the global one (config validation).
    let _relay = start(
        &ports,
        &cert,
        "max_stream_connections = 2\nmax_stream_connections_per_ip = 2",
    );
    let mut a = tcp_client(&ports, "a").await;
    let mut b = tcp_client(&ports, "b").await;
    assert!(a.binding_succeeds().await && b.binding_succeeds().await);

    let mut over = TcpStream::connect(tcp_addr(&ports)).await.expect("connect");
    let mut buf = [0u8; 16];
    let read = timeout(WAIT, over.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let text = scrape(&ports);
    assert_eq!(
        sample(
            &text,
            "switchboard_relay_stream_connections_rejected_over_cap_total"
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            "switchboard_relay_stream_connections_open{transport=\"tcp\"}"
        ),
        2.0
    );

    drop(a);
    assert!(eventually(WAIT, || {
        sample(
            &scrape(&ports),
            "switchboard_relay_stream_connections_open{transport=\"tcp\"}",
        ) == 1.0
    }));
    let mut c = tcp_client(&ports, "c").await;
    assert!(
        c.binding_succeeds().await,
        "a freed slot serves a new client"
    );
}

/// A connection that sends no complete message within `stream_idle_timeout` is closed.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let ports = Ports::new();
    let cert = make_cert();
    let _relay = start(&ports, &cert, "stream_idle_timeout = \"1s\"");
    let mut idle = TcpStream::connect(tcp_addr(&ports)).await.expect("connect");
    let mut buf = [0u8; 16];
    let read = timeout(WAIT, idle.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let series =
        "switchboard_relay_stream_connections_closed_total{transport=\"tcp\",reason=\"idle\"}";
    assert!(eventually(WAIT, || sample(&scrape(&ports), series) == 1.0));
}

/// A slowloris connection (half a header, then nothing) and one sending garbage do not
/// disturb a good client relaying at the same time; the garbage one is closed.
#[tokio::test(flavor = "multi_thread")]
async fn slowloris_and_garbage_on_the_tcp_port_do_not_disturb_a_good_client() {
    let ports = Ports::new();
    let cert = make_cert();
    let _relay = start(&ports, &cert, "");
    let mut good = tcp_client(&ports, "good").await;
    let (peer, peer_addr) = udp_peer().await;
    let relayed = allocate_and_bind(&mut good, peer_addr).await;

    let mut slow = TcpStream::connect(tcp_addr(&ports)).await.expect("connect");
    slow.write_all(&[0x00, 0x01, 0x00])
        .await
        .expect("half a header");
    let mut garbage = TcpStream::connect(tcp_addr(&ports)).await.expect("connect");
    garbage.write_all(&[0xFF; 64]).await.expect("garbage");

    for i in 0..20u8 {
        round_trip(&mut good, &peer, relayed, &[i; 37]).await;
    }
    let mut buf = [0u8; 16];
    let read = timeout(WAIT, garbage.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let series =
        "switchboard_relay_stream_connections_closed_total{transport=\"tcp\",reason=\"framing\"}";
    assert!(eventually(WAIT, || sample(&scrape(&ports), series) == 1.0));
}

/// A certificate file that cannot be used stops start-up with an error naming the file.
#[test]
fn an_unusable_certificate_fails_start_up_naming_the_file() {
    let ports = Ports::new();
    let relay = format!(
        "listen_tls = [\"127.0.0.1:{}\"]\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n",
        ports.relay_tls
    );
    let mut svc = Service::spawn(
        "switchboard-relay",
        &test_config(&ports, &relay),
        &[
            ("cert.pem", b"not a certificate"),
            ("key.pem", b"nor a key"),
        ],
        &[],
    );
    let status = svc.wait_exit(WAIT).expect("exits");
    assert!(!status.success());
    let logs = svc.logs();
    assert!(
        logs.contains("cert.pem") && logs.contains("no certificate found"),
        "{logs}"
    );
}

/// RFC 8489 section 6.2.2: over a stream a request is never retransmitted, so the
/// per-source limit on unauthenticated requests (a UDP flood defence) must not drop
/// stream clients' requests: many TCP clients from one address all allocate at once.
#[tokio::test(flavor = "multi_thread")]
async fn many_tcp_clients_from_one_address_all_get_answers_despite_the_udp_rate_limit() {
    let ports = Ports::new();
    let cert = make_cert();
    let _relay = start(
        &ports,
        &cert,
        "unauth_requests_per_second = 1\nmax_allocations_per_user = 100",
    );
    let mut clients = Vec::new();
    for i in 0..10 {
        let mut c = tcp_client(&ports, &format!("user{i}")).await;
        c.allocate()
            .await
            .expect("allocated without waiting for a rate limit");
        clients.push(c);
    }
}

/// SIGTERM closes open TCP/TLS connections and the relay exits 0.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_closes_stream_connections_and_exits_cleanly() {
    let ports = Ports::new();
    let cert = make_cert();
    let mut relay = start(&ports, &cert, "");
    let mut c = tcp_client(&ports, "carol").await;
    assert!(c.binding_succeeds().await);
    let tls = connect_tls(tls_addr(&ports), &cert.2).await;
    let mut t = StreamTurnClient::new(tls, &credential(TEST_SECRET, "carol"));
    assert!(t.binding_succeeds().await);

    relay.signal("TERM");
    let mut buf = [0u8; 16];
    let read = timeout(WAIT, c.io.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let read = timeout(WAIT, t.io.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let status = relay.wait_exit(WAIT).expect("exits");
    assert!(status.success(), "{status:?}");
}

/// A TCP connection from the loopback source `ip`.
async fn tcp_from(ports: &Ports, ip: &str) -> TcpStream {
    let s = tokio::net::TcpSocket::new_v4().expect("socket");
    s.bind(SocketAddr::new(ip.parse().expect("ip"), 0))
        .expect("bind source");
    s.connect(tcp_addr(ports)).await.expect("connect")
}

/// Issue 12, finding 4 / SPEC section 3.1: at most `max_stream_connections_per_ip`
/// connections from one source IP (4,096 idle connections from one IP used to fill the
/// global cap). The next one from that IP is closed at once and counted; another source
/// is served.
#[tokio::test(flavor = "multi_thread")]
async fn connections_over_the_per_ip_cap_are_refused_and_other_sources_are_served() {
    let ports = Ports::new();
    let cert = make_cert();
    let _relay = start(&ports, &cert, "max_stream_connections_per_ip = 3");
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = StreamTurnClient::new(
            tcp_from(&ports, "127.0.0.2").await,
            &credential(TEST_SECRET, "mallory"),
        );
        assert!(c.binding_succeeds().await, "within the per-IP cap");
        held.push(c);
    }
    let mut over = tcp_from(&ports, "127.0.0.2").await;
    let mut buf = [0u8; 16];
    let read = timeout(WAIT, over.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let mut other = StreamTurnClient::new(
        tcp_from(&ports, "127.0.0.3").await,
        &credential(TEST_SECRET, "alice"),
    );
    other.allocate().await.expect("another source allocates");
    let text = scrape(&ports);
    assert_eq!(
        sample(
            &text,
            "switchboard_relay_stream_connections_rejected_per_ip_total"
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "switchboard_relay_stream_connections_rejected_over_cap_total"
        ),
        0.0
    );
}

/// Issue 12, finding 4 / SPEC section 3.1: a connection that has made no allocation within
/// `stream_idle_timeout` is closed, even while it keeps sending complete messages (only
/// "no complete message" used to count as idle). A connection with an allocation, as busy,
/// stays open and relays.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_that_makes_no_allocation_is_closed_after_the_idle_timeout_even_when_busy() {
    let ports = Ports::new();
    let cert = make_cert();
    let _relay = start(&ports, &cert, "stream_idle_timeout = \"2s\"");
    let mut good = tcp_client(&ports, "good").await;
    let (peer, peer_addr) = udp_peer().await;
    let relayed = allocate_and_bind(&mut good, peer_addr).await;
    let mut busy = TcpStream::connect(tcp_addr(&ports)).await.expect("connect");
    let series = "switchboard_relay_stream_connections_closed_total{transport=\"tcp\",reason=\"no_allocation\"}";
    let mut tick = tokio::time::interval(Duration::from_millis(300));
    let mut closed = false;
    for _ in 0..50 {
        tick.tick().await;
        assert!(
            good.binding_succeeds().await,
            "the allocated connection serves"
        );
        let _ = busy.write_all(&binding_request()).await;
        if sample(&scrape(&ports), series) == 1.0 {
            closed = true;
            break;
        }
    }
    assert!(
        closed,
        "the busy connection without an allocation was closed"
    );
    let mut buf = vec![0u8; 4096];
    let drained = timeout(WAIT, async {
        loop {
            match busy.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the server closed it");
    round_trip(&mut good, &peer, relayed, b"still open").await;
}

fn binding_request() -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    m.extend_from_slice(&[9; 12]);
    m
}

/// Issue 12, finding 1 over TCP, where a request that is never answered hangs its client
/// (it is never retransmitted): a CreatePermission larger than the crate reads gets 400.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_request_over_tcp_is_answered_with_400() {
    let ports = Ports::new();
    let cert = make_cert();
    let _relay = start(&ports, &cert, "");
    let mut c = tcp_client(&ports, "alice").await;
    c.allocate().await.expect("allocate");
    let many: Vec<SocketAddr> = (1..=200u8)
        .map(|i| SocketAddr::from(([127, 9, 0, i], 9)))
        .collect();
    let r = c
        .signed(stun::message::METHOD_CREATE_PERMISSION, || {
            many.iter()
                .map(|p| {
                    Box::new(turn::proto::peeraddr::PeerAddress {
                        ip: p.ip(),
                        port: p.port(),
                    }) as Box<dyn stun::message::Setter>
                })
                .collect()
        })
        .await;
    assert_eq!(r.err(), Some(400));
}

/// Issue 12, finding 8 / RFC 8489 section 5: a peer datagram too large for a Data
/// indication's 16-bit length (65,527 bytes from an IPv6 peer) is dropped and counted; it
/// used to go out with a wrapped length, which desynchronised a TCP client's framing. The
/// next datagram arrives intact.
#[tokio::test(flavor = "multi_thread")]
async fn a_peer_datagram_too_large_for_a_data_indication_is_dropped_not_wrapped() {
    let ports = Ports::new();
    let cert = make_cert();
    let v6 = "relay_ip = \"::1\"\nexternal_ip = \"::1\"";
    let config = test_config(&ports, "")
        .replace("relay_ip = \"127.0.0.1\"\nexternal_ip = \"127.0.0.1\"", v6);
    let relay_keys = format!(
        "listen_tls = [\"127.0.0.1:{}\"]\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n",
        ports.relay_tls
    );
    let _relay = Service::start_with(
        "switchboard-relay",
        &format!("{config}{relay_keys}"),
        &[
            ("cert.pem", cert.0.as_bytes()),
            ("key.pem", cert.1.as_bytes()),
        ],
        &[],
    );
    let mut c = tcp_client(&ports, "alice").await;
    let r = c
        .signed(stun::message::METHOD_ALLOCATE, || {
            vec![
                Box::new(turn::proto::reqtrans::RequestedTransport {
                    protocol: turn::proto::PROTO_UDP,
                }),
                Box::new(turn::proto::reqfamily::REQUESTED_FAMILY_IPV6),
            ]
        })
        .await
        .expect("an IPv6 allocation");
    let mut relayed = turn::proto::relayaddr::RelayedAddress::default();
    stun::message::Getter::get_from(&mut relayed, &r).expect("XOR-RELAYED-ADDRESS");
    let relayed = SocketAddr::new(relayed.ip, relayed.port);
    let peer = UdpSocket::bind("[::1]:0").await.expect("peer");
    let peer_addr = peer.local_addr().expect("addr");
    assert_eq!(c.create_permission(peer_addr).await, 200);

    peer.send_to(&vec![0xAB; 65_527], relayed)
        .await
        .expect("the largest IPv6 UDP payload");
    peer.send_to(b"after", relayed).await.expect("send");
    let data = loop {
        if let client::Incoming::Stun(m) = c.recv().await {
            let mut d = turn::proto::data::Data::default();
            if stun::message::Getter::get_from(&mut d, &m).is_ok() {
                break d.0;
            }
        }
    };
    assert_eq!(data, b"after", "the oversized datagram was not delivered");
    assert!(eventually(WAIT, || sample(
        &scrape(&ports),
        "switchboard_relay_oversized_dropped_packets_total"
    ) == 1.0));
}
