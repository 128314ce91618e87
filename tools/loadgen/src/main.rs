//! switchboard-loadgen: a load tool for switchboard-signaling.
//!
//! Speaks Engine.IO v4 / Socket.IO v5 over WebSocket. Connects N peers (rate- and
//! concurrency-bounded), joins them into rooms of K, then every peer sends `signal` events
//! open-loop at R/s round-robin to its room-mates. Receivers record one-way latency (a shared
//! monotonic origin: every peer lives in this process), per (sender, target) order and gaps.
//!
//! Several servers (`--url A --url B`, or `--url A,B`): the peer at position k of its room
//! (peer `i` is at position `i % K`) connects to URL `k % n`, so a room spans the servers and
//! a message between two peers on different servers crosses instances; those deliveries are
//! also counted and timed on their own (`cross_*` in the report).
//!
//! Threads: `--threads T` OS threads, each running a current-thread tokio runtime with a
//! `LocalSet`; peer `i` lives on thread `i % T` and all peers of a thread share one set of
//! counters and histograms (merged at the end), so the hot path takes no locks.

// A command-line tool: its report goes to stdout.
#![allow(clippy::print_stdout)]

use std::cell::RefCell;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{MissedTickBehavior, sleep_until, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Ws = WebSocketStream<TcpStream>;

/// Time allowed for one peer's TCP connect + WebSocket handshake + namespace connect + join.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Most handshakes in flight at once.
const MAX_INFLIGHT_CONNECTS: usize = 256;
/// After sending stops: the longest wait for the last messages to arrive (the wait ends as
/// soon as every sent message has been received).
const DRAIN: Duration = Duration::from_secs(10);
/// Highest latency the histograms hold, in microseconds (larger values are clamped).
const HIST_MAX_US: u64 = 120_000_000;
/// WebSocket read buffer per connection (one read takes up to this much).
const READ_BUFFER: usize = 8 * 1024;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "switchboard-loadgen",
    about = "Socket.IO load generator for switchboard-signaling"
)]
struct Args {
    /// Server base URL, e.g. ws://127.0.0.1:8080 (the Socket.IO path is appended unless given).
    /// Repeat it (or comma-separate) for several instances of one cluster: the peer at
    /// position k of its room connects to URL k % n.
    #[arg(long, required = true, value_delimiter = ',')]
    url: Vec<String>,
    /// Number of peers (connections).
    #[arg(long, default_value_t = 1000)]
    peers: usize,
    /// Peers per room.
    #[arg(long, default_value_t = 4)]
    room_size: usize,
    /// Signal messages per second per peer (open loop).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Measurement window in seconds (with --idle: how long to hold the connections).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of sending before the measurement window opens.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// OS threads, each with its own single-threaded runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// PID of the server, for its CPU time and RSS from /proc. Repeat it (or comma-separate)
    /// for several instances: CPU time and RSS are summed (and CPU also given per PID).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// PIDs of helper processes (e.g. redis-server) whose CPU time over the window is
    /// reported on its own (`aux_cpu_*`), not added to the server's.
    #[arg(long, value_delimiter = ',')]
    aux_pid: Vec<u32>,
    /// Connect and join only, then hold: measures server memory per connection.
    #[arg(long)]
    idle: bool,
    /// New connections started per second.
    #[arg(long, default_value_t = 2000.0)]
    connect_rate: f64,
    /// Local source addresses used round-robin (to pass per-IP limits), comma-separated.
    #[arg(long, value_delimiter = ',')]
    source_ips: Vec<IpAddr>,
    /// Token sent in the Socket.IO handshake as {"token": ...}.
    #[arg(long)]
    token: Option<String>,
    /// Print one JSON line instead of the human summary.
    #[arg(long)]
    json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Connecting,
    /// Everyone joined: send from `start_ns` (on the origin clock) until `end_ns`.
    Run {
        start_ns: u64,
        end_ns: u64,
        window_start_ns: u64,
        window_end_ns: u64,
    },
    /// Hold the connections (idle mode).
    Hold,
    Stop,
}

/// One thread's running totals, published for the drain wait (each thread stores only its
/// own: no read-modify-write on a shared line in the hot path).
#[repr(align(64))]
#[derive(Default)]
struct Progress {
    sent: AtomicU64,
    received: AtomicU64,
}

struct Shared {
    progress: Vec<Progress>,
    args: Args,
    origin: Instant,
    /// (address, request URL) of each server, in `--url` order.
    targets: Vec<(SocketAddr, String)>,
    run_id: String,
    peer_ids: Vec<OnceLock<String>>,
    joined: AtomicUsize,
    failed: AtomicUsize,
    first_error: Mutex<Option<String>>,
    connect_sem: Semaphore,
    phase: watch::Receiver<Phase>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn fail(&self, idx: usize, err: &anyhow::Error) {
        if let Ok(mut first) = self.first_error.lock()
            && first.is_none()
        {
            *first = Some(format!("peer {idx}: {err:#}"));
        }
        self.failed.fetch_add(1, Ordering::SeqCst);
    }

    fn room_of(&self, idx: usize) -> usize {
        idx / self.args.room_size
    }

    /// Which server (index into `targets`) peer `idx` connects to: its position in its room,
    /// modulo the number of servers.
    fn target_of(&self, idx: usize) -> usize {
        server_of(idx, self.args.room_size, self.targets.len())
    }

    /// Indices of `idx`'s room-mates (excluding itself).
    fn mates(&self, idx: usize) -> Vec<usize> {
        let k = self.args.room_size;
        let first = self.room_of(idx) * k;
        let last = (first + k).min(self.args.peers);
        (first..last).filter(|&j| j != idx).collect()
    }
}

/// Server of peer `idx` among `servers`, with rooms of `room_size`: its position in its room
/// modulo the number of servers.
fn server_of(idx: usize, room_size: usize, servers: usize) -> usize {
    (idx % room_size) % servers
}

/// Counters and histograms of one thread.
struct ThreadStats {
    /// This thread's index (its slot in `Shared::progress`).
    slot: usize,
    connect_us: Histogram<u64>,
    latency_us: Histogram<u64>,
    /// Latency of the window's deliveries whose sender is on another server.
    cross_latency_us: Histogram<u64>,
    cross_delivered: u64,
    sent: u64,
    sent_total: u64,
    delivered: u64,
    delivered_total: u64,
    reordered: u64,
    gaps: u64,
    errors: u64,
    unknown_sender: u64,
    disconnects: u64,
    send_failures: u64,
}

impl ThreadStats {
    fn new(slot: usize) -> Self {
        Self {
            slot,
            connect_us: new_hist(),
            latency_us: new_hist(),
            cross_latency_us: new_hist(),
            cross_delivered: 0,
            sent: 0,
            sent_total: 0,
            delivered: 0,
            delivered_total: 0,
            reordered: 0,
            gaps: 0,
            errors: 0,
            unknown_sender: 0,
            disconnects: 0,
            send_failures: 0,
        }
    }

    fn merge(&mut self, o: &ThreadStats) {
        // Both histograms have the same bounds, so add cannot fail.
        let _ = self.connect_us.add(&o.connect_us);
        let _ = self.latency_us.add(&o.latency_us);
        let _ = self.cross_latency_us.add(&o.cross_latency_us);
        self.cross_delivered += o.cross_delivered;
        self.sent += o.sent;
        self.sent_total += o.sent_total;
        self.delivered += o.delivered;
        self.delivered_total += o.delivered_total;
        self.reordered += o.reordered;
        self.gaps += o.gaps;
        self.errors += o.errors;
        self.unknown_sender += o.unknown_sender;
        self.disconnects += o.disconnects;
        self.send_failures += o.send_failures;
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_US, 3).expect("valid histogram bounds")
}

fn main() {
    let args = Args::parse();
    match run(args) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("switchboard-loadgen: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn validate(args: &Args) -> Result<()> {
    if args.peers == 0 {
        bail!("--peers must be at least 1");
    }
    if args.room_size == 0 {
        bail!("--room-size must be at least 1");
    }
    if args.threads == 0 || args.threads > 1024 {
        bail!("--threads must be in 1..=1024");
    }
    if !(args.rate.is_finite() && args.rate > 0.0 && args.rate <= 100_000.0) {
        bail!("--rate must be in (0, 100000]");
    }
    if !(args.duration.is_finite() && args.duration > 0.0 && args.duration <= 86_400.0) {
        bail!("--duration must be in (0, 86400]");
    }
    if !(args.warmup.is_finite() && args.warmup >= 0.0 && args.warmup <= 3600.0) {
        bail!("--warmup must be in [0, 3600]");
    }
    if !(args.connect_rate.is_finite() && args.connect_rate > 0.0) {
        bail!("--connect-rate must be positive");
    }
    Ok(())
}

/// `ws://host:port[/path]` → (address, request URL with the Engine.IO query).
fn resolve_url(url: &str) -> Result<(SocketAddr, String)> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| anyhow!("--url must start with ws:// (got {url:?})"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let addr = hostport
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {hostport:?} (need host:port)"))?
        .next()
        .ok_or_else(|| anyhow!("{hostport:?} resolves to no address"))?;
    let request = if path.contains("/socket.io") {
        format!("ws://{hostport}{path}")
    } else {
        format!("ws://{hostport}/socket.io/?EIO=4&transport=websocket")
    };
    Ok((addr, request))
}

fn run(args: Args) -> Result<()> {
    validate(&args)?;
    let targets = args
        .url
        .iter()
        .map(|u| resolve_url(u))
        .collect::<Result<Vec<_>>>()?;
    let run_id = {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        format!(
            "{:x}",
            (nanos as u64) ^ (u64::from(std::process::id()) << 40)
        )
    };

    let clk_tck = clock_ticks_per_sec();
    for &pid in &args.server_pid {
        rss_kb(pid)
            .with_context(|| format!("reading /proc/{pid}/status: is --server-pid right?"))?;
    }
    for &pid in &args.aux_pid {
        cpu_ticks(pid).with_context(|| format!("reading /proc/{pid}/stat: is --aux-pid right?"))?;
    }
    let rss_before = rss_sum(&args.server_pid);

    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let shared = Arc::new(Shared {
        origin: Instant::now(),
        targets,
        run_id,
        peer_ids: (0..args.peers).map(|_| OnceLock::new()).collect(),
        joined: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        first_error: Mutex::new(None),
        connect_sem: Semaphore::new(MAX_INFLIGHT_CONNECTS),
        progress: (0..args.threads).map(|_| Progress::default()).collect(),
        phase: phase_rx,
        args: args.clone(),
    });

    let mut handles = Vec::with_capacity(args.threads);
    for t in 0..args.threads {
        let shared = shared.clone();
        let h = std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || thread_main(t, shared))
            .context("spawning a worker thread")?;
        handles.push(h);
    }

    // Wait for every peer to join (or any to fail).
    let connect_budget = Duration::from_secs_f64(args.peers as f64 / args.connect_rate)
        + CONNECT_TIMEOUT
        + Duration::from_secs(5);
    let connect_start = Instant::now();
    loop {
        let joined = shared.joined.load(Ordering::SeqCst);
        let failed = shared.failed.load(Ordering::SeqCst);
        if failed > 0 {
            let first = shared
                .first_error
                .lock()
                .ok()
                .and_then(|g| g.clone())
                .unwrap_or_default();
            let _ = phase_tx.send(Phase::Stop);
            join_all(handles);
            bail!(
                "{failed} of {} peers failed to connect/join ({joined} joined); first failure: {first}",
                args.peers
            );
        }
        if joined == args.peers {
            break;
        }
        if connect_start.elapsed() > connect_budget {
            let _ = phase_tx.send(Phase::Stop);
            join_all(handles);
            bail!(
                "timed out after {:?}: only {joined} of {} peers joined",
                connect_budget,
                args.peers
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let connect_elapsed = connect_start.elapsed();

    let mut rss_after = None;
    let mut cpu_us_delta = None;
    let mut cpu_us_each = Vec::new();
    let mut aux_cpu_us = None;
    let mut self_cpu_us = None;
    let mut rss_end = None;
    let window_secs;

    if args.idle {
        let _ = phase_tx.send(Phase::Hold);
        // Let the server settle before reading its memory.
        std::thread::sleep(Duration::from_secs(1));
        rss_after = rss_sum(&args.server_pid);
        let hold = Duration::from_secs_f64(args.duration).saturating_sub(Duration::from_secs(1));
        std::thread::sleep(hold);
        window_secs = args.duration;
        let _ = phase_tx.send(Phase::Stop);
    } else {
        let now = shared.now_ns();
        let start_ns = now + 50_000_000; // 50 ms for the phase change to reach everyone
        let warm = (args.warmup * 1e9) as u64;
        let dur = (args.duration * 1e9) as u64;
        let window_start_ns = start_ns + warm;
        let window_end_ns = window_start_ns + dur;
        let _ = phase_tx.send(Phase::Run {
            start_ns,
            end_ns: window_end_ns,
            window_start_ns,
            window_end_ns,
        });
        sleep_until_ns(&shared, window_start_ns);
        let ticks = |pids: &[u32]| pids.iter().map(|&p| cpu_ticks(p).ok()).collect::<Vec<_>>();
        let cpu0 = ticks(&args.server_pid);
        let aux0 = ticks(&args.aux_pid);
        let self0 = cpu_ticks(std::process::id()).ok();
        sleep_until_ns(&shared, window_end_ns);
        let cpu1 = ticks(&args.server_pid);
        let aux1 = ticks(&args.aux_pid);
        let self1 = cpu_ticks(std::process::id()).ok();
        let us = |a: u64, b: u64| b.saturating_sub(a) as f64 * 1e6 / clk_tck as f64;
        if let (Some(a), Some(b)) = (self0, self1) {
            self_cpu_us = Some(us(a, b));
        }
        rss_end = rss_sum(&args.server_pid);
        // A process that exited (or whose /proc could not be read) makes the sum unknown.
        let deltas = |t0: &[Option<u64>], t1: &[Option<u64>]| {
            t0.iter()
                .zip(t1)
                .map(|(a, b)| Some(us((*a)?, (*b)?)))
                .collect::<Option<Vec<f64>>>()
        };
        if let Some(each) = deltas(&cpu0, &cpu1)
            && !each.is_empty()
        {
            cpu_us_delta = Some(each.iter().sum());
            cpu_us_each = each;
        }
        if let Some(each) = deltas(&aux0, &aux1)
            && !each.is_empty()
        {
            aux_cpu_us = Some(each.iter().sum());
        }
        wait_drained(&shared);
        window_secs = args.duration;
        let _ = phase_tx.send(Phase::Stop);
    }

    let mut total = ThreadStats::new(0);
    for s in join_all(handles) {
        total.merge(&s);
    }

    report(
        &args,
        &total,
        Report {
            connect_elapsed,
            window_secs,
            cpu_us_delta,
            cpu_us_each,
            aux_cpu_us,
            self_cpu_us,
            rss_before,
            rss_after,
            rss_end,
        },
    );
    Ok(())
}

struct Report {
    connect_elapsed: Duration,
    window_secs: f64,
    /// CPU time of the server PIDs over the window, summed (µs).
    cpu_us_delta: Option<f64>,
    /// The same per server PID, in `--server-pid` order (empty if unknown).
    cpu_us_each: Vec<f64>,
    /// CPU time of the `--aux-pid` processes over the window, summed (µs).
    aux_cpu_us: Option<f64>,
    /// This process's own CPU time over the window: what the load itself cost.
    self_cpu_us: Option<f64>,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
    rss_end: Option<u64>,
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

fn report(args: &Args, s: &ThreadStats, r: Report) {
    let delivery_pct = if s.sent > 0 {
        s.delivered as f64 * 100.0 / s.sent as f64
    } else {
        0.0
    };
    let throughput = s.delivered as f64 / r.window_secs;
    let cpu_per_msg = match (r.cpu_us_delta, s.delivered) {
        (Some(c), d) if d > 0 => Some(c / d as f64),
        _ => None,
    };
    let aux_per_msg = match (r.aux_cpu_us, s.delivered) {
        (Some(c), d) if d > 0 => Some(c / d as f64),
        _ => None,
    };
    let pct = |c: f64| c / (r.window_secs * 1e4);
    let multi = args.url.len() > 1;
    let server_rss = if args.idle { r.rss_after } else { r.rss_end };
    let rss_per_conn = match (args.idle, r.rss_before, r.rss_after) {
        (true, Some(b), Some(a)) => Some((a as f64 - b as f64) / args.peers as f64),
        _ => None,
    };
    if args.json {
        let v = serde_json::json!({
            "mode": if args.idle { "idle" } else { "relay" },
            "peers": args.peers,
            "room_size": args.room_size,
            "rate_target": args.rate,
            "threads": args.threads,
            "duration_s": r.window_secs,
            "connect_total_ms": r.connect_elapsed.as_secs_f64() * 1000.0,
            "connect_ms_p50": ms(&s.connect_us, 0.5),
            "connect_ms_p99": ms(&s.connect_us, 0.99),
            "sent": s.sent,
            "delivered": s.delivered,
            "delivery_pct": delivery_pct,
            "sent_total": s.sent_total,
            "delivered_total": s.delivered_total,
            "reordered": s.reordered,
            "gaps": s.gaps,
            "errors": s.errors,
            "disconnects": s.disconnects,
            "throughput_msg_s": throughput,
            "p50_ms": ms(&s.latency_us, 0.5),
            "p99_ms": ms(&s.latency_us, 0.99),
            "p999_ms": ms(&s.latency_us, 0.999),
            "servers": args.url.len(),
            "cross_delivered": multi.then_some(s.cross_delivered),
            "cross_p50_ms": multi.then(|| ms(&s.cross_latency_us, 0.5)),
            "cross_p99_ms": multi.then(|| ms(&s.cross_latency_us, 0.99)),
            "server_cpu_pct_each": r.cpu_us_each.iter().map(|&c| pct(c)).collect::<Vec<_>>(),
            "aux_cpu_us_per_msg": aux_per_msg,
            "aux_cpu_pct": r.aux_cpu_us.map(pct),
            "max_ms": if s.latency_us.is_empty() { 0.0 } else { s.latency_us.max() as f64 / 1000.0 },
            "server_cpu_us_per_msg": cpu_per_msg,
            "server_cpu_pct": r.cpu_us_delta.map(|c| c / (r.window_secs * 1e4)),
            "loadgen_cpu_pct": r.self_cpu_us.map(|c| c / (r.window_secs * 1e4)),
            "loadgen_cpu_us_per_msg": match (r.self_cpu_us, s.delivered) {
                (Some(c), d) if d > 0 => Some(c / d as f64),
                _ => None,
            },
            "server_rss_kb": server_rss,
            "server_rss_before_kb": r.rss_before,
            "rss_per_conn_kb": rss_per_conn,
        });
        println!("{v}");
        return;
    }
    println!(
        "switchboard-loadgen: {} peers, rooms of {}, {} thread(s), {} server(s){}",
        args.peers,
        args.room_size,
        args.threads,
        args.url.len(),
        if args.idle { ", idle" } else { "" }
    );
    println!(
        "  connect: all joined in {:.0} ms; per peer p50 {:.2} ms, p99 {:.2} ms",
        r.connect_elapsed.as_secs_f64() * 1000.0,
        ms(&s.connect_us, 0.5),
        ms(&s.connect_us, 0.99)
    );
    if !args.idle {
        println!(
            "  target {} msg/s per peer = {:.0} msg/s; window {:.1} s after {:.1} s warmup",
            args.rate,
            args.rate * args.peers as f64,
            r.window_secs,
            args.warmup
        );
        println!(
            "  sent {}  delivered {} ({:.3} %)  throughput {:.0} msg/s",
            s.sent, s.delivered, delivery_pct, throughput
        );
        println!(
            "  latency p50 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
            ms(&s.latency_us, 0.5),
            ms(&s.latency_us, 0.99),
            ms(&s.latency_us, 0.999),
            if s.latency_us.is_empty() {
                0.0
            } else {
                s.latency_us.max() as f64 / 1000.0
            }
        );
        if multi {
            println!(
                "  across servers: delivered {}  latency p50 {:.3} ms  p99 {:.3} ms",
                s.cross_delivered,
                ms(&s.cross_latency_us, 0.5),
                ms(&s.cross_latency_us, 0.99)
            );
        }
    }
    println!(
        "  reordered {}  gaps {}  error events {}  disconnects {}",
        s.reordered, s.gaps, s.errors, s.disconnects
    );
    if let Some(c) = r.cpu_us_delta {
        println!(
            "  server CPU {:.1} % of a core; {} µs per delivered message",
            c / (r.window_secs * 1e4),
            cpu_per_msg.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"))
        );
        if r.cpu_us_each.len() > 1 {
            let each: Vec<String> = r
                .cpu_us_each
                .iter()
                .map(|&c| format!("{:.1} %", pct(c)))
                .collect();
            println!("    per server: {}", each.join(", "));
        }
    }
    if let Some(c) = r.aux_cpu_us {
        println!(
            "  helper processes CPU {:.1} % of a core; {} µs per delivered message",
            pct(c),
            aux_per_msg.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2}"))
        );
    }
    if let Some(c) = r.self_cpu_us {
        println!(
            "  load generator CPU {:.1} % of a core ({:.2} µs per delivered message, sent and received)",
            c / (r.window_secs * 1e4),
            if s.delivered > 0 {
                c / s.delivered as f64
            } else {
                0.0
            }
        );
    }
    if let Some(b) = r.rss_before {
        print!("  server RSS before {b} kB");
        if let Some(a) = server_rss {
            print!(", now {a} kB");
        }
        if let Some(p) = rss_per_conn {
            print!(", {p:.1} kB per connection");
        }
        println!();
    }
}

fn join_all(handles: Vec<std::thread::JoinHandle<ThreadStats>>) -> Vec<ThreadStats> {
    handles
        .into_iter()
        .filter_map(|h| match h.join() {
            Ok(s) => Some(s),
            Err(_) => {
                eprintln!("switchboard-loadgen: a worker thread panicked");
                None
            }
        })
        .collect()
}

/// Waits until every message sent has been received, at most [`DRAIN`].
fn wait_drained(shared: &Shared) {
    let deadline = Instant::now() + DRAIN;
    loop {
        let (sent, received) = shared.progress.iter().fold((0, 0), |(s, r), p| {
            (
                s + p.sent.load(Ordering::Acquire),
                r + p.received.load(Ordering::Acquire),
            )
        });
        if received >= sent || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn sleep_until_ns(shared: &Shared, ns: u64) {
    let now = shared.now_ns();
    if ns > now {
        std::thread::sleep(Duration::from_nanos(ns - now));
    }
}

fn thread_main(t: usize, shared: Arc<Shared>) -> ThreadStats {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            shared.fail(t, &anyhow!("building a runtime: {e}"));
            return ThreadStats::new(t);
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let stats = Rc::new(RefCell::new(ThreadStats::new(t)));
        let mut tasks = Vec::new();
        for idx in (t..shared.args.peers).step_by(shared.args.threads) {
            tasks.push(tokio::task::spawn_local(peer(
                idx,
                shared.clone(),
                stats.clone(),
            )));
        }
        for task in tasks {
            if let Err(e) = task.await {
                eprintln!("switchboard-loadgen: peer task failed: {e}");
            }
        }
        match Rc::try_unwrap(stats) {
            Ok(cell) => cell.into_inner(),
            Err(rc) => {
                let mut s = ThreadStats::new(t);
                s.merge(&rc.borrow());
                s
            }
        }
    })
}

fn text(s: impl Into<String>) -> Message {
    Message::text(s.into())
}

/// Next text frame; errors on close or end of stream.
async fn next_text(ws: &mut Ws) -> Result<String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(c))) => bail!("server closed the connection: {c:?}"),
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e).context("WebSocket read"),
            None => bail!("connection closed"),
        }
    }
}

/// Connect, open the namespace and join the room; returns the socket and own peer id.
async fn connect_and_join(
    idx: usize,
    shared: &Shared,
    stats: &RefCell<ThreadStats>,
) -> Result<(Ws, String)> {
    let args = &shared.args;
    let (addr, request_url) = &shared.targets[shared.target_of(idx)];
    let addr = *addr;
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .context("socket")?;
    if !args.source_ips.is_empty() {
        let ip = args.source_ips[idx % args.source_ips.len()];
        sock.bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("binding source address {ip}"))?;
    }
    let stream = sock
        .connect(addr)
        .await
        .with_context(|| format!("TCP connect to {addr}"))?;
    stream.set_nodelay(true).context("TCP_NODELAY")?;
    // tungstenite zero-fills its whole read buffer before every read (128 KiB by default):
    // at tens of thousands of frames per second that memset was over half of the CPU.
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (mut ws, _resp) =
        tokio_tungstenite::client_async_with_config(request_url.as_str(), stream, Some(config))
            .await
            .context("WebSocket handshake")?;

    let open = next_text(&mut ws)
        .await
        .context("waiting for the Engine.IO open packet")?;
    if !open.starts_with('0') {
        bail!("expected an Engine.IO open packet, got {open:?}");
    }
    let connect = match &args.token {
        Some(tok) => format!("40{}", serde_json::json!({ "token": tok })),
        None => "40".to_owned(),
    };
    ws.send(text(connect)).await.context("sending connect")?;
    loop {
        let t = next_text(&mut ws)
            .await
            .context("waiting for the namespace connect")?;
        if t == "2" {
            ws.send(text("3")).await.context("pong")?;
        } else if t.starts_with("40") {
            break;
        } else if let Some(rest) = t.strip_prefix("44") {
            bail!("connect_error: {rest}");
        } else if t.starts_with('1') {
            bail!("server closed the session");
        }
    }

    let room = format!("lg-{}-{}", shared.run_id, shared.room_of(idx));
    let join = format!(
        "421[\"join-room\",{}]",
        serde_json::json!({ "roomId": room })
    );
    ws.send(text(join)).await.context("sending join-room")?;
    loop {
        let t = next_text(&mut ws)
            .await
            .context("waiting for the join-room ack")?;
        if t == "2" {
            ws.send(text("3")).await.context("pong")?;
        } else if let Some(body) = t.strip_prefix("431") {
            let v: serde_json::Value =
                serde_json::from_str(body).with_context(|| format!("join ack {body:?}"))?;
            let ack = v.get(0).ok_or_else(|| anyhow!("empty join ack {body}"))?;
            if ack.get("ok").and_then(serde_json::Value::as_bool) != Some(true) {
                bail!("join-room {room} refused: {ack}");
            }
            let id = ack
                .pointer("/self/peerId")
                .and_then(serde_json::Value::as_str)
                .ok_or_else(|| anyhow!("join ack without self.peerId: {ack}"))?;
            return Ok((ws, id.to_owned()));
        } else if t.starts_with("42[\"error\"") {
            stats.borrow_mut().errors += 1;
        } else if t.starts_with('1') {
            bail!("server closed the session");
        }
    }
}

/// Value of the unsigned integer right after `key` in `s`.
fn find_u64(s: &str, key: &str) -> Option<u64> {
    let i = s.find(key)? + key.len();
    let digits = &s.as_bytes()[i..];
    let mut v: u64 = 0;
    let mut any = false;
    for &b in digits {
        if b.is_ascii_digit() {
            v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            any = true;
        } else {
            break;
        }
    }
    any.then_some(v)
}

/// The string right after `"from":"` in `s`.
fn find_from(s: &str) -> Option<&str> {
    const KEY: &str = "\"from\":\"";
    let i = s.find(KEY)? + KEY.len();
    let end = s[i..].find('"')?;
    Some(&s[i..i + end])
}

/// Per-room-mate receive state.
struct Mate {
    id: String,
    next_seq: u64,
    /// The mate is connected to another server than this peer.
    cross: bool,
}

struct Window {
    start: u64,
    end: u64,
}

/// Handles one received text frame. Returns a reply to send (pong), if any.
fn on_frame(
    t: &str,
    shared: &Shared,
    mates: &mut [Mate],
    window: &Window,
    stats: &RefCell<ThreadStats>,
) -> Option<&'static str> {
    if t == "2" {
        return Some("3");
    }
    if t.starts_with("42[\"signal\",") {
        let now = shared.now_ns();
        let (Some(from), Some(seq), Some(sent_at)) =
            (find_from(t), find_u64(t, "\"seq\":"), find_u64(t, "\"t\":"))
        else {
            stats.borrow_mut().unknown_sender += 1;
            return None;
        };
        let mut st = stats.borrow_mut();
        st.delivered_total += 1;
        shared.progress[st.slot]
            .received
            .store(st.delivered_total, Ordering::Release);
        let mut cross = false;
        match mates.iter_mut().find(|m| m.id == from) {
            Some(m) => {
                cross = m.cross;
                if seq == m.next_seq {
                    m.next_seq += 1;
                } else if seq > m.next_seq {
                    st.gaps += seq - m.next_seq;
                    m.next_seq = seq + 1;
                } else {
                    st.reordered += 1;
                }
            }
            None => st.unknown_sender += 1,
        }
        if sent_at >= window.start && sent_at < window.end {
            st.delivered += 1;
            let us = (now.saturating_sub(sent_at) / 1000).clamp(1, HIST_MAX_US);
            let _ = st.latency_us.record(us);
            if cross {
                st.cross_delivered += 1;
                let _ = st.cross_latency_us.record(us);
            }
        }
    } else if t.starts_with("42[\"error\"") {
        stats.borrow_mut().errors += 1;
    }
    None
}

/// Handles one item of the WebSocket stream (answering pings); false when the connection is
/// gone (counted as a disconnect).
async fn on_message(
    msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
    ws: &mut Ws,
    shared: &Shared,
    mates: &mut [Mate],
    window: &Window,
    stats: &RefCell<ThreadStats>,
) -> bool {
    match msg {
        Some(Ok(Message::Text(t))) => {
            if let Some(reply) = on_frame(t.as_str(), shared, mates, window, stats)
                && ws.send(text(reply)).await.is_err()
            {
                stats.borrow_mut().disconnects += 1;
                return false;
            }
            true
        }
        Some(Ok(Message::Close(_)) | Err(_)) | None => {
            stats.borrow_mut().disconnects += 1;
            false
        }
        Some(Ok(_)) => true,
    }
}

async fn peer(idx: usize, shared: Arc<Shared>, stats: Rc<RefCell<ThreadStats>>) {
    let mut phase_rx = shared.phase.clone();
    // Connect schedule: peer i starts at i / connect_rate.
    let slot = shared.origin + Duration::from_secs_f64(idx as f64 / shared.args.connect_rate);
    tokio::select! {
        () = sleep_until(slot.into()) => {}
        () = wait_stop(&mut phase_rx) => return,
    }
    let permit = tokio::select! {
        p = shared.connect_sem.acquire() => p,
        () = wait_stop(&mut phase_rx) => return,
    };
    let t0 = Instant::now();
    let res = tokio::select! {
        r = timeout(CONNECT_TIMEOUT, connect_and_join(idx, &shared, &stats)) => r,
        () = wait_stop(&mut phase_rx) => return,
    };
    drop(permit);
    let (mut ws, my_id) = match res {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            shared.fail(idx, &e);
            return;
        }
        Err(_) => {
            shared.fail(
                idx,
                &anyhow!("connect + join took over {CONNECT_TIMEOUT:?}"),
            );
            return;
        }
    };
    let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
    let _ = stats
        .borrow_mut()
        .connect_us
        .record(us.clamp(1, HIST_MAX_US));
    let _ = shared.peer_ids[idx].set(my_id);
    shared.joined.fetch_add(1, Ordering::SeqCst);

    let mut window = Window {
        start: u64::MAX,
        end: 0,
    };
    let mut mates: Vec<Mate> = Vec::new();

    // Wait for the run (or hold) phase, answering pings meanwhile.
    let phase = loop {
        let p = *phase_rx.borrow_and_update();
        match p {
            Phase::Connecting => {}
            other => break other,
        }
        tokio::select! {
            r = phase_rx.changed() => if r.is_err() { return; },
            msg = ws.next() => {
                if !on_message(msg, &mut ws, &shared, &mut mates, &window, &stats).await {
                    return;
                }
            },
        }
    };

    let mut sending = false;
    let mut end_ns = 0;
    let mut ticker = tokio::time::interval(Duration::from_secs(3600));
    if let Phase::Run {
        start_ns,
        end_ns: e,
        window_start_ns,
        window_end_ns,
    } = phase
    {
        window = Window {
            start: window_start_ns,
            end: window_end_ns,
        };
        end_ns = e;
        for j in shared.mates(idx) {
            if let Some(id) = shared.peer_ids[j].get() {
                mates.push(Mate {
                    id: id.clone(),
                    next_seq: 0,
                    cross: shared.target_of(j) != shared.target_of(idx),
                });
            }
        }
        if !mates.is_empty() {
            sending = true;
            let period = Duration::from_secs_f64(1.0 / shared.args.rate);
            // Spread the peers' schedules evenly over one period.
            let offset = period.mul_f64(idx as f64 / shared.args.peers as f64);
            let first = shared.origin + Duration::from_nanos(start_ns) + offset;
            ticker = tokio::time::interval_at(first.into(), period);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        }
    }

    let mut seqs = vec![0u64; mates.len()];
    let mut rr = 0usize;
    let mut buf = String::with_capacity(160);
    loop {
        tokio::select! {
            biased;
            msg = ws.next() => {
                if !on_message(msg, &mut ws, &shared, &mut mates, &window, &stats).await {
                    return;
                }
            },
            _ = ticker.tick(), if sending => {
                let now = shared.now_ns();
                if now >= end_ns {
                    sending = false;
                    continue;
                }
                let k = rr % mates.len();
                rr = rr.wrapping_add(1);
                let seq = seqs[k];
                seqs[k] += 1;
                buf.clear();
                let _ = write!(
                    buf,
                    "42[\"signal\",{{\"to\":\"{}\",\"data\":{{\"seq\":{seq},\"t\":{now}}}}}]",
                    mates[k].id
                );
                if ws.send(Message::text(buf.clone())).await.is_err() {
                    let mut st = stats.borrow_mut();
                    st.send_failures += 1;
                    st.disconnects += 1;
                    return;
                }
                let mut st = stats.borrow_mut();
                st.sent_total += 1;
                shared.progress[st.slot]
                    .sent
                    .store(st.sent_total, Ordering::Release);
                if now >= window.start && now < window.end {
                    st.sent += 1;
                }
            },
            r = phase_rx.changed() => {
                if r.is_err() || *phase_rx.borrow_and_update() == Phase::Stop {
                    break;
                }
            },
        }
    }
    let _ = ws.close(None).await;
}

async fn wait_stop(rx: &mut watch::Receiver<Phase>) {
    loop {
        if *rx.borrow_and_update() == Phase::Stop {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

fn clock_ticks_per_sec() -> u64 {
    #[allow(unsafe_code)]
    // SAFETY: sysconf has no preconditions; it only reads a configuration value.
    let v = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(v).ok().filter(|&v| v > 0).unwrap_or(100)
}

/// utime + stime of `pid`, in clock ticks (fields 14 and 15 of /proc/PID/stat).
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &stat[stat.rfind(')').ok_or_else(|| anyhow!("bad stat"))? + 1..];
    let mut f = rest.split_whitespace();
    let utime: u64 = f.nth(11).ok_or_else(|| anyhow!("bad stat"))?.parse()?;
    let stime: u64 = f.next().ok_or_else(|| anyhow!("bad stat"))?.parse()?;
    Ok(utime + stime)
}

/// VmRSS of `pids` in kB, summed; None if there are none or one cannot be read.
fn rss_sum(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| rss_kb(p).ok()).sum()
}

/// VmRSS of `pid` in kB.
fn rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .ok_or_else(|| anyhow!("no VmRSS in /proc/{pid}/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_delivery() {
        let f = r#"42["signal",{"from":"abc-123","data":{"seq":42,"t":123456789}}]"#;
        assert_eq!(find_from(f), Some("abc-123"));
        assert_eq!(find_u64(f, "\"seq\":"), Some(42));
        assert_eq!(find_u64(f, "\"t\":"), Some(123_456_789));
    }

    #[test]
    fn url_gets_socketio_path() {
        let (a, u) = resolve_url("ws://127.0.0.1:8080").expect("valid url");
        assert_eq!(a.port(), 8080);
        assert_eq!(
            u,
            "ws://127.0.0.1:8080/socket.io/?EIO=4&transport=websocket"
        );
    }

    #[test]
    fn room_spreads_over_servers() {
        // Rooms of 4 over 2 servers: positions 0 and 2 on the first, 1 and 3 on the second.
        let got: Vec<usize> = (0..8).map(|i| server_of(i, 4, 2)).collect();
        assert_eq!(got, [0, 1, 0, 1, 0, 1, 0, 1]);
        // Rooms of 3 over 2 servers: the position in the room decides, not the peer index.
        let got: Vec<usize> = (0..6).map(|i| server_of(i, 3, 2)).collect();
        assert_eq!(got, [0, 1, 0, 0, 1, 0]);
        assert!((0..100).all(|i| server_of(i, 4, 1) == 0));
    }

    #[test]
    fn several_urls_and_pids() {
        let a = Args::try_parse_from([
            "lg",
            "--url",
            "ws://127.0.0.1:1,ws://127.0.0.1:2",
            "--url",
            "ws://127.0.0.1:3",
            "--server-pid",
            "10,11",
            "--aux-pid",
            "12",
        ])
        .expect("valid arguments");
        assert_eq!(a.url.len(), 3);
        assert_eq!(a.server_pid, [10, 11]);
        assert_eq!(a.aux_pid, [12]);
        assert!(Args::try_parse_from(["lg"]).is_err(), "--url is required");
    }
}
