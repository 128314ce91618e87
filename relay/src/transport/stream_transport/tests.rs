//! The relay core with the `turn` crate over real TCP connections on port 0: allocations
//! live as long as their connection, stream metrics follow the connections.

use std::time::Duration;

use bytes::BytesMut;
use stun::agent::TransactionId;
use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, Message,
    MessageType, Setter,
};
use stun::textattrs::TextAttribute;
use switchboard_config::Component;
use switchboard_config::credentials::{Credential, mint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use turn::proto::PROTO_UDP;
use turn::proto::reqtrans::RequestedTransport;

use super::*;
use crate::Relay;
use crate::metrics::Metrics;
use crate::transport::framing::Framer;
use crate::transport::stream::{CloseReason, StreamClient};

fn allocate(auth: Option<(&Credential, &str, &str)>) -> Vec<u8> {
    let mut setters: Vec<Box<dyn Setter>> = vec![
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
        Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        }),
    ];
    if let Some((cred, realm, nonce)) = auth {
        setters.push(Box::new(TextAttribute::new(
            ATTR_USERNAME,
            cred.username.clone(),
        )));
        setters.push(Box::new(TextAttribute::new(ATTR_REALM, realm.into())));
        setters.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce.into())));
        setters.push(Box::new(MessageIntegrity::new_long_term_integrity(
            cred.username.clone(),
            realm.into(),
            cred.password.clone(),
        )));
    }
    let mut m = Message::new();
    m.build(&setters).expect("build");
    m.raw
}

/// Sends one request on the stream and reads the one response.
async fn transact(tcp: &mut TcpStream, req: &[u8]) -> Message {
    let mut out = BytesMut::new();
    crate::transport::framing::encode_for_stream(req, &mut out);
    tcp.write_all(&out).await.expect("write");
    let mut framer = Framer::new();
    let mut buf = [0u8; 2048];
    loop {
        if let Some(frame) = framer.poll_frame().expect("framing") {
            return crate::wire::parse(frame.as_bytes()).expect("STUN");
        }
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .expect("a response in time")
            .expect("read");
        assert!(n > 0, "connection closed before the response");
        framer.push(&buf[..n]);
    }
}

/// Allocates over a new TCP connection: 401 with a nonce, then the signed Allocate.
async fn allocate_over_tcp(addr: SocketAddr, cred: &Credential, realm: &str) -> (TcpStream, u8) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let challenge = transact(&mut tcp, &allocate(None)).await;
    assert_eq!(challenge.typ.class, CLASS_ERROR_RESPONSE, "{challenge}");
    let nonce = crate::wire::text(&challenge, ATTR_NONCE).expect("nonce");
    let reply = transact(&mut tcp, &allocate(Some((cred, realm, &nonce)))).await;
    let class = if reply.typ.class == CLASS_SUCCESS_RESPONSE {
        0
    } else {
        1
    };
    (tcp, class)
}

async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    for _ in 0..500 {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

/// RFC 8656 section 3.1 / RFC 6062 section 5.2 spirit: an allocation made over a TCP
/// connection is deleted when that connection closes, which frees the user's quota (the
/// second allocation of a one-allocation user succeeds only after the first connection
/// ended) and the stream metrics count the connection as closed.
#[tokio::test]
async fn an_allocation_over_tcp_dies_with_its_connection_and_frees_the_users_quota() {
    let mut cfg = switchboard_config::load_development(Component::Relay).expect("dev config");
    cfg.relay.max_allocations_per_user = 1;
    let realm = cfg.turn.realm.clone();
    let cred = mint(
        cfg.turn.secrets.signing(),
        "tcp-user",
        Duration::from_secs(600),
        switchboard_config::unix_now(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let streams = StreamListeners::new(StreamConfig::default(), vec![listener], Vec::new(), None)
        .expect("streams");
    let stream_metrics = streams.metrics();
    let mut metrics = Metrics::new();
    metrics.register_collector(Box::new(streams.metrics()));
    let relay = Relay::start_on_transports(&cfg, streams.client_transports(), Arc::new(metrics))
        .await
        .expect("start");
    let tasks = streams.spawn();

    let (first, class) = allocate_over_tcp(addr, &cred, &realm).await;
    assert_eq!(class, 0, "the first allocation succeeds");
    assert_eq!(relay.allocations(), 1);
    let (second, class) = allocate_over_tcp(addr, &cred, &realm).await;
    assert_eq!(class, 1, "486: the user's one allocation is in use");
    drop(second);

    drop(first);
    assert!(
        eventually(|| relay.allocations() == 0).await,
        "the allocation is released when its connection closes"
    );
    let (_third, class) = allocate_over_tcp(addr, &cred, &realm).await;
    assert_eq!(class, 0, "the quota is free again");

    let mut text = String::new();
    let _ = prometheus_client::encoding::text::encode(&mut text, &{
        let mut r = prometheus_client::registry::Registry::with_prefix("t");
        r.register_collector(Box::new(stream_metrics));
        r
    });
    assert!(
        text.contains("t_stream_connections_accepted_total{transport=\"tcp\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("t_stream_connections_open{transport=\"tcp\"} 1"),
        "{text}"
    );
    tasks.stop().await;
    relay.close().await;
}

/// RFC 8656 section 12.4 relies on the 5-tuple: ChannelData from a UDP source that has
/// the same ip:port as a TCP client (on a listener address shared by UDP and TCP) does
/// not reach that TCP client's allocation; the TCP client's own ChannelData does.
#[tokio::test]
async fn udp_packets_from_a_tcp_clients_address_do_not_reach_its_allocation() {
    let cfg = switchboard_config::load_development(Component::Relay).expect("dev config");
    let realm = cfg.turn.realm.clone();
    let cred = mint(
        cfg.turn.secrets.signing(),
        "tcp-user",
        Duration::from_secs(600),
        switchboard_config::unix_now(),
    );
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("udp");
    let addr = udp.local_addr().expect("addr");
    let listener = TcpListener::bind(addr)
        .await
        .expect("tcp on the same address");
    let streams = StreamListeners::new(StreamConfig::default(), vec![listener], Vec::new(), None)
        .expect("streams");
    let mut transports: Vec<Arc<dyn ClientTransport>> = vec![Arc::new(udp)];
    transports.extend(streams.client_transports());
    let relay = Relay::start_on_transports(&cfg, transports, Arc::new(Metrics::new()))
        .await
        .expect("start");
    let tasks = streams.spawn();

    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("addr"))
        .expect("bind");
    let mut tcp = socket.connect(addr).await.expect("connect");
    let client = tcp.local_addr().expect("client addr");
    let challenge = transact(&mut tcp, &allocate(None)).await;
    let nonce = crate::wire::text(&challenge, ATTR_NONCE).expect("nonce");
    let ok = transact(&mut tcp, &allocate(Some((&cred, &realm, &nonce)))).await;
    assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE, "{ok}");

    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("peer");
    let peer_addr = peer.local_addr().expect("addr");
    let alloc = relay_alloc(&relay, addr, client);
    alloc.bind_channel(0x4001, peer_addr, std::time::Instant::now());

    let spoofed = tokio::net::UdpSocket::bind(client)
        .await
        .expect("same ip:port over UDP");
    let mut msg = vec![0x40, 0x01, 0x00, 0x04];
    msg.extend_from_slice(b"UDP!");
    spoofed.send_to(&msg, addr).await.expect("send");
    // A Binding right behind it on the same socket: once answered, the ChannelData before
    // it has been classified (one read loop per UDP socket, in order).
    let mut binding = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    binding.extend_from_slice(&[3u8; 12]);
    spoofed.send_to(&binding, addr).await.expect("send");
    let mut buf = [0u8; 64];
    tokio::time::timeout(Duration::from_secs(5), spoofed.recv_from(&mut buf))
        .await
        .expect("Binding answered in time")
        .expect("recv");
    let mut own = BytesMut::new();
    crate::transport::framing::encode_for_stream(
        &[0x40, 0x01, 0x00, 0x04, b'T', b'C', b'P', b'!'],
        &mut own,
    );
    tcp.write_all(&own).await.expect("write");
    let mut buf = [0u8; 64];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
        .await
        .expect("in time")
        .expect("recv");
    assert_eq!(&buf[..n], b"TCP!");
    tasks.stop().await;
    relay.close().await;
}

fn relay_alloc(
    relay: &Relay,
    local: SocketAddr,
    client: SocketAddr,
) -> Arc<crate::control::tables::AllocState> {
    relay
        .gate()
        .tables
        .get(&crate::control::tables::ClientKey {
            stream: true,
            local,
            client,
        })
        .expect("the TCP client's allocation")
}

/// `send_to` goes to the connection's queue; a full queue drops the message like a
/// datagram (the core never waits on a slow reader); an unknown client is an error.
#[tokio::test]
async fn send_to_queues_per_connection_and_drops_when_the_queue_is_full() {
    let local: SocketAddr = "127.0.0.1:3478".parse().expect("addr");
    let peer: SocketAddr = "192.0.2.7:5000".parse().expect("addr");
    let server = StreamServer::new(StreamConfig::default(), mpsc::channel(1).0);
    let metrics = Arc::new(StreamMetrics::new(server));
    let (t, tx) = StreamTransport::new(local, Transport::Tcp, metrics);
    let (outbound, mut queue) = mpsc::channel(1);
    tx.send(StreamEvent::Opened(StreamClient {
        id: 1,
        transport: Transport::Tcp,
        peer,
        local,
        outbound,
        allocated: Arc::default(),
    }))
    .await
    .expect("event");
    let mut framer = Framer::new();
    framer.push(&[0x40, 0x00, 0x00, 0x00]);
    let frame = framer.poll_frame().expect("framed").expect("a frame");
    tx.send(StreamEvent::Frame { id: 1, frame })
        .await
        .expect("event");
    let mut buf = [0u8; 16];
    let got = t.recv(&mut buf).await.expect("recv");
    assert_eq!(got, Received::Message { len: 4, from: peer });

    assert_eq!(t.send_to(b"one", peer).await.expect("queued"), 3);
    assert_eq!(
        t.send_to(b"two", peer)
            .await
            .expect("dropped, not an error"),
        3
    );
    assert_eq!(queue.recv().await.as_deref(), Some(&b"one"[..]));
    assert!(queue.try_recv().is_err(), "the second was dropped");
    let unknown = "192.0.2.8:5000".parse().expect("addr");
    assert!(t.send_to(b"x", unknown).await.is_err());

    tx.send(StreamEvent::Closed {
        id: 1,
        reason: CloseReason::PeerClosed,
    })
    .await
    .expect("event");
    assert_eq!(
        t.recv(&mut buf).await.expect("recv"),
        Received::Closed(peer)
    );
    assert_eq!(t.connections(), 0);
    assert!(t.send_to(b"late", peer).await.is_err());
}
