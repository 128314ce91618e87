//! Loopback tests of the stream server with a fake core that records events.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::*;
use crate::transport::framing::{FrameKind, MAGIC_COOKIE};
use crate::transport::tls::tests::{TestPki, files_in};

/// Bound on any single wait, so a broken server fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    addr: SocketAddr,
    server: StreamServer,
    events: mpsc::Receiver<StreamEvent>,
    _stop: oneshot::Sender<()>,
}

async fn start(config: StreamConfig, tls: Option<Arc<TlsReloader>>) -> Harness {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, events) = mpsc::channel(1024);
    let server = StreamServer::new(config, tx);
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = server.clone();
    tokio::spawn(async move {
        serving
            .serve(listener, tls, async {
                let _ = stopped.await;
            })
            .await;
    });
    Harness {
        addr,
        server,
        events,
        _stop: stop,
    }
}

fn config() -> StreamConfig {
    StreamConfig {
        idle_timeout: Duration::from_secs(60),
        ..StreamConfig::default()
    }
}

impl Harness {
    async fn next(&mut self) -> StreamEvent {
        timeout(WAIT, self.events.recv())
            .await
            .expect("event within bound")
            .expect("server alive")
    }

    async fn opened(&mut self) -> StreamClient {
        match self.next().await {
            StreamEvent::Opened(client) => client,
            other => panic!("expected Opened, got {other:?}"),
        }
    }

    async fn frame(&mut self) -> (ClientId, Frame) {
        match self.next().await {
            StreamEvent::Frame { id, frame } => (id, frame),
            other => panic!("expected Frame, got {other:?}"),
        }
    }

    async fn closed(&mut self) -> (ClientId, CloseReason) {
        match self.next().await {
            StreamEvent::Closed { id, reason } => (id, reason),
            other => panic!("expected Closed, got {other:?}"),
        }
    }

    async fn connect(&mut self) -> (TcpStream, StreamClient) {
        let tcp = TcpStream::connect(self.addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let client = self.opened().await;
        (tcp, client)
    }
}

fn binding_request() -> Vec<u8> {
    let mut m = vec![0x00, 0x01, 0x00, 0x00];
    m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m.extend_from_slice(&[7; 12]);
    m
}

fn channel_data(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = channel.to_be_bytes().to_vec();
    m.extend_from_slice(&u16::try_from(payload.len()).expect("fits").to_be_bytes());
    m.extend_from_slice(payload);
    m
}

fn padded(message: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_for_stream(message, &mut out);
    out.to_vec()
}

/// Waits until the server has closed `stream`: EOF, or a reset.
async fn assert_closed_by_server<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = [0u8; 64];
    let read = timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("closed within bound");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected the server to close the connection, read {read:?}"
    );
}

#[tokio::test]
async fn split_and_coalesced_frames_reach_the_core_intact_rfc8656_s12_5() {
    let mut h = start(config(), None).await;
    let (mut tcp, client) = h.connect().await;
    assert_eq!(client.transport, Transport::Tcp);
    assert_eq!(client.peer, tcp.local_addr().expect("local"));

    let split = channel_data(0x4001, b"split across writes");
    for byte in padded(&split) {
        tcp.write_all(&[byte]).await.expect("write");
    }
    let (id, frame) = h.frame().await;
    assert_eq!(id, client.id);
    assert_eq!(
        frame.as_bytes(),
        &split[..],
        "padding stripped, bytes intact"
    );

    let msgs = [
        binding_request(),
        channel_data(0x4002, b"a"),
        channel_data(0x4003, b""),
    ];
    let wire: Vec<u8> = msgs.iter().flat_map(|m| padded(m)).collect();
    tcp.write_all(&wire).await.expect("write");
    for msg in &msgs {
        let (_, frame) = h.frame().await;
        assert_eq!(frame.as_bytes(), &msg[..]);
    }
}

#[tokio::test]
async fn outbound_channeldata_is_written_padded_to_4_bytes_rfc8656_s12_5() {
    let mut h = start(config(), None).await;
    let (mut tcp, client) = h.connect().await;
    let data = channel_data(0x4005, b"hello");
    let response = binding_request();
    client
        .outbound
        .try_send(Bytes::from(data.clone()))
        .expect("queued");
    client
        .outbound
        .try_send(Bytes::from(response.clone()))
        .expect("queued");

    let mut expected = padded(&data);
    assert_eq!(expected.len(), 12);
    expected.extend_from_slice(&response);
    let mut got = vec![0u8; expected.len()];
    timeout(WAIT, tcp.read_exact(&mut got))
        .await
        .expect("within bound")
        .expect("read");
    assert_eq!(got, expected);
}

#[tokio::test]
async fn a_client_sending_no_complete_frame_within_the_idle_timeout_is_closed() {
    let mut h = start(
        StreamConfig {
            idle_timeout: Duration::from_millis(300),
            ..config()
        },
        None,
    )
    .await;
    let (mut tcp, client) = h.connect().await;
    // Slowloris: a header that never gets its body.
    tcp.write_all(&binding_request()[..3]).await.expect("write");
    assert_closed_by_server(&mut tcp).await;
    assert_eq!(h.closed().await, (client.id, CloseReason::Idle));
    assert_eq!(h.server.stats().closed_idle, 1);
    assert_eq!(h.server.stats().open, 0);
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_counted() {
    let mut h = start(
        StreamConfig {
            max_connections: 2,
            ..config()
        },
        None,
    )
    .await;
    let (first, first_client) = h.connect().await;
    let (mut second, _second_client) = h.connect().await;

    let mut third = TcpStream::connect(h.addr).await.expect("connect");
    assert_closed_by_server(&mut third).await;
    assert_eq!(h.server.stats().rejected_over_cap, 1);
    assert_eq!(h.server.stats().open, 2);

    drop(first);
    // The next event is the first client's close: the refused one was never opened.
    assert_eq!(h.closed().await, (first_client.id, CloseReason::PeerClosed));
    let (_fourth, fourth_client) = h.connect().await;
    assert!(fourth_client.id > first_client.id);
    assert_eq!(h.server.stats().accepted, 3);

    second
        .write_all(&padded(&binding_request()))
        .await
        .expect("write");
    assert_eq!(
        h.frame().await.1.kind(),
        FrameKind::Stun,
        "admitted ones still work"
    );
}

#[tokio::test]
async fn garbage_closes_only_the_connection_that_sent_it() {
    let mut h = start(config(), None).await;
    let (mut good, good_client) = h.connect().await;
    let (mut bad, bad_client) = h.connect().await;

    bad.write_all(&[
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
    ])
    .await
    .expect("write");
    assert_closed_by_server(&mut bad).await;
    assert_eq!(
        h.closed().await,
        (
            bad_client.id,
            CloseReason::Framing(FramingError::UnalignedStunLength(0x0102))
        )
    );
    assert_eq!(h.server.stats().closed_framing, 1);

    let msg = channel_data(0x4010, b"still relaying");
    good.write_all(&padded(&msg)).await.expect("write");
    let (id, frame) = h.frame().await;
    assert_eq!((id, frame.as_bytes()), (good_client.id, &msg[..]));
}

#[tokio::test]
async fn dropping_the_outbound_sender_closes_the_connection() {
    let mut h = start(config(), None).await;
    let (mut tcp, client) = h.connect().await;
    drop(client.outbound);
    assert_closed_by_server(&mut tcp).await;
    assert_eq!(h.closed().await, (client.id, CloseReason::ServerClosed));
}

#[tokio::test]
async fn frames_over_tls_arrive_and_replies_come_back_padded() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = files_in(&dir);
    pki.write_leaf(&files);
    let reloader = Arc::new(TlsReloader::load(files).expect("load"));
    let mut h = start(config(), Some(reloader)).await;

    let mut tls = pki.connect(h.addr).await;
    let client = h.opened().await;
    assert_eq!(client.transport, Transport::Tls);

    let msgs = [binding_request(), channel_data(0x4020, b"xyz")];
    for msg in &msgs {
        tls.write_all(&padded(msg)).await.expect("write");
    }
    tls.flush().await.expect("flush");
    for msg in &msgs {
        assert_eq!(h.frame().await.1.as_bytes(), &msg[..]);
    }

    let reply = channel_data(0x4020, b"back");
    client
        .outbound
        .try_send(Bytes::from(reply.clone()))
        .expect("queued");
    let mut got = vec![0u8; padded(&reply).len()];
    timeout(WAIT, tls.read_exact(&mut got))
        .await
        .expect("within bound")
        .expect("read");
    assert_eq!(got, padded(&reply));
}

/// A TLS client hanging up with close_notify (RFC 8446 section 6.1) or with a bare TCP FIN
/// ends as `PeerClosed`, like a TCP client's EOF, not as an I/O error.
#[tokio::test]
async fn a_tls_client_hanging_up_with_or_without_close_notify_is_peer_closed() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = files_in(&dir);
    pki.write_leaf(&files);
    let reloader = Arc::new(TlsReloader::load(files).expect("load"));
    let mut h = start(config(), Some(reloader)).await;

    let mut notify = pki.connect(h.addr).await;
    let notifying = h.opened().await;
    notify.shutdown().await.expect("close_notify");
    assert_eq!(h.closed().await, (notifying.id, CloseReason::PeerClosed));

    let bare = pki.connect(h.addr).await;
    let hanging_up = h.opened().await;
    // A FIN, not a close: closing with the unread session tickets would send a reset.
    let (mut tcp, _) = bare.into_inner();
    tcp.shutdown().await.expect("FIN");
    assert_eq!(h.closed().await, (hanging_up.id, CloseReason::PeerClosed));
}

#[tokio::test]
async fn a_client_that_never_finishes_the_tls_handshake_is_closed_after_the_timeout() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = files_in(&dir);
    pki.write_leaf(&files);
    let reloader = Arc::new(TlsReloader::load(files).expect("load"));
    let mut h = start(
        StreamConfig {
            handshake_timeout: Duration::from_millis(300),
            ..config()
        },
        Some(reloader),
    )
    .await;

    let mut silent = TcpStream::connect(h.addr).await.expect("connect");
    assert_closed_by_server(&mut silent).await;
    assert_eq!(h.server.stats().handshake_failed, 1);
    assert!(h.events.try_recv().is_err(), "never presented to the core");
    assert_eq!(h.server.stats().open, 0, "its slot is free again");
}

#[tokio::test(start_paused = true)]
async fn the_driver_runs_on_any_byte_stream_in_order_and_idles_out_on_tokio_time() {
    let (mut client, server) = tokio::io::duplex(4096);
    let (events_tx, mut events) = mpsc::channel(16);
    let (outbound, outbound_rx) = mpsc::channel(64);
    let driver = tokio::spawn(async move {
        let idle = Duration::from_secs(60);
        drive_connection(server, 7, idle, Framer::new(), &events_tx, outbound_rx).await
    });

    // Queued together, written in order, each padded on its own.
    let replies: Vec<Vec<u8>> = (0..50u8)
        .map(|i| channel_data(0x4000 + u16::from(i), &vec![i; usize::from(i % 5)]))
        .collect();
    for reply in &replies {
        outbound
            .try_send(Bytes::from(reply.clone()))
            .expect("queued");
    }
    let expected: Vec<u8> = replies.iter().flat_map(|r| padded(r)).collect();
    let mut got = vec![0u8; expected.len()];
    client.read_exact(&mut got).await.expect("read");
    assert_eq!(got, expected);

    client
        .write_all(&padded(&binding_request()))
        .await
        .expect("write");
    match events.recv().await {
        Some(StreamEvent::Frame { id: 7, frame }) => assert_eq!(frame.kind(), FrameKind::Stun),
        other => panic!("expected a frame from client 7, got {other:?}"),
    }

    // Half a header, then silence: the paused clock jumps to the idle deadline.
    client.write_all(&[0x40]).await.expect("write");
    assert_eq!(driver.await.expect("driver task"), CloseReason::Idle);
    drop(outbound);
}

#[tokio::test]
async fn a_certificate_reload_reaches_new_tls_clients_while_a_connected_one_keeps_relaying() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = files_in(&dir);
    let old_leaf = pki.write_leaf(&files);
    let reloader = Arc::new(TlsReloader::load(files.clone()).expect("load"));
    let mut h = start(config(), Some(Arc::clone(&reloader))).await;

    let mut before = pki.connect(h.addr).await;
    let before_client = h.opened().await;
    let served = |s: &tokio_rustls::client::TlsStream<TcpStream>| {
        s.get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first().cloned())
    };
    assert_eq!(served(&before), Some(old_leaf));

    let new_leaf = pki.write_leaf(&files);
    reloader.reload().expect("reload");
    let after = pki.connect(h.addr).await;
    let _after_client = h.opened().await;
    assert_eq!(
        served(&after),
        Some(new_leaf),
        "new handshakes get the new cert"
    );

    let msg = channel_data(0x4030, b"same allocation");
    before.write_all(&padded(&msg)).await.expect("write");
    before.flush().await.expect("flush");
    let (id, frame) = h.frame().await;
    assert_eq!((id, frame.as_bytes()), (before_client.id, &msg[..]));
    before_client
        .outbound
        .try_send(Bytes::from(msg.clone()))
        .expect("queued");
    let mut back = vec![0u8; padded(&msg).len()];
    timeout(WAIT, before.read_exact(&mut back))
        .await
        .expect("within bound")
        .expect("read");
    assert_eq!(
        back,
        padded(&msg),
        "the old connection still relays both ways"
    );
}

/// SPEC section 3.1: a connection that makes no allocation within the idle timeout is
/// closed even while it keeps sending complete messages (Binding requests here); one whose
/// core reported an allocation stays open.
#[tokio::test]
async fn a_connection_without_an_allocation_is_closed_after_the_idle_timeout_even_when_busy() {
    let mut h = start(
        StreamConfig {
            // 20 ticks of margin for the kept connection under load.
            idle_timeout: Duration::from_secs(2),
            ..config()
        },
        None,
    )
    .await;
    let (mut kept, kept_client) = h.connect().await;
    kept_client.allocated.store(true, Ordering::Release);
    let (mut busy, busy_client) = h.connect().await;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut closed = None;
    for _ in 0..200 {
        tick.tick().await;
        kept.write_all(&padded(&binding_request()))
            .await
            .expect("the allocated connection stays writable");
        let _ = busy.write_all(&padded(&binding_request())).await;
        while let Ok(event) = h.events.try_recv() {
            if let StreamEvent::Closed { id, reason } = event {
                closed = Some((id, reason));
            }
        }
        if closed.is_some() {
            break;
        }
    }
    assert_eq!(closed, Some((busy_client.id, CloseReason::NoAllocation)));
    assert_closed_by_server(&mut busy).await;
    assert_eq!(h.server.stats().closed_no_allocation, 1);
    kept.write_all(&padded(&binding_request()))
        .await
        .expect("write");
    let (id, _) = h.frame().await;
    assert_eq!(id, kept_client.id, "the allocated connection still serves");
    drop(kept_client);
}

/// SPEC section 3.1: at most `max_connections_per_ip` connections per source IP, on top of
/// the global cap; more are closed at once and counted, other sources are unaffected, and a
/// closed connection frees its place.
#[tokio::test]
async fn connections_over_the_per_source_cap_are_closed_and_other_sources_are_served() {
    let mut h = start(
        StreamConfig {
            max_connections_per_ip: 2,
            ..config()
        },
        None,
    )
    .await;
    let addr = h.addr;
    let from = |ip: &str| {
        let ip: std::net::IpAddr = ip.parse().expect("ip");
        async move {
            let s = tokio::net::TcpSocket::new_v4().expect("socket");
            s.bind(SocketAddr::new(ip, 0)).expect("bind source");
            s.connect(addr).await.expect("connect")
        }
    };
    let first = from("127.0.0.2").await;
    let first_client = h.opened().await;
    let _second = from("127.0.0.2").await;
    let _second_client = h.opened().await;
    let mut third = from("127.0.0.2").await;
    assert_closed_by_server(&mut third).await;
    assert_eq!(h.server.stats().rejected_per_ip, 1);
    let _other = from("127.0.0.3").await;
    let other_client = h.opened().await;
    assert_eq!(other_client.peer.ip().to_string(), "127.0.0.3");
    drop(first);
    assert_eq!(h.closed().await, (first_client.id, CloseReason::PeerClosed));
    let _again = from("127.0.0.2").await;
    let _again_client = h.opened().await;
    assert_eq!(h.server.stats().rejected_per_ip, 1);
}
