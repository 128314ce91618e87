//! The load tool against the real signaling binary on loopback, briefly and at a low rate:
//! every `signal` sent in the window is delivered, in order, and the report carries the
//! server's CPU and memory. These tests check the tool's protocol and accounting, never how
//! fast the machine is. Needs `cargo build --workspace --bins` first, like the other
//! end-to-end tests.

use std::process::{Command, Output};

use serde_json::Value;
use switchboard_tests::{Ports, Service, signaling_test_config};

const TOOL: &str = env!("CARGO_BIN_EXE_switchboard-loadgen");

/// The signaling service with `extra` at the top of `[signaling]`.
fn start_signaling(ports: &Ports, extra: &str) -> Service {
    Service::start(
        "switchboard-signaling",
        &signaling_test_config(ports, extra),
    )
}

fn run(ports: &Ports, args: &[&str]) -> Output {
    Command::new(TOOL)
        .arg("--url")
        .arg(format!("ws://127.0.0.1:{}", ports.signaling))
        .args(args)
        .arg("--json")
        .output()
        .expect("run switchboard-loadgen")
}

fn report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "loadgen failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().expect("a JSON line on stdout");
    serde_json::from_str(line).expect("one JSON line on stdout")
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn peers_in_rooms_get_every_signal_in_order_and_the_server_cost_is_read() {
    let ports = Ports::new();
    let svc = start_signaling(&ports, "");
    let pid = svc.pid().to_string();
    // 12 peers in rooms of 4 (3 rooms), 20 signals/s each for 1 s after 0.3 s of warm-up.
    let v = report(&run(
        &ports,
        &[
            "--peers",
            "12",
            "--room-size",
            "4",
            "--rate",
            "20",
            "--duration",
            "1",
            "--warmup",
            "0.3",
            "--threads",
            "2",
            "--server-pid",
            &pid,
        ],
    ));
    assert_eq!(v["mode"], "relay");
    assert!(n(&v, "sent") > 0, "nothing was sent: {v}");
    assert_eq!(
        n(&v, "delivered"),
        n(&v, "sent"),
        "every signal arrives: {v}"
    );
    assert_eq!(v["delivery_pct"].as_f64(), Some(100.0), "{v}");
    assert!(
        n(&v, "delivered_total") >= n(&v, "delivered"),
        "warm-up messages count in the totals: {v}"
    );
    assert_eq!(n(&v, "reordered"), 0, "{v}");
    assert_eq!(n(&v, "gaps"), 0, "{v}");
    assert_eq!(n(&v, "errors"), 0, "no error events: {v}");
    assert_eq!(n(&v, "disconnects"), 0, "{v}");
    assert!(v["p99_ms"].as_f64().is_some_and(|p| p > 0.0), "{v}");
    assert!(
        v["server_cpu_us_per_msg"].as_f64().is_some(),
        "server CPU is read from /proc: {v}"
    );
    assert!(n(&v, "server_rss_kb") > 0, "{v}");
}

#[test]
fn idle_mode_holds_joined_peers_and_reports_rss_per_connection() {
    let ports = Ports::new();
    let svc = start_signaling(&ports, "");
    let pid = svc.pid().to_string();
    let v = report(&run(
        &ports,
        &[
            "--idle",
            "--peers",
            "40",
            "--room-size",
            "4",
            "--duration",
            "1.5",
            "--server-pid",
            &pid,
        ],
    ));
    assert_eq!(v["mode"], "idle");
    assert_eq!(n(&v, "sent"), 0, "idle peers send nothing: {v}");
    assert!(
        v["rss_per_conn_kb"].as_f64().is_some(),
        "RSS per connection is reported: {v}"
    );
    assert!(n(&v, "server_rss_kb") > 0, "{v}");
    assert!(v["connect_ms_p99"].as_f64().is_some_and(|p| p > 0.0), "{v}");
}

#[test]
fn a_refused_join_fails_the_run_with_the_servers_reason() {
    let ports = Ports::new();
    // Token auth: the tool's wrong token is refused at the namespace connect.
    let _svc = start_signaling(
        &ports,
        "auth = \"token\"\ntokens = [\"loadgen-test-token-0123456789\"]",
    );
    let out = run(
        &ports,
        &[
            "--peers",
            "2",
            "--room-size",
            "2",
            "--duration",
            "1",
            "--token",
            "wrong-token",
        ],
    );
    assert!(!out.status.success(), "a refused connect must fail the run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connect_error") && err.contains("failed to connect/join"),
        "the error names the refusal: {err}"
    );
}

#[test]
fn a_server_that_is_not_there_is_a_clear_error() {
    let ports = Ports::new();
    // Nothing listens on ports.signaling.
    let out = run(
        &ports,
        &["--peers", "1", "--room-size", "1", "--duration", "1"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TCP connect"), "{err}");
}
