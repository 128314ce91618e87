//! A worker's I/O loops: its UDP listeners (batches of client packets), its message
//! listeners (TCP/TLS connections, one message at a time), and one reader per relayed
//! socket (batches of peer datagrams). Everything runs on the worker's own thread; the
//! receive buffers are that thread's, and no loop holds the table across an await.

use std::cell::RefCell;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use quinn_udp::{BATCH_SIZE, RecvMeta, UdpSocketState};
use switchboard_config::unix_now;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::counters::bump;
use super::forward::{self, Decision, HEADROOM, TAILROOM};
use super::table::{Dropped, ToClient};
use super::{EntryIo, Table, ToEngine, WorkerShared};
use crate::control::gate::{Gate, Inbound};
use crate::control::tables::ClientKey;
use crate::transport::{ClientTransport, Received};

/// The largest UDP payload, plus room to frame it in place.
const SLOT: usize = HEADROOM + 65_536 + TAILROOM;

/// One thread's receive buffers: `BATCH_SIZE` slots of [`SLOT`] bytes.
struct Bufs {
    mem: Vec<u8>,
    meta: [RecvMeta; BATCH_SIZE],
    /// A second slot, for the segments after the first of a GRO batch.
    scratch: Vec<u8>,
}

thread_local! {
    static BUFS: RefCell<Bufs> = RefCell::new(Bufs {
        mem: vec![0; SLOT * BATCH_SIZE],
        meta: [RecvMeta::default(); BATCH_SIZE],
        scratch: vec![0; SLOT],
    });
}

/// A cheap per-thread generator for Data indication transaction ids (xorshift, seeded
/// from the OS): indications need unique ids, not secret ones (RFC 8489 section 5).
fn next_tid() -> [u8; 12] {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new(rand::random::<u64>() | 1);
    }
    STATE.with(|s| {
        let mut tid = [0u8; 12];
        for chunk in tid.chunks_mut(4) {
            let mut x = s.get();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.set(x);
            chunk.copy_from_slice(&x.to_le_bytes()[..4]);
        }
        tid
    })
}

/// The smallest batch asked for: with two slots a lone datagram is a short batch, so the
/// `recvmmsg` that would only return EAGAIN is skipped.
const MIN_BATCH: usize = if BATCH_SIZE >= 2 { 2 } else { BATCH_SIZE };

/// How many slots the next `recvmmsg` of a socket offers: doubled after a full batch,
/// down to what arrived after a short one. At low rates a readiness event brings one
/// datagram, and preparing 32 message headers for it costs more than relaying it.
#[derive(Debug, Clone, Copy)]
struct Want(usize);

impl Default for Want {
    fn default() -> Self {
        Self(MIN_BATCH)
    }
}

impl Want {
    fn after(self, got: usize) -> Self {
        if got >= self.0 {
            Self((self.0 * 2).min(BATCH_SIZE))
        } else {
            Self(got.clamp(MIN_BATCH, BATCH_SIZE))
        }
    }
}

/// Receives one batch of at most `want` datagrams into the thread's buffers (payloads at
/// [`HEADROOM`] of each slot) and calls `each(slot, len, from)` for every datagram, a GRO
/// batch split by its stride (segments after the first are copied into the scratch slot).
/// A short batch reports `WouldBlock`: the queue was empty when the kernel returned, so the
/// next readiness event is awaited instead of paying for a `recvmmsg` that returns EAGAIN.
fn recv_batch(
    state: &UdpSocketState,
    socket: &UdpSocket,
    want: &mut Want,
    mut each: impl FnMut(&mut [u8], usize, SocketAddr),
) -> io::Result<()> {
    BUFS.with(|b| {
        let mut b = b.borrow_mut();
        let Bufs { mem, meta, scratch } = &mut *b;
        let asked = want.0;
        let n = {
            let mut iovs: [IoSliceMut<'_>; BATCH_SIZE] =
                std::array::from_fn(|_| IoSliceMut::new(&mut []));
            for (iov, slot) in iovs.iter_mut().zip(mem.chunks_mut(SLOT)).take(asked) {
                *iov = IoSliceMut::new(&mut slot[HEADROOM..SLOT - TAILROOM]);
            }
            match state.recv(socket.into(), &mut iovs[..asked], meta) {
                Ok(n) => n,
                Err(e) => {
                    *want = Want::default();
                    return Err(e);
                }
            }
        };
        *want = want.after(n);
        for (i, m) in meta.iter().enumerate().take(n) {
            let slot = &mut mem[i * SLOT..(i + 1) * SLOT];
            let len = m.len.min(SLOT - HEADROOM - TAILROOM);
            let stride = if m.stride == 0 {
                len
            } else {
                m.stride.min(len)
            };
            if stride >= len {
                each(slot, len, m.addr);
                continue;
            }
            let mut at = HEADROOM;
            while at < HEADROOM + len {
                let seg = stride.min(HEADROOM + len - at);
                if at == HEADROOM {
                    each(slot, seg, m.addr);
                } else {
                    scratch[HEADROOM..HEADROOM + seg].copy_from_slice(&slot[at..at + seg]);
                    each(scratch, seg, m.addr);
                }
                at += seg;
            }
        }
        if n < asked {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    })
}

/// Runs `read` whenever `socket` is readable until it fails for good; ICMP errors queued by
/// earlier sends (port unreachable) are not receive failures.
async fn drive(socket: &UdpSocket, mut read: impl FnMut() -> io::Result<()>) -> io::Result<()> {
    loop {
        socket.readable().await?;
        loop {
            match socket.try_io(Interest::READABLE, &mut read) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// What to do after a client packet was looked at with the table held.
enum Then {
    Done,
    /// A message for the control plane (the table must be released first).
    Control(stun::message::Message),
}

/// The data-plane half of a client packet: ChannelData and Send indications are relayed
/// from `table`; the rest is handed back for the control plane.
fn client_data(
    worker: &WorkerShared,
    gate: &Gate,
    table: &mut Table<EntryIo>,
    key: &ClientKey,
    packet: &[u8],
    now: Instant,
) -> Then {
    let c = &worker.counters;
    match forward::decide(table, key, packet, now, |p| gate.peer_allowed(p)) {
        Decision::ToPeer {
            entry,
            peer,
            start,
            len,
        } => match entry
            .io
            .relayed
            .try_send_to(&packet[start..start + len], peer)
        {
            Ok(_) => {
                bump(&c.bytes_to_peer, len as u64);
                bump(&c.packets_to_peer, 1);
            }
            Err(_) => bump(&c.send_failed, 1),
        },
        Decision::Dropped(Dropped::Bitrate) => bump(&c.bitrate_dropped, 1),
        Decision::Denied => gate.metrics.denied_peer("send"),
        Decision::Control(m) => return Then::Control(m),
        Decision::Dropped(_) | Decision::Ignore => {}
    }
    Then::Done
}

/// The control plane's answer to a message, executed: a reply goes straight back, a request
/// for the engine into its queue (a full queue drops it: a UDP client retransmits).
fn control(
    worker: &WorkerShared,
    gate: &Gate,
    transport: &Arc<dyn ClientTransport>,
    local: SocketAddr,
    m: &stun::message::Message,
    client: SocketAddr,
) -> Option<ToEngine> {
    match gate.handle_control(m, transport, local, client, Instant::now(), unix_now()) {
        Inbound::ToCrate(bytes) => Some((bytes, client)),
        Inbound::Reply(bytes) => {
            if transport.try_send_to(&bytes, client).is_err() {
                bump(&worker.counters.send_failed, 1);
            }
            None
        }
        Inbound::Drop => None,
    }
}

/// Serves one UDP listener socket of `worker`.
pub async fn udp_listener(
    worker: Arc<WorkerShared>,
    gate: Arc<Gate>,
    socket: Arc<UdpSocket>,
    engine: mpsc::Sender<ToEngine>,
) {
    let Ok(local) = socket.local_addr() else {
        return;
    };
    let state = match UdpSocketState::new((&*socket).into()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(%local, "UDP listener cannot be read in batches: {e}");
            return;
        }
    };
    let transport: Arc<dyn ClientTransport> = Arc::clone(&socket) as Arc<dyn ClientTransport>;
    let mut want = Want::default();
    let result = drive(&socket, || {
        let now = Instant::now();
        let mut table = None;
        recv_batch(&state, &socket, &mut want, |slot, len, from| {
            let packet = &slot[HEADROOM..HEADROOM + len];
            let key = ClientKey {
                stream: false,
                local,
                client: from,
            };
            let t = table.get_or_insert_with(|| worker.table());
            if let Then::Control(m) = client_data(&worker, &gate, t, &key, packet, now) {
                table = None;
                if let Some(msg) = control(&worker, &gate, &transport, local, &m, from)
                    && engine.try_send(msg).is_err()
                {
                    bump(&worker.counters.engine_busy, 1);
                }
            }
        })
    })
    .await;
    if let Err(e) = result {
        tracing::error!(%local, "UDP listener stopped: {e}");
    }
}

/// Serves a message transport (a TCP/TLS listener's connections) on `worker`.
pub async fn message_listener(
    worker: Arc<WorkerShared>,
    gate: Arc<Gate>,
    transport: Arc<dyn ClientTransport>,
    engine: mpsc::Sender<ToEngine>,
) {
    let Ok(local) = transport.local_addr() else {
        return;
    };
    let stream = transport.is_stream();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (len, client) = match transport.recv(&mut buf).await {
            Ok(Received::Message { len, from }) => (len, from),
            Ok(Received::Closed(client)) => {
                // Hand the engine a Refresh with LIFETIME 0 so it deletes the allocation.
                if let Some(bytes) = gate.client_closed(transport.as_ref(), local, client)
                    && engine.send((bytes, client)).await.is_err()
                {
                    return;
                }
                continue;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::error!(%local, "Client transport stopped: {e}");
                return;
            }
        };
        let key = ClientKey {
            stream,
            local,
            client,
        };
        let then = {
            let mut table = worker.table();
            client_data(
                &worker,
                &gate,
                &mut table,
                &key,
                &buf[..len],
                Instant::now(),
            )
        };
        if let Then::Control(m) = then
            && let Some(msg) = control(&worker, &gate, &transport, local, &m, client)
        {
            // A stream client does not retransmit: wait for room (back-pressure onto its
            // listener) rather than drop its request.
            let sent = if stream {
                engine.send(msg).await.is_ok()
            } else {
                engine.try_send(msg).is_ok()
            };
            if !sent {
                bump(&worker.counters.engine_busy, 1);
            }
        }
    }
}

/// Framed datagrams for one client waiting to leave in one segmented send (UDP GSO): equal
/// sizes back to back, the last one possibly shorter, as the kernel's UDP_SEGMENT wants.
struct Segments {
    buf: Vec<u8>,
    /// The size of every segment but possibly the last.
    size: usize,
    count: usize,
    /// The last segment was shorter than `size`: nothing more may follow it.
    closed: bool,
    /// Application bytes carried.
    payload: u64,
}

/// At most this many bytes in one segmented send (the IP datagram limit, with room for
/// headers).
const GSO_BYTES: usize = 65_000;

thread_local! {
    static SEGMENTS: RefCell<Segments> = RefCell::new(Segments {
        buf: Vec::with_capacity(GSO_BYTES),
        size: 0,
        count: 0,
        closed: false,
        payload: 0,
    });
}

impl Segments {
    /// Whether `len` more bytes may join the segments queued.
    fn fits(&self, len: usize, max_segments: usize) -> bool {
        self.count == 0
            || (!self.closed
                && len <= self.size
                && self.count < max_segments
                && self.buf.len() + len <= GSO_BYTES)
    }

    fn push(&mut self, datagram: &[u8], payload: usize) {
        if self.count == 0 {
            self.size = datagram.len();
        } else if datagram.len() < self.size {
            self.closed = true;
        }
        self.buf.extend_from_slice(datagram);
        self.count += 1;
        self.payload += payload as u64;
    }

    /// Sends what is queued to `client` on `socket` in one `sendmsg`, and counts it.
    fn flush(
        &mut self,
        state: &UdpSocketState,
        socket: &UdpSocket,
        client: SocketAddr,
        c: &super::Counters,
    ) {
        if self.count == 0 {
            return;
        }
        let transmit = quinn_udp::Transmit {
            destination: client,
            ecn: None,
            contents: &self.buf,
            segment_size: (self.count > 1).then_some(self.size),
            src_ip: None,
        };
        let count = self.count as u64;
        match socket.try_io(Interest::WRITABLE, || {
            state.try_send(socket.into(), &transmit)
        }) {
            Ok(()) => {
                bump(&c.bytes_to_client, self.payload);
                bump(&c.packets_to_client, count);
            }
            Err(_) => bump(&c.send_failed, count),
        }
        self.buf.clear();
        self.count = 0;
        self.closed = false;
        self.payload = 0;
    }
}

/// Reads one allocation's relayed socket: each peer datagram with a permission goes to the
/// client as ChannelData or a Data indication, framed in place. Over a UDP leg the
/// datagrams of one batch leave together in segmented sends where the kernel offers GSO
/// (one `sendmsg` for up to 64 of them); otherwise one by one.
pub async fn peer_reader(worker: Arc<WorkerShared>, key: ClientKey, relayed: Arc<UdpSocket>) {
    let state = match UdpSocketState::new((&*relayed).into()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("Relayed socket cannot be read in batches: {e}");
            return;
        }
    };
    let mut want = Want::default();
    let result = drive(&relayed, || {
        let now = Instant::now();
        let mut table = None;
        // The client's UDP socket while segments are queued for it.
        let mut leg: Option<(Arc<dyn ClientTransport>, SocketAddr)> = None;
        let send_state = worker.send_state.get();
        let max_segments = send_state.map_or(1, UdpSocketState::max_gso_segments);
        let c = &worker.counters;
        let flush = |leg: &Option<(Arc<dyn ClientTransport>, SocketAddr)>| {
            if let (Some((t, client)), Some(state)) = (leg, send_state)
                && let Some(socket) = t.udp_socket()
            {
                SEGMENTS.with(|g| g.borrow_mut().flush(state, socket, *client, c));
            }
        };
        let r = recv_batch(&state, &relayed, &mut want, |slot, len, peer| {
            let t = table.get_or_insert_with(|| worker.table());
            let Some(entry) = t.get_mut(&key) else {
                return;
            };
            let framed = match entry.peer_to_client(peer, len, now) {
                Ok(ToClient::Channel(n)) => forward::frame_channel_data(slot, len, n),
                Ok(ToClient::Indication) => {
                    forward::frame_data_indication(slot, len, peer, next_tid())
                }
                Err(Dropped::Bitrate) => {
                    bump(&c.bitrate_dropped, 1);
                    return;
                }
                Err(_) => return,
            };
            let Ok(range) = framed else {
                bump(&c.oversized_dropped, 1);
                return;
            };
            let datagram = &slot[range];
            if max_segments > 1 && entry.io.leg.udp_socket().is_some() {
                SEGMENTS.with(|g| {
                    let fits = g.borrow().fits(datagram.len(), max_segments);
                    if !fits {
                        flush(&leg);
                    }
                    if leg.is_none() {
                        leg = Some((Arc::clone(&entry.io.leg), entry.io.client));
                    }
                    g.borrow_mut().push(datagram, len);
                });
                return;
            }
            match entry.io.leg.try_send_to(datagram, entry.io.client) {
                Ok(()) => {
                    bump(&c.bytes_to_client, len as u64);
                    bump(&c.packets_to_client, 1);
                }
                Err(_) => bump(&c.send_failed, 1),
            }
        });
        drop(table);
        flush(&leg);
        r
    })
    .await;
    if let Err(e) = result {
        tracing::debug!("Relayed socket reader stopped: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::{BATCH_SIZE, GSO_BYTES, MIN_BATCH, Segments, Want};

    fn segments() -> Segments {
        Segments {
            buf: Vec::new(),
            size: 0,
            count: 0,
            closed: false,
            payload: 0,
        }
    }

    /// UDP_SEGMENT's rule: equal sizes, the last one possibly shorter, within the segment
    /// count and the datagram size.
    #[test]
    fn segments_take_equal_sizes_then_at_most_one_shorter_one() {
        let mut g = segments();
        assert!(g.fits(100, 64), "anything starts a send");
        g.push(&[1; 100], 96);
        assert!(g.fits(100, 64));
        g.push(&[2; 100], 96);
        assert!(!g.fits(101, 64), "a larger one needs its own send");
        assert!(g.fits(40, 64), "a shorter one may end the send");
        g.push(&[3; 40], 36);
        assert!(!g.fits(40, 64), "nothing may follow the shorter one");
        assert!(!g.fits(100, 64));
        assert_eq!((g.count, g.size, g.payload), (3, 100, 228));
        assert_eq!(g.buf.len(), 240);
        assert_eq!(&g.buf[..100], &[1; 100][..]);
        assert_eq!(&g.buf[200..], &[3; 40][..]);
    }

    #[test]
    fn segments_stop_at_the_segment_count_and_the_datagram_size() {
        let mut g = segments();
        for _ in 0..4 {
            g.push(&[0; 10], 6);
        }
        assert!(!g.fits(10, 4), "four segments is the kernel's limit here");
        assert!(g.fits(10, 5));
        let mut big = segments();
        big.push(&vec![0; 40_000], 39_996);
        assert!(!big.fits(40_000, 64), "over {GSO_BYTES} bytes in one send");
    }

    #[test]
    fn the_batch_grows_after_full_batches_and_shrinks_to_what_arrived() {
        let mut w = Want::default();
        assert_eq!(w.0, MIN_BATCH);
        let mut seen = Vec::new();
        for _ in 0..8 {
            w = w.after(w.0);
            seen.push(w.0);
        }
        assert_eq!(seen[..4], [4, 8, 16, 32].map(|n| n.min(BATCH_SIZE)));
        assert!(seen.iter().all(|&n| n <= BATCH_SIZE), "{seen:?}");
        assert_eq!(w.after(5).0, 5, "a short batch: what arrived");
        assert_eq!(w.after(1).0, MIN_BATCH, "never below two slots");
        assert_eq!(w.after(0).0, MIN_BATCH);
    }
}
