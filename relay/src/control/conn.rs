//! The `Conn`s the `turn` crate runs on. [`ListenerConn`] is fed by a data-plane worker
//! through a channel with the control messages of one listener (the gate already checked
//! them), and sends the crate's answers through the gate to the client; [`RelayGenerator`]
//! binds relayed sockets on the worker's runtime and hands the crate [`RelayConn`]s that
//! only report when the allocation's socket is closed. Data never passes through the
//! crate's tasks.

use std::any::Any;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use switchboard_config::{PortRange, unix_now};
use tokio::sync::{Mutex, mpsc};
use turn::relay::RelayAddressGenerator;
use webrtc_util::Conn;

use crate::control::gate::{Gate, Outbound, SYNTHETIC_CLIENT};
use crate::control::tables::RelaySlot;
use crate::dataplane::{ToEngine, WorkerShared};
use crate::transport::ClientTransport;

/// Socket buffer we ask the kernel for (capped by net.core.[rw]mem_max).
pub const SOCKET_BUFFER: usize = 4 << 20;
/// How often the synthetic request is retried while the crate's nonce is unknown.
const INJECTION_RETRY: Duration = Duration::from_secs(2);

fn unsupported() -> webrtc_util::Error {
    webrtc_util::Error::Other("not supported on a TURN listener".into())
}

/// A client-facing listener as the crate sees it.
#[derive(Debug)]
pub struct ListenerConn {
    transport: Arc<dyn ClientTransport>,
    local: SocketAddr,
    gate: Arc<Gate>,
    worker: Arc<WorkerShared>,
    inbox: Mutex<mpsc::Receiver<ToEngine>>,
}

impl ListenerConn {
    pub fn new(
        transport: Arc<dyn ClientTransport>,
        gate: Arc<Gate>,
        worker: Arc<WorkerShared>,
        inbox: mpsc::Receiver<ToEngine>,
    ) -> std::io::Result<Self> {
        let local = transport.local_addr()?;
        Ok(Self {
            transport,
            local,
            gate,
            worker,
            inbox: Mutex::new(inbox),
        })
    }

    fn deliver(buf: &mut [u8], bytes: &[u8], from: SocketAddr) -> (usize, SocketAddr) {
        let n = bytes.len().min(buf.len());
        buf[..n].copy_from_slice(&bytes[..n]);
        (n, from)
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
        let mut inbox = self.inbox.lock().await;
        loop {
            if self.gate.begin_injection(Instant::now()) {
                return Ok(Self::deliver(
                    buf,
                    &Gate::synthetic_request(),
                    SYNTHETIC_CLIENT,
                ));
            }
            match tokio::time::timeout(INJECTION_RETRY, inbox.recv()).await {
                // The gate refuses anything over CRATE_READ_LIMIT (the crate's buffer).
                Ok(Some((bytes, from))) => return Ok(Self::deliver(buf, &bytes, from)),
                // The worker stopped: the relay is shutting down.
                Ok(None) => return Err(webrtc_util::Error::ErrUseClosedNetworkConn),
                Err(_) => {}
            }
        }
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(unsupported())
    }

    async fn send_to(&self, buf: &[u8], target: SocketAddr) -> webrtc_util::Result<usize> {
        let outcome = self.gate.handle_crate_output(
            &self.worker,
            self.transport.as_ref(),
            self.local,
            buf,
            target,
            Instant::now(),
            unix_now(),
        );
        // A failed send to one client (gone, unreachable, buffer full) is no error of the
        // listener: the client retransmits.
        match outcome {
            Outbound::Forward => {
                let _ = self.transport.try_send_to(buf, target);
            }
            Outbound::Allocated => {
                self.transport.allocation_made(target);
                let _ = self.transport.try_send_to(buf, target);
            }
            Outbound::Replace(bytes) => {
                let _ = self.transport.try_send_to(&bytes, target);
            }
            Outbound::Swallow => {}
        }
        Ok(buf.len())
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

    /// The crate's per-allocation task waits here until the allocation's socket closes:
    /// the worker that owns the socket reads the peers' datagrams.
    async fn recv_from(&self, _buf: &mut [u8]) -> webrtc_util::Result<(usize, SocketAddr)> {
        let closed = self.slot.close_notify.notified();
        tokio::pin!(closed);
        loop {
            closed.as_mut().enable();
            if self.slot.is_closed() {
                return Err(webrtc_util::Error::ErrUseClosedNetworkConn);
            }
            closed.as_mut().await;
            closed.set(self.slot.close_notify.notified());
        }
    }

    async fn send(&self, _buf: &[u8]) -> webrtc_util::Result<usize> {
        Err(unsupported())
    }

    /// Not used: Send indications and ChannelData go through the data plane. Kept to the
    /// same policy in case the crate ever sends on its own.
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
    /// The worker whose listener this generator's allocations come through: it owns
    /// their relayed sockets.
    pub worker: Arc<WorkerShared>,
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
            let socket = self.worker.adopt_socket(std_sock)?;
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
