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
    let url = format!("http://127.0.0.1:{}/", ports.signaling);
    place_call_at(&url, extra)
}

fn place_call_at(url: &str, extra: &[&str]) -> CallResult {
    let _turn = ONE_CALL_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let node = require_tool("node");
    let _ = require_tool("chromium");
    assert!(
        js("node_modules/playwright-core").is_dir(),
        "tests/js/node_modules is missing: run `npm ci` in tests/js (scripts/test.sh does)"
    );
    let out = Command::new(node)
        .arg(js("call.mjs"))
        .args(["--url", url])
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
    assert_relayed_with_logs(r, &[proto], &|| {
        format!(
            "--- relay ---\n{}\n--- signaling ---\n{}",
            relay.logs(),
            signaling.logs()
        )
    });
}

/// The call connected through the relay with one of `protos` as the client ↔ relay transport.
fn assert_relayed_with_logs(r: &CallResult, protos: &[&str], logs: &dyn Fn() -> String) {
    assert!(
        r.ok,
        "call did not connect over TURN/{protos:?}: {}\n--- node stderr ---\n{}\n{}",
        r.json,
        r.stderr,
        logs()
    );
    let pages = r.json["pages"].as_array().expect("pages");
    assert_eq!(pages.len(), 2, "{}", r.json);
    for p in pages {
        assert_eq!(p["localCandidateType"], "relay", "{p}");
        assert!(
            protos.iter().any(|proto| p["relayProtocol"] == *proto),
            "relay protocol one of {protos:?}: {p}"
        );
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
fn assert_signaling_worked_but_no_relay(r: &CallResult, signaling: &Service) {
    let error = r.json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("no relayed connection"),
        "{}\n--- node stderr ---\n{}\n--- signaling ---\n{}",
        r.json,
        r.stderr,
        signaling.logs()
    );
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
fn a_call_that_outlives_its_credentials_gets_fresh_ones_and_an_ice_restart_reconnects_over_the_relay()
 {
    // `ice-servers` (SPEC section 4) with credential_ttl = 10 s: the demo page applies each
    // refresh to its peer connection (`setConfiguration`); once the credentials the call
    // started with have expired, an ICE restart makes new relay allocations, which only the
    // refreshed credentials can authenticate.
    let ports = Ports::new();
    let config = test_config(&ports, "")
        .replace("credential_ttl = \"1h\"", "credential_ttl = \"10s\"")
        .replace(
            "public_host = \"127.0.0.1\"",
            "public_host = \"127.0.0.1\"\nadvertise = [\"turn-udp\"]",
        );
    assert!(config.contains("credential_ttl = \"10s\""), "{config}");
    let (relay, signaling) = start_both(&config);
    let r = place_call(
        &ports,
        &[
            "--expect-relay-protocol",
            "udp",
            "--ice-refresh",
            "1",
            "--timeout-ms",
            "60000",
        ],
    );
    assert_relayed(&r, "udp", &relay, &signaling);
    let ice = &r.json["iceRefresh"];
    for i in 0..2 {
        let initial = ice["initial"][i].as_str().unwrap_or_default();
        let refreshed = ice["refreshed"][i].as_str().unwrap_or_default();
        assert!(!initial.is_empty() && !refreshed.is_empty(), "{ice}");
        assert_ne!(initial, refreshed, "{ice}");
        let expiry = |u: &str| u.split(':').next().and_then(|e| e.parse::<u64>().ok());
        assert!(expiry(refreshed) > expiry(initial), "{ice}");
        assert!(ice["refreshes"][i].as_u64().unwrap_or(0) >= 1, "{ice}");
        assert_ne!(
            ice["before"][i], ice["after"][i],
            "a new relay candidate: {ice}"
        );
    }
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
    let signaling = Service::start("switchboard-signaling", &signaling_cfg);
    let r = place_call(&ports, &["--timeout-ms", "15000"]);
    assert!(
        !r.ok,
        "call must not connect with bad credentials: {}",
        r.json
    );
    assert_signaling_worked_but_no_relay(&r, &signaling);
}

#[test]
fn a_call_with_the_relay_down_never_connects() {
    let ports = Ports::new();
    let config = test_config(&ports, "");
    let signaling = Service::start("switchboard-signaling", &config);
    let r = place_call(&ports, &["--timeout-ms", "15000"]);
    assert!(
        !r.ok,
        "relay-only call must not connect without a relay: {}",
        r.json
    );
    assert_signaling_worked_but_no_relay(&r, &signaling);
}

/// The README's run command, as a new user types it (`bash scripts/run-local.sh`, no file, so
/// the built-in development defaults on their fixed loopback ports): it prints the demo URL,
/// two pages opened at that URL connect a relay-only call, and Ctrl-C stops both services.
#[test]
fn the_readme_run_command_serves_a_demo_that_connects_a_call_and_stops_on_ctrl_c() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    use std::sync::{Arc, Mutex, mpsc};
    use std::time::Duration;

    // Checked before the services start: a panic later would leave run-local.sh's services
    // holding the development ports for every later run.
    let _ = require_tool("curl");
    let _ = require_tool("chromium");
    let _ = require_tool("node");
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf();
    // The script changes to the repository root, which holds no switchboard.toml in a clean
    // clone, so the services run on the built-in development defaults.
    let mut script = Command::new("bash")
        .arg(repo.join("scripts/run-local.sh"))
        .env("SWITCHBOARD_BIN_DIR", switchboard_tests::bin_dir())
        .env_remove("SWITCHBOARD_CONFIG")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("run scripts/run-local.sh");
    let pgid = script.id();
    let stderr = script.stderr.take().expect("stderr pipe");
    let log = Arc::new(Mutex::new(String::new()));
    let (url_tx, url_rx) = mpsc::channel();
    let reader = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Demo: open ").nth(1) {
                    let url = rest.split_whitespace().next().unwrap_or_default();
                    let _ = url_tx.send(url.to_string());
                }
                let mut l = log
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                l.push_str(&line);
                l.push('\n');
            }
        })
    };
    let logs = || {
        log.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    };
    let stop = |sig: &str| {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg("--")
            .arg(format!("-{pgid}"))
            .status();
    };

    let Ok(url) = url_rx.recv_timeout(Duration::from_secs(60)) else {
        stop("KILL");
        let _ = script.wait();
        panic!("run-local.sh printed no demo URL within 60 s:\n{}", logs());
    };
    assert_eq!(url, "http://127.0.0.1:8080/", "{}", logs());
    // The development defaults advertise TURN over UDP and over TCP on 3478: Chromium gathers
    // a relay candidate over each and may nominate either (on a loaded machine the TCP pair's
    // checks can finish first), so either counts; the per-transport tests pin each one.
    let r = place_call_at(&url, &[]);

    // Ctrl-C in a terminal signals the whole foreground process group.
    stop("INT");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let exited = loop {
        if let Ok(Some(_)) = script.try_wait() {
            break true;
        }
        if std::time::Instant::now() >= deadline {
            stop("KILL");
            let _ = script.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = reader.join();
    assert_relayed_with_logs(&r, &["udp", "tcp"], &logs);
    assert!(exited, "run-local.sh did not stop on Ctrl-C:\n{}", logs());
    let all = logs();
    assert!(
        all.contains("DEVELOPMENT defaults"),
        "the development defaults are announced loudly:\n{all}"
    );
    // Both services are gone: their fixed ports are free again.
    assert!(
        std::net::TcpListener::bind("127.0.0.1:8080").is_ok(),
        "signaling still holds 8080:\n{all}"
    );
    assert!(
        std::net::UdpSocket::bind("127.0.0.1:3478").is_ok(),
        "relay still holds 3478/udp:\n{all}"
    );
}
