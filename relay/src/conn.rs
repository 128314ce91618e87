//! The I/O layer between sockets and the `turn` crate: [`ListenerConn`] is the `Conn` the
//! crate reads client packets from (our gate runs first, and relays ChannelData/Send
//! itself); [`RelayGenerator`] binds relayed sockets and hands the crate [`RelayConn`]s
//! whose receive side is our peer-to-client fast path.

use std::any::Any;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use switchboard_config::{PortRange, unix_now};
use tokio::net::UdpSocket;
use turn::relay::RelayAddressGenerator;
use webrtc_util::Conn;

use crate::gate::{CRATE_READ_LIMIT, Gate, Inbound, Outbound, SYNTHETIC_CLIENT};
use crate::tables::RelaySlot;
use crate::transport::{ClientTransport, Received};

/// Largest datagram we read from clients or peers.
const MAX_DATAGRAM: usize = 65_536;
/// Socket buffer we ask the kernel for (capped by net.core.[rw]mem_max).
pub const SOCKET_BUFFER: usize = 4 << 20;

fn unsupported() -> webrtc_util::Error {
    webrtc_util::Error::Other("not supported on a TURN listener".into())
}

/// A client-facing listener as the crate sees it.
#[derive(Debug)]
pub struct ListenerConn {
    transport: Arc<dyn ClientTransport>,
    local: SocketAddr,
    gate: Arc<Gate>,
    buf: Mutex<Option<Vec<u8>>>,
}

impl ListenerConn {
    pub fn new(transport: Arc<dyn ClientTransport>, gate: Arc<Gate>) -> std::io::Result<Self> {
        let local = transport.local_addr()?;
        Ok(Self {
            transport,
            local,
            gate,
            buf: Mutex::new(None),
        })
    }

    fn synthetic(buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let req = Gate::synthetic_request();
        let n = req.len().min(buf.len());
        buf[..n].copy_from_slice(&req[..n]);
        Ok((n, SYNTHETIC_CLIENT))
    }

    fn take_buf(&self) -> Vec<u8> {
        self.buf
            .lock()
            .ok()
            .and_then(|mut g| g.take())
            .unwrap_or_else(|| vec![0; MAX_DATAGRAM])
    }

    fn put_buf(&self, b: Vec<u8>) {
        if let Ok(mut g) = self.buf.lock() {
            *g = Some(b);
        }
    }
}

#[async_trait]
impl Conn for ListenerConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(unsupported())
    }

    async fn recv(&self, _buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Err(unsupported())
    }

    async fn recv_from(&self, buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        if self.gate.begin_injection(Instant::now()) {
            return Self::synthetic(buf);
        }
        let mut own = self.take_buf();
        loop {
            let (n, client) = match self.transport.recv(&mut own).await {
                Ok(Received::Message { len, from }) => (len, from),
                Ok(Received::Closed(client)) => {
                    // Hand the crate a Refresh with LIFETIME 0 so it deletes the allocation.
                    match self
                        .gate
                        .client_closed(self.transport.as_ref(), self.local, client)
                    {
                        Some(bytes) if bytes.len() <= buf.len() => {
                            buf[..bytes.len()].copy_from_slice(&bytes);
                            self.put_buf(own);
                            return Ok((bytes.len(), client));
                        }
                        _ => continue,
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
                    ) =>
                {
                    continue;
                }
                Err(e) => {
                    self.put_buf(own);
                    return Err(e.into());
                }
            };
            let now = Instant::now();
            let outcome = self.gate.handle_client(
                &self.transport,
                self.local,
                &own[..n],
                client,
                now,
                unix_now(),
            );
            match outcome {
                Inbound::ToCrate(bytes) if bytes.len() <= buf.len() => {
                    buf[..bytes.len()].copy_from_slice(&bytes);
                    self.put_buf(own);
                    return Ok((bytes.len(), client));
                }
                Inbound::ToCrate(bytes) => {
                    // The gate refuses anything over CRATE_READ_LIMIT before recording it;
                    // this only happens if the crate's buffer shrank below that.
                    tracing::warn!(
                        len = bytes.len(),
                        buffer = buf.len(),
                        limit = CRATE_READ_LIMIT,
                        "Request larger than the crate's read buffer dropped"
                    );
                }
                Inbound::Drop => {}
                Inbound::Reply(bytes) => {
                    let _ = self.transport.send_to(&bytes, client).await;
                }
                Inbound::ToPeer {
                    alloc,
                    peer,
                    start,
                    len,
                } => {
                    let payload = &own[start..start + len];
                    if alloc.socket.send_to(payload, peer).await.is_ok() {
                        self.gate.metrics.bytes_to_peer.inc_by(len as u64);
                        self.gate.metrics.packets_to_peer.inc();
                    }
                }
            }
            if self.gate.begin_injection(now) {
                self.put_buf(own);
                return Self::synthetic(buf);
            }
        }
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(unsupported())
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        match self.gate.handle_crate_output(
            self.transport.as_ref(),
            self.local,
            buf,
            target,
            Instant::now(),
            unix_now(),
        ) {
            // A failed send to one client (gone, unreachable) is no error of the listener.
            Outbound::Forward => {
                let _ = self.transport.send_to(buf, target).await;
                Ok(buf.len())
            }
            Outbound::Allocated => {
                self.transport.allocation_made(target);
                let _ = self.transport.send_to(buf, target).await;
                Ok(buf.len())
            }
            Outbound::Replace(bytes) => {
                let _ = self.transport.send_to(&bytes, target).await;
                Ok(buf.len())
            }
            Outbound::Swallow => Ok(buf.len()),
        }
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.local)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    /// The crate calls this whenever an allocation closes; the listener stays open and is
    /// stopped through `Server::close` instead.
    async fn close(&self) -> webrtc_util::Result<()> {
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
}

/// A relayed socket as the crate sees it.
#[derive(Debug)]
pub struct RelayConn {
    slot: Arc<RelaySlot>,
    gate: Arc<Gate>,
}

impl RelayConn {
    fn shut(&self) {
        if !self.slot.closed.swap(true, Ordering::AcqRel) {
            self.slot.close_notify.notify_one();
            self.gate.slot_closed(&self.slot);
        }
    }
}

impl Drop for RelayConn {
    fn drop(&mut self) {
        self.shut();
    }
}

#[async_trait]
impl Conn for RelayConn {
    async fn connect(&self, _addr: SocketAddr) -> webrtc_util::Result<()> {
        Err(unsupported())
    }

    async fn recv(&self, _buf: &mut [u8]) -> webrtc_util::Result<usize> {
        Err(unsupported())
    }

    /// Our peer-to-client fast path; returns only when the socket closes. The crate's
    /// per-allocation task calls it, so each allocation relays on its own task.
    async fn recv_from(&self, _buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let mut inb = vec![0u8; MAX_DATAGRAM];
        let mut out = Vec::with_capacity(2048);
        loop {
            if self.slot.is_closed() {
                return Err(webrtc_util::Error::ErrUseClosedNetworkConn);
            }
            let (n, peer) = tokio::select! {
                r = self.slot.socket.recv_from(&mut inb) => match r {
                    Ok(v) => v,
                    Err(_) => continue,
                },
                () = self.slot.close_notify.notified() => continue,
            };
            let Some(alloc) = self.slot.state.get() else {
                continue;
            };
            if self
                .gate
                .from_peer(alloc, &inb[..n], peer, Instant::now(), &mut out)
                && alloc.transport.send_to(&out, alloc.client).await.is_ok()
            {
                self.gate.metrics.bytes_to_client.inc_by(n as u64);
                self.gate.metrics.packets_to_client.inc();
            }
        }
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(unsupported())
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        if !self.gate.peer_allowed(target) {
            self.gate.metrics.denied_peer("send");
            return Ok(buf.len());
        }
        Ok(self.slot.socket.send_to(buf, target).await?)
    }

    fn local_addr(&self) -> webrtc_util::Result<SocketAddr> {
        Ok(self.slot.socket.local_addr()?)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        None
    }

    async fn close(&self) -> webrtc_util::Result<()> {
        self.shut();
        Ok(())
    }

    fn as_any(&self) -> &(dyn Any + Send + Sync) {
        self
    }
}

/// Binds relayed sockets on `relay_ip` within `port_range`, advertising `external_ip`.
#[derive(Debug)]
pub struct RelayGenerator {
    pub relay_ip: IpAddr,
    pub external_ip: IpAddr,
    pub ports: PortRange,
    pub gate: Arc<Gate>,
}

/// Binds a UDP socket with large buffers (and SO_REUSEPORT when asked), non-blocking.
pub fn bind_udp(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

#[async_trait]
impl RelayAddressGenerator for RelayGenerator {
    fn validate(&self) -> Result<(), turn::Error> {
        Ok(())
    }

    async fn allocate_conn(
        &self,
        use_ipv4: bool,
        requested_port: u16,
    ) -> Result<(Arc<dyn Conn + Send + Sync>, SocketAddr), turn::Error> {
        if use_ipv4 != self.relay_ip.is_ipv4() {
            // The crate answers 508; one relay address family per instance.
            return Err(turn::Error::ErrInvalidRequestedFamilyValue);
        }
        let span = u32::from(self.ports.end) - u32::from(self.ports.start) + 1;
        let candidates: Vec<u16> = if requested_port != 0 {
            vec![requested_port]
        } else {
            (0..128)
                .map(|_| {
                    let off = rand::random::<u32>() % span;
                    (u32::from(self.ports.start) + off) as u16
                })
                .collect()
        };
        for port in candidates {
            if !self.ports.contains(port) || self.gate.tables.is_relay_port(port) {
                continue;
            }
            let Ok(std_sock) = bind_udp(SocketAddr::new(self.relay_ip, port), false) else {
                continue;
            };
            let socket = UdpSocket::from_std(std_sock)?;
            let slot = Arc::new(RelaySlot::new(
                socket,
                SocketAddr::new(self.external_ip, port),
            ));
            self.gate.tables.add_slot(Arc::clone(&slot));
            let advertised = slot.advertised;
            let conn = RelayConn {
                slot,
                gate: Arc::clone(&self.gate),
            };
            return Ok((Arc::new(conn), advertised));
        }
        Err(turn::Error::ErrMaxRetriesExceeded)
    }
}
