//! The data plane: N shared-nothing workers, each a thread with its own single-threaded
//! runtime, its own SO_REUSEPORT listener sockets, the relayed sockets of the allocations
//! made through them, its own forwarding [`table::Table`] and its own counters (summed at
//! scrape time). Client packets are read in batches (recvmmsg, GRO where the kernel
//! coalesces, through `quinn-udp`); ChannelData and Send indications are relayed from the
//! worker's table without leaving its thread; every other STUN message goes to the
//! control plane (the gate, then the `turn` crate through a channel-fed `Conn`). Peer
//! datagrams are read in batches on each relayed socket, in place behind [`HEADROOM`]
//! bytes, and framed for the client without a copy.
//!
//! The UDP 4-tuple hash of SO_REUSEPORT keeps a client on one listener socket, so the worker
//! that received its Allocate sees all its packets. TCP/TLS allocations live on the stream
//! worker: the same table, forwarding and counters, driven on the control runtime, where
//! the connections' tasks run (so a stream message is relayed without crossing threads).

pub mod counters;
pub mod forward;
pub mod table;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};

use crate::control::gate::Gate;
use crate::control::tables::ClientKey;
use crate::transport::ClientTransport;

pub use counters::{Counters, DataPlaneMetrics};
pub use forward::{HEADROOM, TAILROOM};
pub use table::{Dropped, Entry, Table, ToClient};

/// Control messages queued per listener for the engine: a full queue drops a UDP request
/// (the client retransmits) and back-pressures a stream.
pub const ENGINE_QUEUE: usize = 1024;

/// A message for the engine: bytes and the client they came from.
pub type ToEngine = (Vec<u8>, SocketAddr);

/// What a worker keeps beside each table entry to do the I/O.
#[derive(Debug)]
pub struct EntryIo {
    /// The allocation's relayed socket (registered with this worker's runtime).
    pub relayed: Arc<UdpSocket>,
    /// Where the client is reached.
    pub leg: Arc<dyn ClientTransport>,
    pub client: SocketAddr,
    reader: tokio::task::AbortHandle,
}

impl Drop for EntryIo {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// The part of a worker the control plane and the metrics see.
#[derive(Debug)]
pub struct WorkerShared {
    pub id: usize,
    table: Mutex<Table<EntryIo>>,
    pub counters: Counters,
    handle: tokio::runtime::Handle,
    /// What the kernel offers for segmented sends (GSO), read off the first UDP listener
    /// socket this worker serves; `None` until then (every send is then one datagram).
    send_state: OnceLock<quinn_udp::UdpSocketState>,
}

impl WorkerShared {
    /// A worker whose tasks run on `handle`: each UDP worker's own runtime, the control
    /// runtime for the stream worker, a test runtime for the gate's tests and the fuzz
    /// harness.
    #[must_use]
    pub fn detached(id: usize, handle: tokio::runtime::Handle) -> Arc<Self> {
        Arc::new(Self {
            id,
            table: Mutex::new(Table::default()),
            counters: Counters::default(),
            handle,
            send_state: OnceLock::new(),
        })
    }

    /// The table, for one batch or one control update. Never held across an await, and the
    /// control plane never holds a lock of its own while it takes this one.
    pub fn table(&self) -> MutexGuard<'_, Table<EntryIo>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The worker's runtime: sockets it serves are registered with it.
    #[must_use]
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Binds a std UDP socket to this worker's runtime.
    pub fn adopt_socket(&self, socket: std::net::UdpSocket) -> io::Result<UdpSocket> {
        let _enter = self.handle.enter();
        UdpSocket::from_std(socket)
    }

    /// A new allocation on this worker: its entry, and the task reading its relayed socket.
    pub fn add(
        self: &Arc<Self>,
        key: ClientKey,
        relayed: Arc<UdpSocket>,
        leg: Arc<dyn ClientTransport>,
        client: SocketAddr,
        bytes_per_second: Option<u64>,
        now: Instant,
    ) {
        let reader = self
            .handle
            .spawn(worker::peer_reader(
                Arc::clone(self),
                key,
                Arc::clone(&relayed),
            ))
            .abort_handle();
        let io = EntryIo {
            relayed,
            leg,
            client,
            reader,
        };
        // The entry is in place before the engine's success answer is sent, so the
        // client's first ChannelData finds it.
        self.table()
            .insert(key, Entry::new(io, bytes_per_second, now));
    }

    /// The allocation of `key` on `relayed` ended: its entry goes and its reader stops.
    pub fn remove(&self, key: &ClientKey, relayed: &Arc<UdpSocket>) {
        let entry = {
            let mut table = self.table();
            if table
                .get(key)
                .is_some_and(|e| Arc::ptr_eq(&e.io.relayed, relayed))
            {
                table.remove(key)
            } else {
                None
            }
        };
        drop(entry);
    }

    /// Live allocations on this worker.
    #[must_use]
    pub fn allocations(&self) -> usize {
        self.table().len()
    }
}

/// A client-facing listener served by a worker, and the queue its control messages go to.
#[derive(Debug)]
pub enum Listener {
    /// A UDP socket, read in batches.
    Udp(std::net::UdpSocket),
    /// Any other transport (TCP/TLS connections, test transports), read message by message.
    Messages(Arc<dyn ClientTransport>),
}

/// A listener being served: its worker, the transport the engine answers through, and the
/// receiving end of the listener's engine queue.
#[derive(Debug)]
pub struct Served {
    pub worker: Arc<WorkerShared>,
    pub transport: Arc<dyn ClientTransport>,
    pub inbox: mpsc::Receiver<ToEngine>,
}

/// The running workers.
#[derive(Debug)]
pub struct DataPlane {
    /// The UDP workers, then the stream worker (see [`DataPlane::start`]).
    workers: Vec<Arc<WorkerShared>>,
    udp_workers: usize,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl DataPlane {
    /// Starts `n` UDP workers (at least one), each on a thread of its own, and the stream
    /// worker: the table, counters and relayed-socket readers of the allocations made over
    /// TCP and TLS, driven on the calling (multi-thread) runtime, where the connections'
    /// tasks run too. A stream message then never crosses threads to be relayed, and TLS
    /// work spreads over every core instead of one worker's.
    ///
    /// # Errors
    /// When a thread or runtime cannot be started, or when called outside a tokio runtime.
    pub fn start(n: usize) -> io::Result<Self> {
        let control = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let mut plane = Self {
            udp_workers: n.max(1),
            workers: Vec::new(),
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for id in 0..n.max(1) {
            // I/O only: nothing on a worker sleeps or times out, and a time driver would be
            // consulted on every park (measured: about a tenth of the instructions per
            // relayed datagram at low rates).
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?;
            let shared = WorkerShared::detached(id, rt.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            let thread = std::thread::Builder::new()
                .name(format!("relay-worker-{id}"))
                .spawn(move || {
                    rt.block_on(async {
                        let _ = stopped.await;
                    });
                    // Dropping the runtime cancels the worker's tasks and closes its sockets.
                    drop(rt);
                })?;
            plane.workers.push(shared);
            plane.stops.push(stop);
            plane.threads.push(thread);
        }
        plane
            .workers
            .push(WorkerShared::detached(plane.udp_workers, control));
        Ok(plane)
    }

    #[must_use]
    pub fn workers(&self) -> &[Arc<WorkerShared>] {
        &self.workers
    }

    /// Serves `listener`: a UDP socket on UDP worker `index` (modulo their count), a
    /// message transport (TCP/TLS connections) on the stream worker.
    pub fn serve(&self, index: usize, listener: Listener, gate: &Arc<Gate>) -> io::Result<Served> {
        let at = match listener {
            Listener::Udp(_) => index % self.udp_workers,
            Listener::Messages(_) => self.udp_workers,
        };
        let worker = Arc::clone(&self.workers[at]);
        let (tx, rx) = mpsc::channel(ENGINE_QUEUE);
        let transport: Arc<dyn ClientTransport> = match listener {
            Listener::Udp(socket) => {
                let socket = Arc::new(worker.adopt_socket(socket)?);
                if worker.send_state.get().is_none()
                    && let Ok(state) = quinn_udp::UdpSocketState::new((&*socket).into())
                {
                    let _ = worker.send_state.set(state);
                }
                worker.handle.spawn(worker::udp_listener(
                    Arc::clone(&worker),
                    Arc::clone(gate),
                    Arc::clone(&socket),
                    tx,
                ));
                socket
            }
            Listener::Messages(t) => {
                worker.handle.spawn(worker::message_listener(
                    Arc::clone(&worker),
                    Arc::clone(gate),
                    Arc::clone(&t),
                    tx,
                ));
                t
            }
        };
        Ok(Served {
            worker,
            transport,
            inbox: rx,
        })
    }

    /// Live allocations over all workers.
    #[must_use]
    pub fn allocations(&self) -> usize {
        self.workers.iter().map(|w| w.allocations()).sum()
    }

    /// Stops every worker and waits for its thread.
    pub fn stop(self) {
        for w in &self.workers {
            let drained: Vec<_> = w.table().drain().collect();
            drop(drained);
        }
        for s in self.stops {
            let _ = s.send(());
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}
