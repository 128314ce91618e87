//! What a run reports, the checks that refuse a run whose sender could not keep the asked
//! rate, and the two output forms: a JSON line (for scripts) and a table.

use std::fmt::Write as _;

use serde::Serialize;

/// Every figure of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// "load" or "calibrate".
    pub kind: &'static str,
    pub transport: &'static str,
    pub mode: &'static str,
    pub target: String,
    pub allocations: u32,
    pub payload_bytes: usize,
    pub rate_asked: u64,
    pub rate_achieved: f64,
    pub duration_s: f64,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub loss_pct: f64,
    pub reordered: u64,
    pub duplicates: u64,
    pub beyond_window: u64,
    pub warmup_received: u64,
    pub foreign: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub late_pct: f64,
    pub max_lag_us: f64,
    pub sender_dropped: u64,
    pub sender_errors: u64,
    /// Datagrams the kernel dropped at the tool's own sockets (full receive buffers).
    pub client_socket_drops: u64,
    /// CPU time of the tool itself over the window, % of one core.
    pub loader_cpu_pct: f64,
    /// Datagrams the server forwarded for the received payloads: each payload crosses the
    /// relay twice (client → peer, peer → client), so 2 × received (1 × for calibrate).
    pub relayed_packets: u64,
    pub server_cpu_us: Option<u64>,
    pub cpu_us_per_relayed: Option<f64>,
    pub server_rss_kb: Option<u64>,
    pub server_hwm_kb: Option<u64>,
    /// Datagrams the kernel dropped at the server's UDP sockets.
    pub server_socket_drops: Option<u64>,
    pub refreshes: u64,
    pub refresh_failures: u64,
}

/// The run could not be measured as asked: it measured the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// Limits the sender and the tool's sockets must keep for the figures to count.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Achieved / asked below this refuses (0.99).
    pub min_achieved: f64,
    pub max_late_fraction: f64,
}

/// Refuses a run whose figures would describe the load tool rather than the server: the
/// sender did not reach the asked rate, fell behind its schedule, could not hand packets
/// to the kernel, or the tool's own sockets overflowed.
pub fn check(r: &Report, limits: Limits) -> Result<(), Refusal> {
    let asked = r.rate_asked as f64;
    if r.sender_dropped > 0 {
        return Err(Refusal(format!(
            "the sender could not hand {} packets to the kernel (send buffer or stream outbox full)",
            r.sender_dropped
        )));
    }
    if r.rate_achieved < limits.min_achieved * asked {
        return Err(Refusal(format!(
            "achieved {:.0} packets/s, below {:.0} % of the asked {}",
            r.rate_achieved,
            limits.min_achieved * 100.0,
            r.rate_asked
        )));
    }
    if r.late_pct > limits.max_late_fraction * 100.0 {
        return Err(Refusal(format!(
            "pacing fell behind: {:.2} % of packets were sent late (max lag {:.0} µs)",
            r.late_pct, r.max_lag_us
        )));
    }
    if r.client_socket_drops > 0 {
        return Err(Refusal(format!(
            "the tool's own sockets dropped {} datagrams (its receiver fell behind)",
            r.client_socket_drops
        )));
    }
    Ok(())
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "n/a".into(), |v| v.to_string())
}

/// The human-readable table.
#[must_use]
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} {} {} -> {}: {} allocations, {} B payload, {:.1} s",
        r.kind, r.transport, r.mode, r.target, r.allocations, r.payload_bytes, r.duration_s
    );
    let rows: [(&str, String); 14] = [
        (
            "rate asked / achieved",
            format!("{} / {:.0} packets/s", r.rate_asked, r.rate_achieved),
        ),
        ("sent / received", format!("{} / {}", r.sent, r.received)),
        ("lost", format!("{} ({:.4} %)", r.lost, r.loss_pct)),
        (
            "reordered / duplicates",
            format!("{} / {}", r.reordered, r.duplicates),
        ),
        (
            "latency p50 / p99 / p99.9 / max",
            format!(
                "{:.1} / {:.1} / {:.1} / {:.1} µs",
                r.p50_us, r.p99_us, r.p999_us, r.max_us
            ),
        ),
        (
            "sent late",
            format!("{:.3} % (max lag {:.0} µs)", r.late_pct, r.max_lag_us),
        ),
        ("tool CPU", format!("{:.0} % of a core", r.loader_cpu_pct)),
        ("tool socket drops", r.client_socket_drops.to_string()),
        ("relayed datagrams", r.relayed_packets.to_string()),
        ("server CPU", format!("{} µs", opt(r.server_cpu_us))),
        (
            "server CPU per relayed",
            format!(
                "{} µs",
                opt(r.cpu_us_per_relayed.map(|v| format!("{v:.3}")))
            ),
        ),
        (
            "server RSS / peak",
            format!("{} / {} kB", opt(r.server_rss_kb), opt(r.server_hwm_kb)),
        ),
        ("server socket drops", opt(r.server_socket_drops)),
        (
            "refreshes (failed)",
            format!("{} ({})", r.refreshes, r.refresh_failures),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "  {k:<32} {v}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        min_achieved: 0.99,
        max_late_fraction: 0.01,
    };

    fn on_rate() -> Report {
        Report {
            rate_asked: 10_000,
            rate_achieved: 9_950.0,
            ..Report::default()
        }
    }

    #[test]
    fn a_run_that_kept_its_rate_is_reported() {
        assert_eq!(check(&on_rate(), LIMITS), Ok(()));
    }

    #[test]
    fn a_run_below_99_percent_of_the_asked_rate_is_refused() {
        let r = Report {
            rate_achieved: 9_800.0,
            ..on_rate()
        };
        assert!(check(&r, LIMITS).is_err_and(|e| e.0.contains("achieved 9800")));
    }

    #[test]
    fn a_run_whose_pacing_fell_behind_is_refused_even_at_the_full_count() {
        let r = Report {
            late_pct: 5.0,
            ..on_rate()
        };
        assert!(check(&r, LIMITS).is_err_and(|e| e.0.contains("pacing fell behind")));
    }

    #[test]
    fn a_run_where_the_tool_itself_dropped_datagrams_is_refused() {
        let dropped = Report {
            client_socket_drops: 3,
            ..on_rate()
        };
        assert!(check(&dropped, LIMITS).is_err());
        let unsent = Report {
            sender_dropped: 1,
            ..on_rate()
        };
        assert!(check(&unsent, LIMITS).is_err());
    }
}
