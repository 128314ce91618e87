//! Client legs and their I/O tasks: UDP sockets received with recvmmsg (quinn-udp, with
//! its GRO and fallbacks), TCP and TLS connections framed as RFC 8656 section 12.5 says.
//! Everything received goes to a [`Sink`]: ChannelData to the recorder, STUN to the leg's
//! control task. Sends from the sender thread go straight to the UDP socket, or into an
//! [`Outbox`] that a writer task flushes onto the stream.

use std::cell::RefCell;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use quinn_udp::{BATCH_SIZE, RecvMeta, UdpSockRef, UdpSocketState};
use tokio::io::Interest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, watch};

use crate::framing::{Frame, StreamFramer, parse_channel_data};
use crate::recorder::Recorder;

/// SO_RCVBUF / SO_SNDBUF asked for every UDP socket of the tool (the kernel caps it at
/// net.core.rmem_max / wmem_max).
pub const SOCKET_BUFFER: usize = 4 << 20;
/// Receive slot per datagram: room for a GRO batch.
const SLOT: usize = 64 * 1024;
/// Bytes an outbox may hold before the sender counts packets as dropped (the writer fell
/// behind: the run is refused).
const OUTBOX_CAP: usize = 8 << 20;

/// The run's clock: nanoseconds since its origin.
#[derive(Debug, Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    #[must_use]
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    #[must_use]
    pub fn at(&self, ns: u64) -> Instant {
        self.0 + std::time::Duration::from_nanos(ns)
    }
}

/// A non-blocking UDP socket with large buffers bound to `local`.
pub fn bind_udp(local: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
    // Best effort: a smaller buffer shows up as drops at the tool's sockets, which refuse
    // the run.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&local.into())?;
    Ok(s.into())
}

/// The loopback (or unspecified) address of `server`'s family, port 0.
#[must_use]
pub fn local_for(server: SocketAddr) -> SocketAddr {
    if server.is_ipv6() {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0))
    } else if server.ip().is_loopback() {
        SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0))
    } else {
        SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0))
    }
}

/// Bytes waiting to be written to a stream leg.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Mutex<Vec<u8>>,
    notify: Notify,
}

impl Outbox {
    /// Appends with `write`; `false` (nothing appended) when the writer is too far behind.
    pub fn push(&self, write: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        if buf.len() >= OUTBOX_CAP {
            return false;
        }
        let was_empty = buf.is_empty();
        write(&mut buf);
        drop(buf);
        // The writer takes everything each time it wakes, so a wake-up is only needed when
        // the box was empty (Notify keeps the permit if the writer is not waiting yet).
        if was_empty {
            self.notify.notify_one();
        }
        true
    }

    fn take(&self, spare: &mut Vec<u8>) {
        let mut buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::swap(&mut *buf, spare);
    }
}

/// How the sender thread reaches one client leg.
#[derive(Debug)]
pub enum DataTx {
    /// A clone of the leg's (connected, non-blocking) UDP socket.
    Udp(std::net::UdpSocket),
    Stream(Arc<Outbox>),
}

/// Where a leg's received messages go.
#[derive(Debug, Clone)]
pub struct Sink {
    pub recorder: Rc<RefCell<Recorder>>,
    /// STUN messages for the leg's control task (`None`: a data-only leg, e.g. calibrate).
    pub control: Option<mpsc::UnboundedSender<Vec<u8>>>,
    pub clock: Clock,
}

impl Sink {
    /// One datagram: ChannelData to the recorder, STUN to control, anything else counted.
    fn datagram(&self, rec: &mut Recorder, raw: &[u8], now_ns: u64) {
        match raw.first().map(|b| b >> 6) {
            Some(0b01) => match parse_channel_data(raw) {
                Some((_, data)) => rec.record(data, now_ns),
                None => rec.foreign += 1,
            },
            Some(0b00) => self.stun(rec, raw),
            _ => rec.foreign += 1,
        }
    }

    fn stun(&self, rec: &mut Recorder, raw: &[u8]) {
        match &self.control {
            Some(tx) => {
                // The control task may have ended at shutdown: nothing left to tell it.
                let _ = tx.send(raw.to_vec());
            }
            None => rec.foreign += 1,
        }
    }
}

/// Receive buffers shared by every receive task of the (single-threaded) runtime: only one
/// runs at a time, and none holds them across an await.
#[derive(Debug)]
pub struct RecvBufs {
    mem: Vec<u8>,
    meta: [RecvMeta; BATCH_SIZE],
}

impl RecvBufs {
    #[must_use]
    pub fn new() -> Rc<RefCell<Self>> {
        Rc::new(RefCell::new(Self {
            mem: vec![0; SLOT * BATCH_SIZE],
            meta: [RecvMeta::default(); BATCH_SIZE],
        }))
    }

    /// One recvmmsg; calls `each` with every datagram (GRO batches split by their stride).
    fn recv(
        &mut self,
        state: &UdpSocketState,
        sock: UdpSockRef<'_>,
        mut each: impl FnMut(&[u8], SocketAddr),
    ) -> io::Result<usize> {
        let n = {
            let mut chunks = self.mem.chunks_mut(SLOT);
            let mut iovs: [IoSliceMut<'_>; BATCH_SIZE] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
            state.recv(sock, &mut iovs, &mut self.meta)?
        };
        for (i, meta) in self.meta.iter().enumerate().take(n) {
            let start = i * SLOT;
            let data = &self.mem[start..start + meta.len.min(SLOT)];
            let stride = if meta.stride == 0 {
                data.len()
            } else {
                meta.stride
            };
            for d in data.chunks(stride.max(1)) {
                each(d, meta.addr);
            }
        }
        Ok(n)
    }
}

/// Reads `sock` until `stop`, each datagram to `sink`.
pub async fn udp_receive(
    sock: Rc<tokio::net::UdpSocket>,
    bufs: Rc<RefCell<RecvBufs>>,
    sink: Sink,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let state = UdpSocketState::new((&*sock).into())?;
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            r = sock.readable() => r?,
        }
        loop {
            let now_ns = sink.clock.now_ns();
            let mut bufs = bufs.borrow_mut();
            let mut rec = sink.recorder.borrow_mut();
            let r = sock.try_io(Interest::READABLE, || {
                bufs.recv(&state, (&*sock).into(), |d, _| {
                    sink.datagram(&mut rec, d, now_ns)
                })
            });
            match r {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // An ICMP error queued by an earlier send (e.g. port unreachable while a
                // peer was not yet there): not a receive failure.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Echoes every datagram on `sock` back to its sender until `stop`; returns how many were
/// echoed and how many could not be sent (send buffer full).
pub async fn udp_echo(
    sock: Rc<tokio::net::UdpSocket>,
    bufs: Rc<RefCell<RecvBufs>>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<(u64, u64)> {
    let state = UdpSocketState::new((&*sock).into())?;
    let (mut echoed, mut failed) = (0u64, 0u64);
    loop {
        tokio::select! {
            _ = stop.changed() => return Ok((echoed, failed)),
            r = sock.readable() => r?,
        }
        loop {
            let mut bufs = bufs.borrow_mut();
            let r = sock.try_io(Interest::READABLE, || {
                bufs.recv(&state, (&*sock).into(), |d, from| {
                    match sock.try_send_to(d, from) {
                        Ok(_) => echoed += 1,
                        Err(_) => failed += 1,
                    }
                })
            });
            match r {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Reads frames off a stream leg until it closes or `stop`; every frame to `sink`.
pub async fn stream_receive<R: AsyncRead + Unpin>(
    mut rd: R,
    sink: Sink,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = tokio::select! {
            _ = stop.changed() => return Ok(()),
            r = rd.read(&mut buf) => r?,
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the connection",
            ));
        }
        let now_ns = sink.clock.now_ns();
        framer.push(&buf[..n]);
        let mut rec = sink.recorder.borrow_mut();
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::ChannelData(_, data))) => rec.record(data, now_ns),
                Ok(Some(Frame::Stun(raw))) => sink.stun(&mut rec, raw),
                Ok(None) => break,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
    }
}

/// Writes what the outbox collects to the stream until `stop`, then shuts the stream down.
pub async fn stream_write<W: AsyncWrite + Unpin>(
    mut wr: W,
    outbox: Arc<Outbox>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let mut chunk = Vec::with_capacity(64 * 1024);
    loop {
        outbox.take(&mut chunk);
        if chunk.is_empty() {
            tokio::select! {
                _ = stop.changed() => break,
                () = outbox.notify.notified() => continue,
            }
        }
        wr.write_all(&chunk).await?;
        chunk.clear();
    }
    wr.flush().await?;
    wr.shutdown().await
}
