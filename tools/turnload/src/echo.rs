//! UDP echo peers: sockets that send every datagram back to where it came from, on a thread
//! of their own (for the echo peer mode, and as `calibrate`'s stand-in for a relay).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::thread::JoinHandle;

use tokio::sync::watch;

use crate::legs::{RecvBufs, bind_udp, udp_echo};

/// Running echo sockets.
#[derive(Debug)]
pub struct EchoPeers {
    pub addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    thread: JoinHandle<io::Result<EchoCounts>>,
}

/// Datagrams echoed, and those that could not be sent back.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoCounts {
    pub echoed: u64,
    pub failed: u64,
}

impl EchoPeers {
    /// Binds `count` sockets on `ip` and echoes on them until [`EchoPeers::stop`].
    pub fn spawn(ip: IpAddr, count: u32) -> io::Result<Self> {
        let sockets = (0..count.max(1))
            .map(|_| bind_udp(SocketAddr::new(ip, 0)))
            .collect::<io::Result<Vec<_>>>()?;
        let addrs = sockets
            .iter()
            .map(std::net::UdpSocket::local_addr)
            .collect::<io::Result<Vec<_>>>()?;
        let (stop, rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("turnload-echo".into())
            .spawn(move || serve(sockets, &rx))?;
        Ok(Self {
            addrs,
            stop,
            thread,
        })
    }

    /// Stops echoing and reports the counts.
    pub fn stop(self) -> io::Result<EchoCounts> {
        let _ = self.stop.send(true);
        self.thread
            .join()
            .map_err(|_| io::Error::other("echo thread panicked"))?
    }
}

/// Echoes on `sockets` until `stop` changes (or its sender goes).
pub fn serve(
    sockets: Vec<std::net::UdpSocket>,
    stop: &watch::Receiver<bool>,
) -> io::Result<EchoCounts> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let bufs = RecvBufs::new();
        let mut tasks = tokio::task::JoinSet::new();
        for s in sockets {
            let sock = Rc::new(tokio::net::UdpSocket::from_std(s)?);
            tasks.spawn_local(udp_echo(sock, bufs.clone(), stop.clone()));
        }
        let mut counts = EchoCounts::default();
        while let Some(r) = tasks.join_next().await {
            let (echoed, failed) = r.map_err(io::Error::other)??;
            counts.echoed += echoed;
            counts.failed += failed;
        }
        Ok(counts)
    })
}
