//! Command-line flags of `switchboard-turnload`, with their hard caps.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Longest run the tool accepts (warm-up + measurement), whatever is asked.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most allocations (client sockets) one run makes.
pub const MAX_ALLOCATIONS: u32 = 4096;
/// Highest total rate accepted, packets/s.
pub const MAX_RATE: u64 = 5_000_000;
/// Largest payload: what fits one ChannelData message in a 1500-byte loopback-safe datagram
/// is not enforced; the ChannelData length field is.
pub const MAX_PAYLOAD: usize = 8192;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard-turnload",
    version,
    about = "Capacity load tool for TURN servers: N allocations, open-loop ChannelData at a set \
             rate, loss/reordering/latency per flow, server CPU per relayed packet"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load a TURN server (ours or coturn, same flags).
    Load(Box<LoadArgs>),
    /// The same sender and receiver against a plain UDP echo (no TURN): the tool's own
    /// ceiling and latency floor.
    Calibrate(CalibrateArgs),
    /// A plain UDP echo server (for `calibrate --echo`, pinned to another core).
    Echo(EchoArgs),
}

/// The traffic: how much, how long, how to judge the sender.
#[derive(Debug, Clone, Args)]
pub struct TrafficArgs {
    /// Allocations (each from its own client socket or connection).
    #[arg(short = 'n', long, default_value_t = 10)]
    pub allocations: u32,
    /// Total rate over all allocations, ChannelData packets/s sent by the clients.
    #[arg(short, long, default_value_t = 1000)]
    pub rate: u64,
    /// Payload bytes per packet (the ChannelData data; at least 24).
    #[arg(short, long, default_value_t = 160)]
    pub size: usize,
    /// Measured duration, seconds (after the warm-up).
    #[arg(short, long, default_value_t = 5.0)]
    pub duration: f64,
    /// Warm-up before the measurement, seconds: sent at the same rate, not counted.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// How long to wait for packets in flight after the last send, milliseconds.
    #[arg(long, default_value_t = 500)]
    pub drain_ms: u64,
    /// A packet sent more than this after its due time is late, milliseconds.
    #[arg(long, default_value_t = 2.0)]
    pub max_lag_ms: f64,
    /// Refuse to report when more than this fraction of packets was sent late.
    #[arg(long, default_value_t = 0.01)]
    pub max_late_fraction: f64,
    /// Refuse to report when the achieved rate is below this fraction of the asked one.
    #[arg(long, default_value_t = 0.99)]
    pub min_achieved: f64,
    /// Print one JSON line instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

/// Who each allocation's peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Allocations in pairs, each the other's peer: client → relay → relay → client.
    Pair,
    /// Each allocation's peer is a UDP echo socket of the tool: client → relay → echo →
    /// relay → client (the relay must allow loopback peers).
    Echo,
    /// The first half (rounded down to even) in pairs, the rest with echo peers.
    Mixed,
}

impl Mode {
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Mode::Pair => "pair",
            Mode::Echo => "echo",
            Mode::Mixed => "mixed",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// The TURN server's listening address (UDP/TCP port, or the TLS port with --transport tls).
    #[arg(long)]
    pub server: SocketAddr,
    /// Client leg.
    #[arg(short, long, value_enum, default_value_t = Transport::Udp)]
    pub transport: Transport,
    #[arg(short, long, value_enum, default_value_t = Mode::Pair)]
    pub mode: Mode,
    /// TURN REST shared secret: each allocation gets its own minted credential (like
    /// `turnutils_uclient -W`).
    #[arg(long, env = "TURNLOAD_SECRET", hide_env_values = true, conflicts_with_all = ["user", "password"])]
    pub secret: Option<String>,
    /// File holding the shared secret (first line), instead of --secret.
    #[arg(long, conflicts_with_all = ["secret", "user", "password"])]
    pub secret_file: Option<PathBuf>,
    /// A fixed username for every allocation (with --password).
    #[arg(long, requires = "password")]
    pub user: Option<String>,
    #[arg(
        long,
        requires = "user",
        env = "TURNLOAD_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// User id prefix for minted credentials: allocation i uses "{expiry}:{prefix}{i}".
    #[arg(long, default_value = "turnload-")]
    pub user_prefix: String,
    /// Lifetime of minted credentials, seconds.
    #[arg(long, default_value_t = 86_400)]
    pub credential_ttl: u64,
    /// Allocation LIFETIME to ask for, seconds (the server may shorten it).
    #[arg(long, default_value_t = 600)]
    pub lifetime: u32,
    /// Refresh allocations, permissions and channels this often, seconds (default: half
    /// the granted lifetime, at most 240 s so permissions never lapse).
    #[arg(long)]
    pub refresh_every: Option<f64>,
    /// Process id of the server: its CPU time over the measured window and its memory are
    /// reported.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// TLS: accept any server certificate (test certificates).
    #[arg(long, conflicts_with = "ca")]
    pub insecure: bool,
    /// TLS: trust the certificates in this PEM file.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// TLS: server name to verify (default: the server's IP address).
    #[arg(long)]
    pub tls_name: Option<String>,
    /// Address the echo peers bind on (mode echo/mixed).
    #[arg(long, default_value = "127.0.0.1")]
    pub peer_ip: IpAddr,
    /// Number of echo peer sockets (mode echo/mixed); allocations share them round robin.
    #[arg(long, default_value_t = 4)]
    pub echo_sockets: u32,
    /// Allocations set up concurrently.
    #[arg(long, default_value_t = 64)]
    pub setup_concurrency: usize,
    #[command(flatten)]
    pub traffic: TrafficArgs,
}

#[derive(Debug, Clone, Args)]
pub struct CalibrateArgs {
    /// An external echo (`switchboard-turnload echo`) instead of one on a thread of this process.
    #[arg(long)]
    pub echo: Option<SocketAddr>,
    #[command(flatten)]
    pub traffic: TrafficArgs,
}

#[derive(Debug, Clone, Args)]
pub struct EchoArgs {
    /// Address to listen on; the bound address is printed on stdout.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Exit after this many seconds (bounded; at most the tool's hard cap).
    #[arg(long, default_value_t = 600.0)]
    pub duration: f64,
}

/// Validated traffic parameters.
#[derive(Debug, Clone, Copy)]
pub struct Traffic {
    pub allocations: u32,
    pub rate: u64,
    pub size: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub drain: Duration,
    pub max_lag: Duration,
    pub max_late_fraction: f64,
}

fn secs(v: f64, what: &str) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        v.is_finite() && v >= 0.0,
        "{what} must be a non-negative number of seconds"
    );
    Ok(Duration::from_secs_f64(v.min(MAX_DURATION.as_secs_f64())))
}

impl TrafficArgs {
    /// Checks bounds: allocations, rate, size, and warm-up + duration within the hard cap.
    pub fn validate(&self) -> anyhow::Result<Traffic> {
        anyhow::ensure!(
            (1..=MAX_ALLOCATIONS).contains(&self.allocations),
            "--allocations must be 1..={MAX_ALLOCATIONS}"
        );
        anyhow::ensure!(
            (1..=MAX_RATE).contains(&self.rate),
            "--rate must be 1..={MAX_RATE} packets/s"
        );
        anyhow::ensure!(
            (crate::payload::MIN_PAYLOAD..=MAX_PAYLOAD).contains(&self.size),
            "--size must be {}..={MAX_PAYLOAD} bytes",
            crate::payload::MIN_PAYLOAD
        );
        let warmup = secs(self.warmup, "--warmup")?;
        let measure = secs(self.duration, "--duration")?;
        anyhow::ensure!(!measure.is_zero(), "--duration must be above 0");
        anyhow::ensure!(
            warmup + measure <= MAX_DURATION,
            "--warmup + --duration must not exceed {} s",
            MAX_DURATION.as_secs()
        );
        anyhow::ensure!(
            self.max_lag_ms.is_finite() && self.max_lag_ms > 0.0,
            "--max-lag-ms must be above 0"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.max_late_fraction),
            "--max-late-fraction must be within 0..=1"
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.min_achieved),
            "--min-achieved must be within 0..=1"
        );
        Ok(Traffic {
            allocations: self.allocations,
            rate: self.rate,
            size: self.size,
            warmup,
            measure,
            drain: Duration::from_millis(self.drain_ms.min(60_000)),
            max_lag: Duration::from_secs_f64(self.max_lag_ms / 1000.0),
            max_late_fraction: self.max_late_fraction,
        })
    }
}
