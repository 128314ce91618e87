//! Helpers for the signaling end-to-end tests: a config with extra `[signaling]` keys, the
//! Node socket.io-client driver (`tests/js/signaling-driver.mjs`), and a small HTTP client.

#![allow(dead_code)] // Each test file uses a different subset.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use switchboard_tests::{Ports, Service, require_tool, signaling_test_config};

/// The test configuration with `extra` added at the top of `[signaling]`.
pub fn config(ports: &Ports, extra: &str) -> String {
    signaling_test_config(ports, extra)
}

/// Starts the real binary and waits for READY=1.
pub fn start(ports: &Ports, extra: &str) -> Service {
    Service::start("switchboard-signaling", &config(ports, extra))
}

/// Base URL of the signaling service.
pub fn base(ports: &Ports) -> String {
    format!("http://127.0.0.1:{}", ports.signaling)
}

/// Base URL of the signaling metrics listener (`/metrics`, `/stats`).
pub fn metrics_base(ports: &Ports) -> String {
    format!("http://127.0.0.1:{}", ports.signaling_metrics)
}

pub fn driver_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js/signaling-driver.mjs")
}

/// Runs a driver scenario and returns its JSON result; panics (with the service log) on a
/// driver error.
pub fn drive(svc: &Service, ports: &Ports, scenario: &str, args: &Value) -> Value {
    let node = require_tool("node");
    let out = Command::new(node)
        .arg(driver_path())
        .arg(scenario)
        .arg(base(ports))
        .arg(args.to_string())
        .current_dir(driver_path().parent().expect("js dir"))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "driver printed no JSON ({e}): stdout={stdout} stderr={}\n--- service log ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            svc.logs()
        )
    });
    if let Some(err) = v.get("error").filter(|e| e.is_string()) {
        panic!("driver failed: {err}\n--- service log ---\n{}", svc.logs());
    }
    v
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP request; `body` is sent as JSON when given.
pub fn http(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into();
    let res = match method {
        "GET" | "DELETE" | "OPTIONS" => {
            let mut req = match method {
                "GET" => agent.get(url),
                "DELETE" => agent.delete(url),
                _ => agent.options(url),
            };
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.call()
        }
        _ => {
            let mut req = agent.post(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            match body {
                Some(b) => req.send_json(b),
                None => req.send_empty(),
            }
        }
    };
    let mut res = res.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = res.status().as_u16();
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    let text = res.body_mut().read_to_string().unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        headers,
        body,
    }
}
