//! The assembled relay (our layer + the real `turn` crate) over an in-memory stream-like
//! transport: the seam a TCP/TLS multiplexer uses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use stun::agent::TransactionId;
use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, METHOD_ALLOCATE, METHOD_REFRESH, Message, MessageType,
    Setter,
};
use stun::textattrs::TextAttribute;
use switchboard_config::Component;
use switchboard_config::credentials::mint;
use tokio::sync::{Mutex, mpsc};
use turn::proto::PROTO_UDP;
use turn::proto::reqtrans::RequestedTransport;

use super::*;
use crate::transport::{ClientTransport, Received};

/// (message, connection that closed, sender).
type Incoming = (Vec<u8>, Option<SocketAddr>, SocketAddr);

/// Messages in through a channel, messages out into another.
#[derive(Debug)]
struct ChannelTransport {
    local: SocketAddr,
    stream: bool,
    inbound: Mutex<mpsc::Receiver<Incoming>>,
    outbound: mpsc::UnboundedSender<Vec<u8>>,
}

#[async_trait]
impl ClientTransport for ChannelTransport {
    async fn recv(&self, buf: &mut [u8]) -> std::io::Result<Received> {
        match self.inbound.lock().await.recv().await {
            Some((bytes, None, from)) => {
                buf[..bytes.len()].copy_from_slice(&bytes);
                Ok(Received::Message {
                    len: bytes.len(),
                    from,
                })
            }
            Some((_, Some(closed), _)) => Ok(Received::Closed(closed)),
            None => std::future::pending().await,
        }
    }
    async fn send_to(&self, buf: &[u8], _client: SocketAddr) -> std::io::Result<usize> {
        let _ = self.outbound.send(buf.to_vec());
        Ok(buf.len())
    }
    fn try_send_to(&self, buf: &[u8], _client: SocketAddr) -> std::io::Result<()> {
        let _ = self.outbound.send(buf.to_vec());
        Ok(())
    }
    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
    fn is_stream(&self) -> bool {
        self.stream
    }
}

fn allocate(tid: TransactionId, auth: Option<(&str, &str, &str, &str)>) -> Vec<u8> {
    let mut setters: Vec<Box<dyn Setter>> = vec![
        Box::new(tid),
        Box::new(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST)),
        Box::new(RequestedTransport {
            protocol: PROTO_UDP,
        }),
    ];
    if let Some((user, pass, realm, nonce)) = auth {
        setters.push(Box::new(TextAttribute::new(ATTR_USERNAME, user.into())));
        setters.push(Box::new(TextAttribute::new(ATTR_REALM, realm.into())));
        setters.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce.into())));
        setters.push(Box::new(MessageIntegrity::new_long_term_integrity(
            user.into(),
            realm.into(),
            pass.into(),
        )));
    }
    let mut m = Message::new();
    m.build(&setters).expect("build");
    m.raw
}

async fn next(out: &mut mpsc::UnboundedReceiver<Vec<u8>>) -> Message {
    let bytes = tokio::time::timeout(Duration::from_secs(5), out.recv())
        .await
        .expect("a response in time")
        .expect("open");
    crate::wire::parse(&bytes).expect("STUN")
}

/// RFC 8656 section 7.4 over a stream transport: when the connection ends, the crate
/// deletes the allocation (it "dies with its connection", issue 3).
#[tokio::test]
async fn a_stream_client_that_disconnects_loses_its_allocation() {
    let cfg = switchboard_config::load_development(Component::Relay).expect("dev config");
    let realm = cfg.turn.realm.clone();
    let cred = mint(
        cfg.turn.secrets.signing(),
        "stream-user",
        Duration::from_secs(600),
        switchboard_config::unix_now(),
    );
    let (in_tx, in_rx) = mpsc::channel(16);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel();
    let transport = Arc::new(ChannelTransport {
        local: "127.0.0.1:3478".parse().expect("addr"),
        stream: true,
        inbound: Mutex::new(in_rx),
        outbound: out_tx,
    });
    let relay = Relay::start_on_transports(&cfg, vec![transport], Arc::new(Metrics::new()))
        .await
        .expect("start");
    let client: SocketAddr = "198.51.100.5:5555".parse().expect("addr");

    in_tx
        .send((allocate(TransactionId::new(), None), None, client))
        .await
        .expect("send");
    let challenge = next(&mut out_rx).await;
    let nonce = crate::wire::text(&challenge, ATTR_NONCE).expect("nonce");
    in_tx
        .send((
            allocate(
                TransactionId::new(),
                Some((&cred.username, &cred.password, &realm, &nonce)),
            ),
            None,
            client,
        ))
        .await
        .expect("send");
    let ok = next(&mut out_rx).await;
    assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE, "{ok}");
    assert_eq!(relay.allocations(), 1);

    in_tx
        .send((Vec::new(), Some(client), client))
        .await
        .expect("send");
    let released = next(&mut out_rx).await;
    assert_eq!(
        released.typ,
        MessageType::new(METHOD_REFRESH, CLASS_SUCCESS_RESPONSE),
        "{released}"
    );
    assert_eq!(relay.allocations(), 0);
    relay.close().await;
}

/// A UDP and a TCP listener on one ip:port, and a UDP and a TCP client with one ip:port:
/// each gets its own allocation, in the crate (one allocation manager per listener) and in
/// our client table (keyed by transport kind too).
#[tokio::test]
async fn a_udp_and_a_tcp_client_with_one_ip_port_each_get_an_allocation() {
    let cfg = switchboard_config::load_development(Component::Relay).expect("dev config");
    let realm = cfg.turn.realm.clone();
    let local: SocketAddr = "127.0.0.1:3478".parse().expect("addr");
    let client: SocketAddr = "198.51.100.6:6666".parse().expect("addr");
    let mut transports: Vec<Arc<dyn ClientTransport>> = Vec::new();
    let mut pipes = Vec::new();
    for stream in [false, true] {
        let (in_tx, in_rx) = mpsc::channel(16);
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        transports.push(Arc::new(ChannelTransport {
            local,
            stream,
            inbound: Mutex::new(in_rx),
            outbound: out_tx,
        }));
        pipes.push((in_tx, out_rx));
    }
    let relay = Relay::start_on_transports(&cfg, transports, Arc::new(Metrics::new()))
        .await
        .expect("start");
    for (i, (in_tx, out_rx)) in pipes.iter_mut().enumerate() {
        let cred = mint(
            cfg.turn.secrets.signing(),
            &format!("user-{i}"),
            Duration::from_secs(600),
            switchboard_config::unix_now(),
        );
        in_tx
            .send((allocate(TransactionId::new(), None), None, client))
            .await
            .expect("send");
        let nonce = crate::wire::text(&next(out_rx).await, ATTR_NONCE).expect("nonce");
        let auth = Some((
            cred.username.as_str(),
            cred.password.as_str(),
            realm.as_str(),
            nonce.as_str(),
        ));
        in_tx
            .send((allocate(TransactionId::new(), auth), None, client))
            .await
            .expect("send");
        let ok = next(out_rx).await;
        assert_eq!(ok.typ.class, CLASS_SUCCESS_RESPONSE, "transport {i}: {ok}");
    }
    assert_eq!(relay.allocations(), 2);
    relay.close().await;
}
