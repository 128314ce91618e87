//! The client transport our layer runs on: datagrams in and out, keyed by client address.
//! UDP sockets implement it directly; a TCP/TLS multiplexer (issue 3) can present each
//! stream as its own client address and keep its framing on its side of this seam.
//!
//! `stream_transport` accepts TCP and TLS connections (`tls`) and presents them through
//! `stream` as one [`ClientTransport`]; `framing` cuts a byte stream into STUN and
//! ChannelData messages (RFC 8656 section 12.5); `listening` is the set of addresses the
//! relay listens on (which the peer policy refuses).

pub mod framing;
pub mod listening;
pub mod stream;
pub mod stream_transport;
pub mod tls;

use std::io;
use std::net::SocketAddr;

use async_trait::async_trait;
use tokio::net::UdpSocket;

/// What a transport delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// One whole STUN or ChannelData message of `len` bytes from `from`.
    Message { len: usize, from: SocketAddr },
    /// The client's connection ended (streams only): its allocation is released at once
    /// (RFC 6062-style lifetime: an allocation over TCP/TLS dies with its connection).
    Closed(SocketAddr),
}

#[async_trait]
pub trait ClientTransport: Send + Sync + std::fmt::Debug + 'static {
    /// The next message (or connection end) from any client.
    async fn recv(&self, buf: &mut [u8]) -> io::Result<Received>;
    /// Sends one whole message to `client`.
    async fn send_to(&self, buf: &[u8], client: SocketAddr) -> io::Result<usize>;
    /// Sends one whole message to `client` without waiting: a full buffer or queue drops
    /// it (as the kernel drops a datagram). The data plane and the engine's answers use it.
    fn try_send_to(&self, buf: &[u8], client: SocketAddr) -> io::Result<()> {
        let _ = (buf, client);
        Err(io::ErrorKind::Unsupported.into())
    }
    /// The listener's address (the server side of the 5-tuple).
    fn local_addr(&self) -> io::Result<SocketAddr>;
    /// Whether clients reach us over a connection (TCP/TLS): their address is verified by
    /// the handshake, and a request we drop is never retransmitted (RFC 8489 section
    /// 6.2.2), so the per-source limit for unauthenticated requests does not apply.
    fn is_stream(&self) -> bool {
        false
    }
    /// `client` now holds an allocation. A stream transport uses it to close connections
    /// that make none within the idle timeout (SPEC section 3.1); datagram ones ignore it.
    fn allocation_made(&self, _client: SocketAddr) {}
    /// The UDP socket underneath, when there is one: the data plane sends several datagrams
    /// for one client through it in one segmented (GSO) send.
    fn udp_socket(&self) -> Option<&UdpSocket> {
        None
    }
}

#[async_trait]
impl ClientTransport for UdpSocket {
    async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        let (len, from) = UdpSocket::recv_from(self, buf).await?;
        Ok(Received::Message { len, from })
    }

    async fn send_to(&self, buf: &[u8], client: SocketAddr) -> io::Result<usize> {
        UdpSocket::send_to(self, buf, client).await
    }

    fn try_send_to(&self, buf: &[u8], client: SocketAddr) -> io::Result<()> {
        UdpSocket::try_send_to(self, buf, client).map(|_| ())
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        UdpSocket::local_addr(self)
    }

    fn udp_socket(&self) -> Option<&UdpSocket> {
        Some(self)
    }
}
