//! A small TURN client over any byte stream (TCP, or TLS through tokio-rustls), framing
//! by hand as RFC 8656 section 12.5 says (independently of the relay's own framer):
//! STUN delimited by its length field, ChannelData padded to 4 bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stun::agent::TransactionId;
use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::ErrorCodeAttribute;
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_ERROR_RESPONSE, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, Getter, METHOD_ALLOCATE,
    METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, Message, MessageType, Method, Setter,
};
use stun::textattrs::TextAttribute;
use switchboard_config::credentials::Credential;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use turn::proto::PROTO_UDP;
use turn::proto::channum::ChannelNumber;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;

pub const REALM: &str = "switchboard";
const WAIT: Duration = Duration::from_secs(5);

/// One message read off the stream.
#[derive(Debug)]
pub enum Incoming {
    Stun(Message),
    ChannelData(u16, Vec<u8>),
}

/// A TURN client on one stream.
#[derive(Debug)]
pub struct StreamTurnClient<S> {
    pub io: S,
    username: String,
    password: String,
    nonce: Option<String>,
}

/// Connects over TLS, trusting only `cert_der` for `localhost`.
pub async fn connect_tls(addr: SocketAddr, cert_der: &[u8]) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(cert_der.to_vec()))
        .expect("trust the test certificate");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.expect("connect tls port");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    timeout(
        WAIT,
        TlsConnector::from(Arc::new(config)).connect(name, tcp),
    )
    .await
    .expect("handshake in time")
    .expect("TLS handshake with the relay")
}

/// The DER of the certificate the server presented.
pub fn served_cert(tls: &TlsStream<TcpStream>) -> Vec<u8> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .expect("a server certificate")
}

fn error_code(m: &Message) -> u16 {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).map_or(0, |()| e.code.0)
}

impl<S: AsyncRead + AsyncWrite + Unpin> StreamTurnClient<S> {
    pub fn new(io: S, cred: &Credential) -> Self {
        Self {
            io,
            username: cred.username.clone(),
            password: cred.password.clone(),
            nonce: None,
        }
    }

    /// Writes one message, padded to a multiple of 4 (RFC 8656 section 12.5).
    pub async fn send_raw(&mut self, msg: &[u8]) {
        let mut out = msg.to_vec();
        out.resize(msg.len().div_ceil(4) * 4, 0);
        self.io.write_all(&out).await.expect("write");
        self.io.flush().await.expect("flush");
    }

    /// Reads one message within the bound.
    pub async fn recv(&mut self) -> Incoming {
        timeout(WAIT, self.read_message())
            .await
            .expect("a message in time")
    }

    async fn read_message(&mut self) -> Incoming {
        let mut head = [0u8; 4];
        self.io.read_exact(&mut head).await.expect("read header");
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        if head[0] >> 6 == 0 {
            let mut rest = vec![0u8; 16 + len];
            self.io.read_exact(&mut rest).await.expect("read STUN");
            let mut m = Message::new();
            m.raw = [&head[..], &rest].concat();
            m.decode().expect("STUN from the relay");
            return Incoming::Stun(m);
        }
        let mut body = vec![0u8; (4 + len).div_ceil(4) * 4 - 4];
        self.io
            .read_exact(&mut body)
            .await
            .expect("read ChannelData");
        body.truncate(len);
        Incoming::ChannelData(u16::from_be_bytes([head[0], head[1]]), body)
    }

    fn build(&self, method: Method, attrs: Vec<Box<dyn Setter>>, sign: bool) -> Message {
        let mut setters: Vec<Box<dyn Setter>> = vec![
            Box::new(TransactionId::new()),
            Box::new(MessageType::new(method, CLASS_REQUEST)),
        ];
        setters.extend(attrs);
        if let (true, Some(nonce)) = (sign, &self.nonce) {
            setters.push(Box::new(TextAttribute::new(
                ATTR_USERNAME,
                self.username.clone(),
            )));
            setters.push(Box::new(TextAttribute::new(ATTR_REALM, REALM.into())));
            setters.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce.clone())));
            setters.push(Box::new(MessageIntegrity::new_long_term_integrity(
                self.username.clone(),
                REALM.into(),
                self.password.clone(),
            )));
        }
        let mut m = Message::new();
        m.build(&setters).expect("build");
        m
    }

    async fn transact(&mut self, m: &Message) -> Message {
        self.send_raw(&m.raw).await;
        for _ in 0..100 {
            if let Incoming::Stun(r) = self.recv().await
                && r.transaction_id == m.transaction_id
            {
                return r;
            }
        }
        panic!("no response to {m}");
    }

    /// A request signed with the credential; a 401/438 first fetches the nonce
    /// (RFC 8489 section 9.2) and the request is retried once.
    pub async fn signed(
        &mut self,
        method: Method,
        attrs: impl Fn() -> Vec<Box<dyn Setter>>,
    ) -> Result<Message, u16> {
        for _ in 0..2 {
            let m = self.build(method, attrs(), true);
            let r = self.transact(&m).await;
            if r.typ.class == CLASS_SUCCESS_RESPONSE {
                return Ok(r);
            }
            assert_eq!(r.typ.class, CLASS_ERROR_RESPONSE, "{r}");
            let code = error_code(&r);
            match (code, TextAttribute::get_from_as(&r, ATTR_NONCE)) {
                (401 | 438, Ok(nonce)) => self.nonce = Some(nonce.text),
                _ => return Err(code),
            }
        }
        Err(401)
    }

    /// RFC 8489 section 6.3: a Binding request is answered with success.
    pub async fn binding_succeeds(&mut self) -> bool {
        let m = self.build(stun::message::METHOD_BINDING, Vec::new(), false);
        self.transact(&m).await.typ.class == CLASS_SUCCESS_RESPONSE
    }

    /// RFC 8656 section 7: Allocate a UDP relayed address.
    pub async fn allocate(&mut self) -> Result<SocketAddr, u16> {
        let r = self
            .signed(METHOD_ALLOCATE, || {
                vec![Box::new(RequestedTransport {
                    protocol: PROTO_UDP,
                })]
            })
            .await?;
        let mut relayed = RelayedAddress::default();
        relayed.get_from(&r).expect("XOR-RELAYED-ADDRESS");
        Ok(SocketAddr::new(relayed.ip, relayed.port))
    }

    /// RFC 8656 section 9: CreatePermission for `peer`; the response code.
    pub async fn create_permission(&mut self, peer: SocketAddr) -> u16 {
        let r = self
            .signed(METHOD_CREATE_PERMISSION, || {
                vec![Box::new(PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                })]
            })
            .await;
        r.map_or_else(|c| c, |_| 200)
    }

    /// RFC 8656 section 12.2: ChannelBind `number` to `peer`; the response code.
    pub async fn channel_bind(&mut self, number: u16, peer: SocketAddr) -> u16 {
        let r = self
            .signed(METHOD_CHANNEL_BIND, || {
                vec![
                    Box::new(ChannelNumber(number)),
                    Box::new(PeerAddress {
                        ip: peer.ip(),
                        port: peer.port(),
                    }),
                ]
            })
            .await;
        r.map_or_else(|c| c, |_| 200)
    }

    /// RFC 8656 section 12.4: ChannelData on `number`, padded for the stream.
    pub async fn send_channel_data(&mut self, number: u16, data: &[u8]) {
        let mut msg = number.to_be_bytes().to_vec();
        msg.extend_from_slice(&u16::try_from(data.len()).expect("fits").to_be_bytes());
        msg.extend_from_slice(data);
        self.send_raw(&msg).await;
    }

    /// The next ChannelData message (skipping anything else).
    pub async fn recv_channel_data(&mut self) -> (u16, Vec<u8>) {
        for _ in 0..100 {
            if let Incoming::ChannelData(n, d) = self.recv().await {
                return (n, d);
            }
        }
        panic!("no ChannelData");
    }
}
