//! `switchboard-turnload`: a capacity load tool for TURN servers (ours and coturn, same
//! flags). N allocations, each from its own client socket or connection, open-loop
//! ChannelData at a set total rate with flow id, sequence number and timestamp in every
//! payload; loss, reordering, duplicates and latency per run; the server's CPU time per
//! relayed packet from /proc. A run whose sender could not keep the asked rate is refused.
//!
//! Layout: decisions and formats are sans-IO (`stun`, `framing`, `payload`, `accounting`,
//! `pacing`, `recorder`, `report`, `procfs` parsers); I/O lives in `legs` (sockets and
//! streams), `control` (TURN transactions), `sender` (the pacing thread), `echo` and `run`.

pub mod accounting;
pub mod cli;
pub mod control;
pub mod echo;
pub mod framing;
pub mod legs;
pub mod pacing;
pub mod payload;
pub mod procfs;
pub mod recorder;
pub mod report;
pub mod run;
pub mod sender;
pub mod stun;
pub mod tls;

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use cli::{Cli, Command, EchoArgs, MAX_DURATION};
use report::{Limits, Report};

/// Exit status of a run that was refused: it could not send at the asked rate.
pub const EXIT_REFUSED: u8 = 3;

/// Runs the command line; the exit code says reported (0), failed (1) or refused (3).
pub fn main_with(cli: Cli) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let local = tokio::task::LocalSet::new();
    let (report, traffic) = match cli.command {
        Command::Echo(args) => {
            return local
                .block_on(&rt, echo_server(args))
                .map(|()| ExitCode::SUCCESS);
        }
        Command::Load(args) => {
            let t = args.traffic.clone();
            (local.block_on(&rt, run::load(*args))?, t)
        }
        Command::Calibrate(args) => {
            let t = args.traffic.clone();
            (local.block_on(&rt, run::calibrate(args))?, t)
        }
    };
    let limits = Limits {
        min_achieved: traffic.min_achieved,
        max_late_fraction: traffic.max_late_fraction,
    };
    let mut out = std::io::stdout().lock();
    match report::check(&report, limits) {
        Ok(()) => {
            if traffic.json {
                writeln!(out, "{}", serde_json::to_string(&report)?)?;
            } else {
                write!(out, "{}", report::table(&report))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(refusal) => {
            tracing::error!(
                reason = %refusal,
                asked = report.rate_asked,
                achieved = format!("{:.0}", report.rate_achieved),
                "Refusing to report: the load tool could not send at the asked rate, so its \
                 figures would measure the client"
            );
            if traffic.json {
                writeln!(out, "{}", refused_json(&report, &refusal.0))?;
            }
            Ok(ExitCode::from(EXIT_REFUSED))
        }
    }
}

fn refused_json(r: &Report, reason: &str) -> serde_json::Value {
    serde_json::json!({
        "kind": r.kind,
        "transport": r.transport,
        "refused": reason,
        "rate_asked": r.rate_asked,
        "rate_achieved": r.rate_achieved,
        "late_pct": r.late_pct,
        "sender_dropped": r.sender_dropped,
        "client_socket_drops": r.client_socket_drops,
        "loader_cpu_pct": r.loader_cpu_pct,
    })
}

/// `switchboard-turnload echo`: prints the bound address, echoes until the duration ends or
/// SIGINT/SIGTERM.
async fn echo_server(args: EchoArgs) -> anyhow::Result<()> {
    let sock = legs::bind_udp(args.listen).with_context(|| format!("binding {}", args.listen))?;
    let addr = sock.local_addr()?;
    writeln!(std::io::stdout(), "{addr}")?;
    std::io::stdout().flush()?;
    let limit = Duration::from_secs_f64(args.duration.clamp(0.0, MAX_DURATION.as_secs_f64()));
    let (stop, rx) = tokio::sync::watch::channel(false);
    let worker = std::thread::Builder::new()
        .name("turnload-echo".into())
        .spawn(move || echo::serve(vec![sock], &rx))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        () = tokio::time::sleep(limit) => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    let _ = stop.send(true);
    let counts = worker
        .join()
        .map_err(|_| anyhow::anyhow!("echo thread panicked"))??;
    tracing::info!(
        echoed = counts.echoed,
        failed = counts.failed,
        "Echo stopped"
    );
    Ok(())
}
