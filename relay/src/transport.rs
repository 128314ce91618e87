//! The client transport our layer runs on: datagrams in and out, keyed by client address.
//! UDP sockets implement it directly; a TCP/TLS multiplexer (issue 3) can present each
//! stream as its own client address and keep its framing on its side of this seam.

use std::io;
use std::net::SocketAddr;

use async_trait::async_trait;
use tokio::net::UdpSocket;

#[async_trait]
pub trait ClientTransport: Send + Sync + std::fmt::Debug + 'static {
    /// The next whole STUN or ChannelData message and the client it came from.
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
    /// Sends one whole message to `client`.
    async fn send_to(&self, buf: &[u8], client: SocketAddr) -> io::Result<usize>;
    /// The listener's address (the server side of the 5-tuple).
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

#[async_trait]
impl ClientTransport for UdpSocket {
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        UdpSocket::recv_from(self, buf).await
    }

    async fn send_to(&self, buf: &[u8], client: SocketAddr) -> io::Result<usize> {
        UdpSocket::send_to(self, buf, client).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        UdpSocket::local_addr(self)
    }
}
