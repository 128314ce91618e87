//! A real WebRTC call end to end: two headless Chromium pages open the demo page served by
//! switchboard-signaling, fetch TURN credentials, signal through Socket.IO and connect with
//! `iceTransportPolicy: "relay"` through switchboard-relay. `getStats()` must show a relay
//! candidate pair with bytes flowing both ways.

use std::path::PathBuf;
use std::process::Command;

use switchboard_tests::{Ports, Service, require_tool, test_config};

fn js(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("js")
        .join(name)
}

fn artifacts() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

struct CallResult {
    ok: bool,
    json: serde_json::Value,
    stderr: String,
}

/// Two Chromium instances per call are heavy on a 2-core machine: calls run one at a time.
static ONE_CALL_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn place_call(ports: &Ports, extra: &[&str]) -> CallResult {
    let _turn = ONE_CALL_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let node = require_tool("node");
    let _ = require_tool("chromium");
    assert!(
        js("node_modules/playwright-core").is_dir(),
        "tests/js/node_modules is missing: run `npm ci` in tests/js (scripts/test.sh does)"
    );
    let url = format!("http://127.0.0.1:{}/", ports.signaling);
    let out = Command::new(node)
        .arg(js("call.mjs"))
        .args(["--url", &url])
        .args(extra)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    CallResult {
        ok: out.status.success() && json["ok"] == true,
        json,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn start_both(config: &str) -> (Service, Service) {
    let relay = Service::start("switchboard-relay", config);
    let signaling = Service::start("switchboard-signaling", config);
    (relay, signaling)
}

fn assert_relayed(r: &CallResult, proto: &str, relay: &Service, signaling: &Service) {
    assert!(
        r.ok,
        "call did not connect over TURN/{proto}: {}\n--- node stderr ---\n{}\n--- relay ---\n{}\n--- signaling ---\n{}",
        r.json,
        r.stderr,
        relay.logs(),
        signaling.logs()
    );
    let pages = r.json["pages"].as_array().expect("pages");
    assert_eq!(pages.len(), 2, "{}", r.json);
    for p in pages {
        assert_eq!(p["localCandidateType"], "relay", "{p}");
        assert_eq!(p["relayProtocol"], proto, "{p}");
        assert!(p["bytesReceived"].as_u64().unwrap_or(0) > 0, "{p}");
        assert!(p["bytesSent"].as_u64().unwrap_or(0) > 0, "{p}");
        assert!(p["dataMessagesReceived"].as_u64().unwrap_or(0) >= 3, "{p}");
    }
}

#[test]
fn two_browsers_connect_relay_only_over_turn_tcp() {
    let ports = Ports::new();
    let config = test_config(&ports, "").replace(
        "public_host = \"127.0.0.1\"",
        "public_host = \"127.0.0.1\"\nadvertise = [\"turn-tcp\"]",
    );
    let (relay, signaling) = start_both(&config);
    let r = place_call(&ports, &["--expect-relay-protocol", "tcp"]);
    assert_relayed(&r, "tcp", &relay, &signaling);
}

#[test]
fn two_browsers_connect_relay_only_over_turn_tls() {
    let ports = Ports::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let status = Command::new(require_tool("openssl"))
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "test certificate");
    let extra = format!(
        "listen_tls = [\"127.0.0.1:{}\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"",
        ports.relay_tls,
        cert.display(),
        key.display()
    );
    let config = test_config(&ports, &extra).replace(
        "public_host = \"127.0.0.1\"",
        "public_host = \"127.0.0.1\"\nadvertise = [\"turns\"]",
    );
    let (relay, signaling) = start_both(&config);
    let r = place_call(&ports, &["--expect-relay-protocol", "tls"]);
    assert_relayed(&r, "tls", &relay, &signaling);
}

/// The failure must be the missing relay path, not a page or signaling failure: both pages
/// joined and see each other, but no relayed connection came up.
fn assert_signaling_worked_but_no_relay(r: &CallResult) {
    let error = r.json["error"].as_str().unwrap_or_default();
    assert!(error.contains("no relayed connection"), "{}", r.json);
    let pages = r.json["pages"].as_array().expect("pages");
    assert_eq!(pages.len(), 2, "{}", r.json);
    for p in pages {
        assert_eq!(p[0]["localCandidateType"], serde_json::Value::Null, "{p}");
        assert!(
            p[0]["peerId"].is_string(),
            "the peers found each other: {p}"
        );
    }
}

#[test]
fn two_browsers_connect_relay_only_over_turn_udp_and_media_flows() {
    let ports = Ports::new();
    let config = test_config(&ports, "").replace(
        "public_host = \"127.0.0.1\"",
        "public_host = \"127.0.0.1\"\nadvertise = [\"turn-udp\"]",
    );
    let (relay, signaling) = start_both(&config);
    let shot = artifacts().join("demo-call-udp.png");
    let r = place_call(
        &ports,
        &[
            "--expect-relay-protocol",
            "udp",
            "--screenshot",
            &shot.to_string_lossy(),
        ],
    );
    assert_relayed(&r, "udp", &relay, &signaling);
    assert!(shot.is_file(), "screenshot written");
}

#[test]
fn a_call_with_credentials_the_relay_does_not_accept_never_connects() {
    // The signaling service signs with a secret the relay does not know: the relay answers
    // 401 to every Allocate, so no relay candidate exists and the relay-only call must fail.
    let ports = Ports::new();
    let relay_cfg = test_config(&ports, "");
    let signaling_cfg = relay_cfg.replace(
        switchboard_tests::TEST_SECRET,
        "a-different-secret-0123456789",
    );
    let _relay = Service::start("switchboard-relay", &relay_cfg);
    let _signaling = Service::start("switchboard-signaling", &signaling_cfg);
    let r = place_call(&ports, &["--timeout-ms", "15000"]);
    assert!(
        !r.ok,
        "call must not connect with bad credentials: {}",
        r.json
    );
    assert_signaling_worked_but_no_relay(&r);
}

#[test]
fn a_call_with_the_relay_down_never_connects() {
    let ports = Ports::new();
    let config = test_config(&ports, "");
    let _signaling = Service::start("switchboard-signaling", &config);
    let r = place_call(&ports, &["--timeout-ms", "15000"]);
    assert!(
        !r.ok,
        "relay-only call must not connect without a relay: {}",
        r.json
    );
    assert_signaling_worked_but_no_relay(&r);
}
