//! The load tool against the real relay binary on loopback (allowed_peers loopback), briefly
//! and at a low rate: every leg relays every packet. Pacing refusal is switched off here
//! (`--max-late-fraction 1 --min-achieved 0`): these tests check relaying and accounting,
//! never how fast the machine is. Needs `cargo build --workspace --bins` first, like the
//! other end-to-end tests.

use std::process::{Command, Output};

use serde_json::Value;
use switchboard_tests::{Ports, Service, TEST_SECRET, test_config};

const TOOL: &str = env!("CARGO_BIN_EXE_switchboard-turnload");

/// The relay on UDP+TCP `ports.relay` and TLS `ports.relay_tls` with a fresh certificate.
fn start_relay(ports: &Ports) -> Service {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let extra = format!(
        "listen_tls = [\"127.0.0.1:{}\"]\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n\
         max_allocations_per_user = 100\n",
        ports.relay_tls
    );
    Service::start_with(
        "switchboard-relay",
        &test_config(ports, &extra),
        &[
            ("cert.pem", ck.cert.pem().as_bytes()),
            ("key.pem", ck.key_pair.serialize_pem().as_bytes()),
        ],
        &[],
    )
}

/// Flags that keep a run short, slow and judged on relaying only.
const GENTLE: [&str; 12] = [
    "-n",
    "4",
    "--rate",
    "200",
    "--duration",
    "1",
    "--warmup",
    "0.2",
    "--max-late-fraction",
    "1",
    "--min-achieved",
    "0",
];

fn run(args: &[&str]) -> Output {
    Command::new(TOOL)
        .args(args)
        .args(GENTLE)
        .arg("--json")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run switchboard-turnload")
}

fn report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "turnload failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(line.trim()).expect("one JSON line on stdout")
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn assert_relayed_everything(v: &Value) {
    assert!(n(v, "sent") > 0, "nothing was sent: {v}");
    assert_eq!(
        n(v, "received"),
        n(v, "sent"),
        "every packet comes back: {v}"
    );
    assert_eq!(n(v, "lost"), 0, "{v}");
    assert_eq!(n(v, "duplicates"), 0, "{v}");
    assert_eq!(n(v, "foreign"), 0, "{v}");
    assert_eq!(n(v, "relayed_packets"), 2 * n(v, "received"), "{v}");
}

#[test]
fn udp_allocations_in_pairs_relay_every_packet_client_to_client() {
    let ports = Ports::new();
    let relay = start_relay(&ports);
    let server = format!("127.0.0.1:{}", ports.relay);
    let pid = relay.pid().to_string();
    let v = report(&run(&[
        "load",
        "--server",
        &server,
        "--secret",
        TEST_SECRET,
        "--server-pid",
        &pid,
    ]));
    assert_relayed_everything(&v);
    assert_eq!(v["mode"], "pair");
    assert!(v["server_cpu_us"].is_u64(), "server CPU is read: {v}");
    assert!(n(&v, "server_rss_kb") > 0, "{v}");
}

#[test]
fn udp_allocations_with_echo_peers_relay_every_packet_and_keep_refreshing() {
    let ports = Ports::new();
    let _relay = start_relay(&ports);
    let server = format!("127.0.0.1:{}", ports.relay);
    let v = report(&run(&[
        "load",
        "--server",
        &server,
        "--secret",
        TEST_SECRET,
        "--mode",
        "echo",
        "--refresh-every",
        "0.2",
    ]));
    assert_relayed_everything(&v);
    assert!(n(&v, "refreshes") > 0, "Refresh ran during the load: {v}");
    assert_eq!(n(&v, "refresh_failures"), 0, "{v}");
}

#[test]
fn tcp_legs_relay_every_packet_with_rfc8656_stream_framing() {
    let ports = Ports::new();
    let _relay = start_relay(&ports);
    let server = format!("127.0.0.1:{}", ports.relay);
    let v = report(&run(&[
        "load",
        "--server",
        &server,
        "--secret",
        TEST_SECRET,
        "--transport",
        "tcp",
        "--mode",
        "mixed",
    ]));
    assert_relayed_everything(&v);
    assert_eq!(v["transport"], "tcp");
}

#[test]
fn tls_legs_relay_every_packet() {
    let ports = Ports::new();
    let _relay = start_relay(&ports);
    let server = format!("127.0.0.1:{}", ports.relay_tls);
    let v = report(&run(&[
        "load",
        "--server",
        &server,
        "--secret",
        TEST_SECRET,
        "--transport",
        "tls",
        "--insecure",
    ]));
    assert_relayed_everything(&v);
    assert_eq!(v["transport"], "tls");
}

#[test]
fn a_wrong_secret_fails_the_run_with_the_servers_401() {
    let ports = Ports::new();
    let _relay = start_relay(&ports);
    let server = format!("127.0.0.1:{}", ports.relay);
    let out = run(&["load", "--server", &server, "--secret", "not-the-secret"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Allocate refused: error 401"), "{err}");
    assert!(out.stdout.is_empty(), "no report on failure");
}

#[test]
fn calibrate_against_the_plain_echo_loses_nothing() {
    let v = report(&run(&["calibrate"]));
    assert_eq!(v["kind"], "calibrate");
    assert_eq!(n(&v, "received"), n(&v, "sent"), "{v}");
    assert_eq!(n(&v, "lost"), 0, "{v}");
}

#[test]
fn a_rate_no_sender_can_reach_is_refused_not_reported() {
    // Five million packets/s from one thread is beyond any machine's send syscalls; the
    // tool must say so (exit 3, a "refused" line) instead of printing figures.
    let out = Command::new(TOOL)
        .args([
            "calibrate",
            "-n",
            "1",
            "--rate",
            "5000000",
            "--duration",
            "0.05",
            "--warmup",
            "0",
            "--json",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run switchboard-turnload");
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(line.trim()).expect("a JSON line");
    assert!(v["refused"].is_string(), "{v}");
    assert!(v.get("loss_pct").is_none(), "no figures in a refusal: {v}");
}
