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

// ---- Multi-instance (SPEC section 4, "Multi-instance") ----------------------------------

/// The `[signaling]` keys that put an instance in a cluster: `redis_url` and `redis_prefix`,
/// then `extra`.
pub fn cluster_extra(redis_url: &str, prefix: &str, extra: &str) -> String {
    format!("redis_url = \"{redis_url}\"\nredis_prefix = \"{prefix}\"\n{extra}")
}

/// A Redis key prefix no other test of this run (or a concurrent run) uses: `t<name>-<pid>-<n>`.
pub fn unique_prefix(name: &str) -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name: String = name
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    format!("t{name}-{}-{n}", std::process::id())
}

/// The driver's URL argument for several instances: their base URLs, comma-separated.
pub fn bases(ports: &[&Ports]) -> String {
    ports.iter().map(|p| base(p)).collect::<Vec<_>>().join(",")
}

/// Every service's stderr, for a failure message.
pub fn all_logs(svcs: &[&Service]) -> String {
    svcs.iter()
        .enumerate()
        .map(|(i, s)| format!("--- instance {i} ({}) log ---\n{}", s.name, s.logs()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs a driver scenario against `urls` (see [`bases`]) and returns its JSON result; panics
/// with every service's log on a driver error.
pub fn drive_at(svcs: &[&Service], urls: &str, scenario: &str, args: &Value) -> Value {
    let node = require_tool("node");
    let out = Command::new(node)
        .arg(driver_path())
        .arg(scenario)
        .arg(urls)
        .arg(args.to_string())
        .current_dir(driver_path().parent().expect("js dir"))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "driver printed no JSON ({e}): stdout={stdout} stderr={}\n{}",
            String::from_utf8_lossy(&out.stderr),
            all_logs(svcs)
        )
    });
    if let Some(err) = v.get("error").filter(|e| e.is_string()) {
        panic!("driver failed: {err}\n{}", all_logs(svcs));
    }
    v
}

/// A driver scenario that runs in stages: its stdout lines are read as they come (each one
/// JSON object; `{"stage": ...}` for the intermediate ones), and commands are written to its
/// stdin. Killed on drop.
pub struct Staged {
    child: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
    lines: std::sync::mpsc::Receiver<String>,
    stderr_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Staged {
    /// Starts `scenario` of another driver script (`tests/js/NAME`) against `urls`.
    pub fn spawn_script(script: &str, urls: &str, scenario: &str, args: &Value) -> Self {
        Self::spawn_path(&js_path(script), urls, scenario, args)
    }

    fn spawn_path(path: &std::path::Path, urls: &str, scenario: &str, args: &Value) -> Self {
        use std::io::BufRead;
        let node = require_tool("node");
        let dir = tempfile::tempdir().expect("driver tempdir");
        let stderr_path = dir.path().join("driver-stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("driver stderr file");
        let mut child = Command::new(node)
            .arg(path)
            .arg(scenario)
            .arg(urls)
            .arg(args.to_string())
            .current_dir(path.parent().expect("js dir"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("run node");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("driver stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            stdin,
            lines,
            stderr_path,
            _dir: dir,
        }
    }

    /// Starts `scenario` of the Socket.IO driver against `urls`.
    pub fn spawn(urls: &str, scenario: &str, args: &Value) -> Self {
        Self::spawn_path(&driver_path(), urls, scenario, args)
    }

    /// The next JSON line within `timeout`; `Err` on a timeout, the end of the output, a line
    /// that is not JSON, or a driver `{"error": ...}`.
    pub fn next(&mut self, timeout: Duration) -> Result<Value, String> {
        let line = self.lines.recv_timeout(timeout).map_err(|e| match e {
            std::sync::mpsc::RecvTimeoutError::Timeout => {
                format!("the driver printed nothing within {timeout:?}")
            }
            std::sync::mpsc::RecvTimeoutError::Disconnected => {
                "the driver ended its output".to_string()
            }
        })?;
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| format!("driver line is not JSON ({e}): {line}"))?;
        if let Some(err) = v.get("error").filter(|e| e.is_string()) {
            return Err(format!("driver failed: {err}"));
        }
        Ok(v)
    }

    /// The next line, which must be `{"stage": stage, ...}`; panics (with `logs`) otherwise.
    pub fn expect_stage(&mut self, stage: &str, timeout: Duration, logs: &str) -> Value {
        match self.next(timeout) {
            Ok(v) if v["stage"] == stage => v,
            Ok(v) => panic!(
                "expected stage {stage}, got {v}\n--- driver stderr ---\n{}\n{logs}",
                self.stderr()
            ),
            Err(e) => panic!(
                "waiting for stage {stage}: {e}\n--- driver stderr ---\n{}\n{logs}",
                self.stderr()
            ),
        }
    }

    /// Writes one command line to the driver's stdin.
    pub fn command(&mut self, cmd: &str) {
        use std::io::Write;
        let stdin = self.stdin.as_mut().expect("driver stdin");
        writeln!(stdin, "{cmd}").expect("write a command to the driver");
        stdin.flush().expect("flush the driver's stdin");
    }

    /// The final result (the next line without `stage`); panics (with `logs`) on a driver
    /// error or a timeout.
    pub fn finish(&mut self, timeout: Duration, logs: &str) -> Value {
        match self.next(timeout) {
            Ok(v) if v.get("stage").is_none() => v,
            Ok(v) => panic!(
                "expected the final result, got stage {v}\n--- driver stderr ---\n{}\n{logs}",
                self.stderr()
            ),
            Err(e) => panic!(
                "waiting for the final result: {e}\n--- driver stderr ---\n{}\n{logs}",
                self.stderr()
            ),
        }
    }

    /// What the driver wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of `GET url`, or `None` when nothing answered (refused, reset, timed out).
pub fn try_status(url: &str) -> Option<u16> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    agent.get(url).call().ok().map(|r| r.status().as_u16())
}

/// Polls `GET url` until it answers `want`, within `deadline`: `Ok(how long it took)`, or
/// `Err(the last status seen)`.
pub fn poll_status(url: &str, want: u16, deadline: Duration) -> Result<Duration, Option<u16>> {
    let start = std::time::Instant::now();
    let mut last = None;
    while start.elapsed() < deadline {
        last = try_status(url);
        if last == Some(want) {
            return Ok(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(last)
}

/// A driver script in `tests/js/`.
pub fn js_path(script: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("js")
        .join(script)
}

/// Like [`drive_at`], with another driver script (`tests/js/NAME`).
pub fn drive_script_at(
    script: &str,
    svcs: &[&Service],
    urls: &str,
    scenario: &str,
    args: &Value,
) -> Value {
    let node = require_tool("node");
    let path = js_path(script);
    let out = Command::new(node)
        .arg(&path)
        .arg(scenario)
        .arg(urls)
        .arg(args.to_string())
        .current_dir(path.parent().expect("js dir"))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): stdout={stdout} stderr={}\n{}",
            String::from_utf8_lossy(&out.stderr),
            all_logs(svcs)
        )
    });
    if let Some(err) = v.get("error").filter(|e| e.is_string()) {
        panic!(
            "{script} {scenario} failed: {err}\n--- driver stderr ---\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            all_logs(svcs)
        );
    }
    v
}
