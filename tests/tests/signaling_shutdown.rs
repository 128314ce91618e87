//! End-to-end test of graceful shutdown: SIGTERM → STOPPING=1, clients disconnected, exit 0.

#[path = "common/signaling.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_tests::{Ports, require_tool};

#[test]
fn sigterm_disconnects_clients_and_exits_zero_within_the_bound() {
    let ports = Ports::new();
    let mut svc = common::start(&ports, "");
    let mut node = Command::new(require_tool("node"))
        .arg(common::driver_path())
        .arg("shutdown")
        .arg(common::base(&ports))
        .arg("{}")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let stdout = node.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first: Value =
        serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("json");
    assert_eq!(first, json!({"connected": true}), "{}", svc.logs());

    svc.signal("TERM");
    svc.wait_notify("STOPPING=1", Duration::from_secs(10))
        .expect("STOPPING=1 after SIGTERM");
    let status = svc
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}\n{}", svc.logs()));
    assert!(status.success(), "exit status {status}\n{}", svc.logs());

    let last: Value =
        serde_json::from_str(&lines.next().expect("a line").expect("read")).expect("json");
    assert!(
        last["disconnectReason"].is_string(),
        "the client saw a disconnect: {last}"
    );
    let _ = node.wait();
}
