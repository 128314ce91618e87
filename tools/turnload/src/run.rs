//! One run, start to end: set up the legs (and for `load` the allocations, permissions and
//! channels), start the sender thread on the schedule, read the server's CPU time at the
//! start and end of the measured window, drain, stop everything, add up.
//!
//! Threads: the sender is an OS thread of its own; every receive, control and stream-writer
//! task runs on one current-thread tokio runtime (no locks on the receive path); echo peers
//! have their own thread.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

use crate::accounting::totals;
use crate::cli::{CalibrateArgs, LoadArgs, Mode, Traffic, Transport};
use crate::control::{Control, ControlError, Credential, Link, mint};
use crate::echo::EchoPeers;
use crate::framing::CHANNEL_MIN;
use crate::legs::{
    Clock, DataTx, Outbox, RecvBufs, Sink, bind_udp, local_for, stream_receive, stream_write,
    udp_receive,
};
use crate::pacing::Schedule;
use crate::procfs;
use crate::recorder::Recorder;
use crate::report::Report;
use crate::sender::{self, SenderPlan, SenderReport};

/// Set-up of one leg (connect, TLS handshake, Allocate, CreatePermission, ChannelBind).
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Set-up of all legs together.
const SETUP_TOTAL: Duration = Duration::from_secs(120);
/// Stream writers flushing and legs closing at the end.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// The sender gets this long beyond the schedule's end before the run is abandoned.
const SENDER_GRACE: Duration = Duration::from_secs(10);
/// Deleting allocations at the end (Refresh LIFETIME=0) is best effort within this bound.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(3);
/// A refresh is never later than this, so permissions (300 s, RFC 8656 section 9) never lapse.
const MAX_REFRESH: Duration = Duration::from_secs(240);

/// What every run shares while it lasts.
struct Shared {
    clock: Clock,
    recorder: Rc<RefCell<Recorder>>,
    stop: watch::Sender<bool>,
    bufs: Rc<RefCell<RecvBufs>>,
    io_tasks: JoinSet<std::io::Result<()>>,
}

impl Shared {
    fn new(flows: usize) -> Self {
        Self {
            clock: Clock(Instant::now()),
            // Nothing counts until the schedule is known (set before the first send).
            recorder: Rc::new(RefCell::new(Recorder::new(flows, u64::MAX))),
            stop: watch::channel(false).0,
            bufs: RecvBufs::new(),
            io_tasks: JoinSet::new(),
        }
    }

    fn sink(&self, control: Option<mpsc::UnboundedSender<Vec<u8>>>) -> Sink {
        Sink {
            recorder: self.recorder.clone(),
            control,
            clock: self.clock,
        }
    }
}

/// One client leg, connected, its I/O tasks running.
struct Leg {
    link: Link,
    data: DataTx,
    inbox: mpsc::UnboundedReceiver<Vec<u8>>,
}

fn udp_leg(shared: &mut Shared, server: SocketAddr, with_control: bool) -> anyhow::Result<Leg> {
    let std_sock = bind_udp(local_for(server)).context("binding a client socket")?;
    std_sock
        .connect(server)
        .context("connecting a client socket")?;
    let data = std_sock.try_clone().context("cloning a client socket")?;
    let sock = Rc::new(tokio::net::UdpSocket::from_std(std_sock)?);
    let (tx, inbox) = mpsc::unbounded_channel();
    let sink = shared.sink(with_control.then_some(tx));
    shared.io_tasks.spawn_local(udp_receive(
        sock.clone(),
        shared.bufs.clone(),
        sink,
        shared.stop.subscribe(),
    ));
    Ok(Leg {
        link: Link::Udp(sock),
        data: DataTx::Udp(data),
        inbox,
    })
}

fn stream_leg<S>(shared: &mut Shared, stream: S) -> Leg
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + 'static,
{
    let (rd, wr) = tokio::io::split(stream);
    let outbox = Arc::new(Outbox::default());
    let (tx, inbox) = mpsc::unbounded_channel();
    let sink = shared.sink(Some(tx));
    shared
        .io_tasks
        .spawn_local(stream_receive(rd, sink, shared.stop.subscribe()));
    shared
        .io_tasks
        .spawn_local(stream_write(wr, outbox.clone(), shared.stop.subscribe()));
    Leg {
        link: Link::Stream(outbox.clone()),
        data: DataTx::Stream(outbox),
        inbox,
    }
}

/// How the load's allocations authenticate.
enum Credentials {
    Minted {
        secret: String,
        prefix: String,
        ttl: Duration,
    },
    Fixed(Credential),
}

impl Credentials {
    fn from_args(args: &LoadArgs) -> anyhow::Result<Self> {
        let secret = match (&args.secret, &args.secret_file) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(path)) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        match (secret, &args.user, &args.password) {
            (Some(secret), _, _) => {
                anyhow::ensure!(!secret.is_empty(), "the shared secret is empty");
                Ok(Self::Minted {
                    secret,
                    prefix: args.user_prefix.clone(),
                    ttl: Duration::from_secs(args.credential_ttl),
                })
            }
            (None, Some(user), Some(password)) => Ok(Self::Fixed(Credential {
                username: user.clone(),
                password: password.clone(),
            })),
            _ => bail!("give --secret (or --secret-file) or --user and --password"),
        }
    }

    fn for_allocation(&self, i: u32) -> Credential {
        match self {
            Self::Minted {
                secret,
                prefix,
                ttl,
            } => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                mint(secret, &format!("{prefix}{i}"), *ttl, now)
            }
            Self::Fixed(c) => c.clone(),
        }
    }
}

/// Which peer each allocation sends to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerOf {
    /// The relayed address of allocation `i`.
    Allocation(usize),
    /// Echo socket `i`.
    Echo(usize),
}

/// Pairs (0,1), (2,3), ... then echo peers round robin, as the mode says.
fn peer_plan(mode: Mode, n: usize, echo_sockets: usize) -> anyhow::Result<Vec<PeerOf>> {
    let paired = match mode {
        Mode::Pair => {
            anyhow::ensure!(
                n.is_multiple_of(2),
                "--mode pair needs an even number of allocations"
            );
            n
        }
        Mode::Echo => 0,
        Mode::Mixed => (n / 2) & !1,
    };
    Ok((0..n)
        .map(|i| {
            if i < paired {
                PeerOf::Allocation(i ^ 1)
            } else {
                PeerOf::Echo(i % echo_sockets.max(1))
            }
        })
        .collect())
}

async fn connect_leg(
    shared: &mut Shared,
    args: &LoadArgs,
    tls: Option<&(TlsConnector, rustls::pki_types::ServerName<'static>)>,
) -> anyhow::Result<Leg> {
    match args.transport {
        Transport::Udp => udp_leg(shared, args.server, true),
        Transport::Tcp | Transport::Tls => {
            let tcp = tokio::time::timeout(SETUP_TIMEOUT, TcpStream::connect(args.server))
                .await
                .context("connecting: timed out")?
                .with_context(|| format!("connecting to {}", args.server))?;
            tcp.set_nodelay(true)?;
            match tls {
                None => Ok(stream_leg(shared, tcp)),
                Some((connector, name)) => {
                    let s =
                        tokio::time::timeout(SETUP_TIMEOUT, connector.connect(name.clone(), tcp))
                            .await
                            .context("TLS handshake: timed out")?
                            .context("TLS handshake")?;
                    Ok(stream_leg(shared, s))
                }
            }
        }
    }
}

/// A client whose allocation is made.
struct Client {
    control: Control,
    relayed: SocketAddr,
    lifetime: Duration,
}

/// Runs `jobs` on the local set, at most `concurrency` at a time, each bounded by
/// [`SETUP_TIMEOUT`]; results in index order.
async fn all_bounded<T: 'static, F>(jobs: Vec<F>, concurrency: usize) -> anyhow::Result<Vec<T>>
where
    F: std::future::Future<Output = Result<T, ControlError>> + 'static,
{
    let gate = Rc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    for (i, job) in jobs.into_iter().enumerate() {
        let gate = gate.clone();
        set.spawn_local(async move {
            let _permit = gate.acquire().await;
            (i, tokio::time::timeout(SETUP_TIMEOUT, job).await)
        });
    }
    let mut out: Vec<Option<T>> = std::iter::repeat_with(|| None).take(set.len()).collect();
    while let Some(r) = set.join_next().await {
        let (i, r) = r.context("a set-up task failed")?;
        let v = r
            .map_err(|_| anyhow::anyhow!("allocation {i}: set-up timed out"))?
            .with_context(|| format!("allocation {i}"))?;
        out[i] = Some(v);
    }
    Ok(out.into_iter().flatten().collect())
}

/// Connects every leg and makes its allocation, permission and channel.
async fn set_up(
    shared: &mut Shared,
    args: &LoadArgs,
    creds: &Credentials,
    plan: &[PeerOf],
    echo: Option<&EchoPeers>,
    tls: Option<&(TlsConnector, rustls::pki_types::ServerName<'static>)>,
) -> anyhow::Result<(Vec<DataTx>, Vec<Client>, Vec<SocketAddr>)> {
    let n = plan.len();
    tracing::info!(allocations = n, server = %args.server, transport = args.transport.name(), "Allocating");
    let mut legs = Vec::with_capacity(n);
    let mut allocs = Vec::with_capacity(n);
    for i in 0..n {
        let leg = connect_leg(shared, args, tls).await?;
        let mut control = Control::new(leg.link, leg.inbox, creds.for_allocation(i as u32));
        legs.push(leg.data);
        let lifetime = args.lifetime;
        allocs.push(async move {
            let a = control.allocate(lifetime).await?;
            Ok::<_, ControlError>(Client {
                control,
                relayed: a.relayed,
                lifetime: a.lifetime,
            })
        });
    }
    let clients = all_bounded(allocs, args.setup_concurrency).await?;
    let peers: Vec<SocketAddr> = plan
        .iter()
        .map(|p| match p {
            PeerOf::Allocation(j) => clients[*j].relayed,
            PeerOf::Echo(j) => echo.map_or(args.server, |e| e.addrs[*j]),
        })
        .collect();
    let bind_jobs: Vec<_> = clients
        .into_iter()
        .zip(peers.iter().copied())
        .map(|(mut c, peer)| async move {
            c.control.create_permission(peer).await?;
            c.control.channel_bind(CHANNEL_MIN, peer).await?;
            Ok::<_, ControlError>(c)
        })
        .collect();
    let clients = all_bounded(bind_jobs, args.setup_concurrency).await?;
    Ok((legs, clients, peers))
}

/// `switchboard-turnload load`.
pub async fn load(args: LoadArgs) -> anyhow::Result<Report> {
    let traffic = args.traffic.validate()?;
    let creds = Credentials::from_args(&args)?;
    let n = traffic.allocations as usize;
    let plan = peer_plan(args.mode, n, args.echo_sockets as usize)?;
    let echo = if plan.iter().any(|p| matches!(p, PeerOf::Echo(_))) {
        Some(EchoPeers::spawn(args.peer_ip, args.echo_sockets).context("binding echo peers")?)
    } else {
        None
    };
    let tls = match args.transport {
        Transport::Tls => {
            let config = crate::tls::client_config(args.ca.as_deref(), args.insecure)?;
            let name = match &args.tls_name {
                Some(n) => rustls::pki_types::ServerName::try_from(n.clone())
                    .context("--tls-name is not a valid server name")?,
                None => rustls::pki_types::ServerName::from(args.server.ip()),
            };
            Some((TlsConnector::from(config), name))
        }
        _ => None,
    };

    let mut shared = Shared::new(n);
    let set_up = set_up(
        &mut shared,
        &args,
        &creds,
        &plan,
        echo.as_ref(),
        tls.as_ref(),
    );
    let (legs, clients, peers) = tokio::time::timeout(SETUP_TOTAL, set_up)
        .await
        .map_err(|_| anyhow::anyhow!("set-up of {n} allocations took over {SETUP_TOTAL:?}"))??;
    tracing::info!("Allocations, permissions and channels in place");

    // Refresh before expiry for the whole run; delete the allocation at the end (while the
    // receive tasks still run to hear the answer).
    let (keep_alive_stop, keep_alive_rx) = watch::channel(false);
    let mut refreshers = JoinSet::new();
    for (c, peer) in clients.into_iter().zip(peers.iter().copied()) {
        let every = args
            .refresh_every
            .filter(|s| s.is_finite() && *s > 0.0)
            .map_or(c.lifetime / 2, Duration::from_secs_f64)
            .clamp(Duration::from_millis(100), MAX_REFRESH);
        let lifetime = args.lifetime;
        let delete = args.transport == Transport::Udp;
        refreshers.spawn_local(keep_alive(
            c.control,
            peer,
            every,
            lifetime,
            delete,
            keep_alive_rx.clone(),
        ));
    }

    let channels = vec![CHANNEL_MIN; n];
    let mut report = measure(
        &mut shared,
        legs,
        channels,
        args.transport != Transport::Udp,
        traffic,
        args.server_pid,
    )
    .await?;
    let _ = keep_alive_stop.send(true);
    let (mut refreshes, mut failures) = (0, 0);
    while let Some(r) = refreshers.join_next().await {
        let (ok, failed) = r.unwrap_or((0, 1));
        refreshes += ok;
        failures += failed;
    }
    finish_io(&mut shared).await;
    if let Some(e) = echo {
        e.stop().context("echo peers")?;
    }
    report.kind = "load";
    report.transport = args.transport.name();
    report.mode = args.mode.name();
    report.target = args.server.to_string();
    report.refreshes = refreshes;
    report.refresh_failures = failures;
    Ok(report)
}

/// Refreshes the allocation, permission and channel every `every` until `stop`; then
/// deletes the allocation (UDP; a stream leg's allocation ends with its connection).
/// Returns (refreshes that succeeded, that failed).
async fn keep_alive(
    mut control: Control,
    peer: SocketAddr,
    every: Duration,
    lifetime: u32,
    delete: bool,
    mut stop: watch::Receiver<bool>,
) -> (u64, u64) {
    let (mut ok, mut failed) = (0, 0);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(every) => {}
        }
        let r = async {
            control.refresh(lifetime).await?;
            control.create_permission(peer).await?;
            control.channel_bind(CHANNEL_MIN, peer).await
        };
        match r.await {
            Ok(()) => ok += 1,
            Err(e) => {
                tracing::warn!(error = %e, "Refresh failed");
                failed += 1;
            }
        }
    }
    if delete {
        let _ = tokio::time::timeout(TEARDOWN_TIMEOUT, control.refresh(0)).await;
    }
    (ok, failed)
}

async fn finish_io(shared: &mut Shared) {
    let _ = shared.stop.send(true);
    let drained = tokio::time::timeout(CLOSE_TIMEOUT, async {
        while let Some(r) = shared.io_tasks.join_next().await {
            if let Ok(Err(e)) = r {
                tracing::debug!(error = %e, "Leg ended with an error");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("Some legs did not close in time");
        shared.io_tasks.abort_all();
    }
}

/// `switchboard-turnload calibrate`: the same sender and receiver, no TURN, against a plain
/// UDP echo.
pub async fn calibrate(args: CalibrateArgs) -> anyhow::Result<Report> {
    let traffic = args.traffic.validate()?;
    let n = traffic.allocations as usize;
    let echo = match args.echo {
        Some(_) => None,
        None => Some(
            EchoPeers::spawn(std::net::Ipv4Addr::LOCALHOST.into(), 1).context("binding echo")?,
        ),
    };
    let target = match (&echo, args.echo) {
        (_, Some(a)) => a,
        (Some(e), None) => e.addrs[0],
        (None, None) => bail!("no echo"),
    };
    let mut shared = Shared::new(n);
    let mut legs = Vec::with_capacity(n);
    for _ in 0..n {
        legs.push(udp_leg(&mut shared, target, false)?.data);
    }
    let mut report = measure(
        &mut shared,
        legs,
        vec![CHANNEL_MIN; n],
        false,
        traffic,
        None,
    )
    .await?;
    finish_io(&mut shared).await;
    if let Some(e) = echo {
        e.stop().context("echo")?;
    }
    report.kind = "calibrate";
    report.transport = "udp";
    report.mode = "echo";
    report.target = target.to_string();
    // The echo reflects each payload once.
    report.relayed_packets = report.received;
    Ok(report)
}

/// Sends on `legs` per the schedule, measures, drains, and adds up.
async fn measure(
    shared: &mut Shared,
    legs: Vec<DataTx>,
    channels: Vec<u16>,
    pad: bool,
    traffic: Traffic,
    server_pid: Option<u32>,
) -> anyhow::Result<Report> {
    let clock = shared.clock;
    let n = legs.len();
    let origin = clock.now_ns() + 20_000_000;
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let schedule = Schedule::new(
        traffic.rate,
        u32::try_from(n).unwrap_or(u32::MAX),
        origin,
        ns(traffic.warmup),
        ns(traffic.measure),
    );
    let (measure_from, end) = (schedule.measure_from_ns(), schedule.end_ns());
    *shared.recorder.borrow_mut() = Recorder::new(n, measure_from);
    let plan = SenderPlan {
        legs,
        channels,
        schedule,
        clock,
        size: traffic.size,
        pad,
        max_lag: traffic.max_lag,
    };
    let (done_tx, done_rx) = oneshot::channel::<SenderReport>();
    let sender = std::thread::Builder::new()
        .name("turnload-send".into())
        .spawn(move || {
            let _ = done_tx.send(sender::run(plan));
        })
        .context("starting the sender thread")?;
    tracing::info!(
        rate = traffic.rate,
        seconds = traffic.measure.as_secs_f64(),
        "Sending"
    );

    tokio::time::sleep_until(clock.at(measure_from).into()).await;
    let cpu0 = server_pid
        .map(procfs::cpu_us)
        .transpose()
        .context("reading the server's CPU time")?;
    let own0 = procfs::cpu_us(std::process::id()).unwrap_or(0);
    let wall0 = clock.now_ns();

    let deadline = clock.at(end) + SENDER_GRACE;
    let sent = tokio::time::timeout_at(deadline.into(), done_rx)
        .await
        .context("the sender did not finish in time")?
        .context("the sender thread died")?;
    let _ = sender.join();
    tokio::time::sleep(traffic.drain).await;

    let cpu1 = server_pid
        .map(procfs::cpu_us)
        .transpose()
        .context("reading the server's CPU time")?;
    let own1 = procfs::cpu_us(std::process::id()).unwrap_or(0);
    let wall1 = clock.now_ns();
    let rss = server_pid.and_then(|p| procfs::rss_kb(p).ok());
    let server_drops = server_pid.map(procfs::udp_drops_of);
    // Read while the sockets are still open.
    let own_drops = procfs::udp_drops_of(std::process::id());

    let rec = shared.recorder.borrow();
    let t = totals(&rec.flows, &sent.sent);
    let measured_s = traffic.measure.as_secs_f64();
    let period_ns = 1e9 / traffic.rate as f64;
    let active_s = (sent.last_sent_ns.saturating_sub(measure_from) as f64 + period_ns) / 1e9;
    let window_s = measured_s.max(active_s);
    let relayed = t.received * 2;
    let server_cpu = cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a));
    Ok(Report {
        allocations: u32::try_from(n).unwrap_or(u32::MAX),
        payload_bytes: traffic.size,
        rate_asked: traffic.rate,
        rate_achieved: t.sent as f64 / window_s,
        duration_s: measured_s,
        sent: t.sent,
        received: t.received,
        lost: t.lost,
        loss_pct: if t.sent == 0 {
            0.0
        } else {
            t.lost as f64 * 100.0 / t.sent as f64
        },
        reordered: t.reordered,
        duplicates: t.duplicates,
        beyond_window: t.beyond_window,
        warmup_received: rec.warmup_received,
        foreign: rec.foreign,
        p50_us: rec.latency_us(0.5),
        p99_us: rec.latency_us(0.99),
        p999_us: rec.latency_us(0.999),
        max_us: rec.latency_us(1.0),
        late_pct: sent.lateness.late_fraction() * 100.0,
        max_lag_us: sent.lateness.max_lag_ns as f64 / 1000.0,
        sender_dropped: sent.dropped,
        sender_errors: sent.errors,
        client_socket_drops: own_drops,
        loader_cpu_pct: own1.saturating_sub(own0) as f64 * 100.0
            / (wall1.saturating_sub(wall0).max(1) as f64 / 1000.0),
        relayed_packets: relayed,
        server_cpu_us: server_cpu,
        cpu_us_per_relayed: server_cpu
            .filter(|_| relayed > 0)
            .map(|c| c as f64 / relayed as f64),
        server_rss_kb: rss.map(|r| r.0),
        server_hwm_kb: rss.map(|r| r.1),
        server_socket_drops: server_drops,
        ..Report::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_mode_makes_each_allocation_of_a_pair_the_other_ones_peer() {
        let p = peer_plan(Mode::Pair, 4, 2).expect("even");
        assert_eq!(
            p,
            [
                PeerOf::Allocation(1),
                PeerOf::Allocation(0),
                PeerOf::Allocation(3),
                PeerOf::Allocation(2)
            ]
        );
        assert!(peer_plan(Mode::Pair, 3, 2).is_err());
    }

    #[test]
    fn mixed_mode_pairs_the_first_half_and_gives_the_rest_echo_peers() {
        let p = peer_plan(Mode::Mixed, 6, 2).expect("plan");
        assert_eq!(
            p,
            [
                PeerOf::Allocation(1),
                PeerOf::Allocation(0),
                PeerOf::Echo(0),
                PeerOf::Echo(1),
                PeerOf::Echo(0),
                PeerOf::Echo(1)
            ]
        );
        assert!(
            peer_plan(Mode::Echo, 3, 4)
                .expect("plan")
                .iter()
                .all(|p| matches!(p, PeerOf::Echo(_)))
        );
    }
}
