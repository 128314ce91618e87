//! Shared helpers for the end-to-end tests that run the real binaries: locating them,
//! picking free loopback ports, starting a service and waiting for its systemd-style
//! `READY=1`, and requiring external tools loudly.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a service may take to report READY=1.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The folder holding the workspace's binaries (next to this test executable's `deps/`).
#[must_use]
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    dir.to_path_buf()
}

/// Path of a workspace binary; panics with the command to run when it was not built.
#[must_use]
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Path of a system tool the tests need. Fails the test loudly when it is missing: tests
/// never pass by skipping.
#[must_use]
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .find(|p| p.is_file());
    path.unwrap_or_else(|| {
        panic!(
            "required tool `{name}` is not installed: run `bash scripts/test.sh`, which installs it"
        )
    })
}

/// The ports [`free_port`] hands out: below Linux's ephemeral range (32768–60999 by
/// default), so no client socket, browser ICE socket or `bind(:0)` elsewhere on the machine
/// can take one between the moment a test picks it and the moment the service binds it
/// (CI once lost a run to exactly that: a kernel-chosen port reused before the server bound it).
const TEST_PORTS: std::ops::Range<u32> = 20_000..32_000;

static NEXT_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
static HELD_PORTS: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());

/// A loopback port, free for both TCP and UDP, that no other test in this run will be given.
///
/// Within one test process a counter never hands a port out twice; across processes (nextest,
/// two suites at once) each port is reserved by an exclusive lock on a file under the temp
/// folder, held until this process exits.
#[must_use]
pub fn free_port() -> u16 {
    let span = TEST_PORTS.end - TEST_PORTS.start;
    let start = std::process::id().wrapping_mul(7919) % span;
    let dir = std::env::temp_dir().join("switchboard-test-ports");
    std::fs::create_dir_all(&dir).expect("port reservation folder");
    for _ in 0..span {
        let i = NEXT_PORT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = u16::try_from(TEST_PORTS.start + (start + i) % span).expect("port fits");
        let Ok(file) = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
        else {
            continue;
        };
        if file.try_lock().is_err() {
            continue;
        }
        let free = TcpListener::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port)).is_ok();
        if free {
            HELD_PORTS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(file);
            return port;
        }
    }
    panic!("no free loopback port in {TEST_PORTS:?}")
}

/// A running binary. Killed on drop; its stderr is kept for diagnostics.
pub struct Service {
    pub name: String,
    child: Option<Child>,
    dir: tempfile::TempDir,
    notify: UnixDatagram,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("name", &self.name).finish()
    }
}

impl Service {
    /// Writes `config` to a temporary file, starts `binary --config FILE` with a private
    /// `NOTIFY_SOCKET`, and waits for `READY=1`.
    #[must_use]
    pub fn start(binary: &str, config: &str) -> Self {
        Self::start_with(binary, config, &[], &[])
    }

    /// Like [`Service::start`], with extra files in the config folder and extra env vars.
    #[must_use]
    pub fn start_with(
        binary: &str,
        config: &str,
        files: &[(&str, &[u8])],
        env: &[(&str, &str)],
    ) -> Self {
        let mut svc = Self::spawn(binary, config, files, env);
        svc.wait_ready();
        svc
    }

    /// Starts without waiting for readiness.
    #[must_use]
    pub fn spawn(
        binary: &str,
        config: &str,
        files: &[(&str, &[u8])],
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg_path = dir.path().join("switchboard.toml");
        std::fs::write(&cfg_path, config).expect("write config");
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).expect("write file");
        }
        let sock_path = dir.path().join("notify.sock");
        let notify = UnixDatagram::bind(&sock_path).expect("bind notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let stderr = std::fs::File::create(dir.path().join("stderr.log")).expect("log file");
        let mut cmd = Command::new(bin(binary));
        cmd.arg("--config")
            .arg(&cfg_path)
            .current_dir(dir.path())
            .env("NOTIFY_SOCKET", &sock_path)
            .env_remove("SWITCHBOARD_CONFIG")
            .env_remove("SWITCHBOARD_TURN_SECRETS")
            .env(
                "RUST_LOG",
                std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn service");
        Self {
            name: binary.to_string(),
            child: Some(child),
            dir,
            notify,
        }
    }

    /// Waits for the next sd_notify datagram containing `needle` (e.g. `READY=1`).
    pub fn wait_notify(&mut self, needle: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            match self.notify.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]);
                    if msg.lines().any(|l| l == needle) {
                        return Ok(());
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e.to_string()),
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                return Err(format!(
                    "{} exited with {status} before {needle}",
                    self.name
                ));
            }
        }
        Err(format!(
            "{} did not send {needle} within {timeout:?}",
            self.name
        ))
    }

    fn wait_ready(&mut self) {
        if let Err(e) = self.wait_notify("READY=1", READY_TIMEOUT) {
            panic!("{e}\n--- {} stderr ---\n{}", self.name, self.logs());
        }
    }

    /// The process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Sends a signal by name ("TERM", "HUP") with `kill(1)`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{sig} failed");
    }

    /// Waits for the process to exit, killing it after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let child = self.child.as_mut().ok_or("already reaped")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                return Err(format!("did not exit within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the service wrote to stderr so far.
    #[must_use]
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("stderr.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The folder holding the config file (and any extra files).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Ports for one test's services, all on 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub signaling: u16,
    pub relay: u16,
    pub relay_tls: u16,
    pub metrics: u16,
    /// `signaling.metrics_listen` (`/metrics`, `/stats`).
    pub signaling_metrics: u16,
}

impl Ports {
    #[must_use]
    pub fn new() -> Self {
        Self {
            signaling: free_port(),
            relay: free_port(),
            relay_tls: free_port(),
            metrics: free_port(),
            signaling_metrics: free_port(),
        }
    }

    #[must_use]
    pub fn signaling_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.signaling))
    }
}

impl Default for Ports {
    fn default() -> Self {
        Self::new()
    }
}

/// [`test_config`] with `extra` added at the top of `[signaling]` (signaling-only keys).
#[must_use]
pub fn signaling_test_config(ports: &Ports, extra: &str) -> String {
    test_config(ports, "").replacen("[signaling]\n", &format!("[signaling]\n{extra}\n"), 1)
}

/// The TURN secret the test configurations use.
pub const TEST_SECRET: &str = "switchboard-test-secret-0123456789";

/// A configuration for both services on loopback, relaying between loopback peers (the
/// tests' own), with `extra` appended verbatim (extra keys go under `[relay]`, which is last).
#[must_use]
pub fn test_config(ports: &Ports, extra_relay: &str) -> String {
    format!(
        r#"log_level = "info"

[turn]
realm = "switchboard"
secrets = ["{TEST_SECRET}"]
credential_ttl = "1h"
public_host = "127.0.0.1"

[signaling]
listen = "127.0.0.1:{sig}"
metrics_listen = "127.0.0.1:{sig_metrics}"
cors_origins = ["http://127.0.0.1:{sig}", "http://localhost:{sig}"]

[relay]
listen_udp = ["127.0.0.1:{relay}"]
listen_tcp = ["127.0.0.1:{relay}"]
relay_ip = "127.0.0.1"
external_ip = "127.0.0.1"
port_range = [40000, 49999]
allowed_peers = ["127.0.0.0/8", "::1/128"]
metrics_listen = "127.0.0.1:{metrics}"
{extra_relay}
"#,
        sig = ports.signaling,
        sig_metrics = ports.signaling_metrics,
        relay = ports.relay,
        metrics = ports.metrics,
    )
}

impl Service {
    /// Kills the process with SIGKILL (no shutdown path runs: what a crash or an OOM kill
    /// looks like) and reaps it. Panics when it had already exited.
    pub fn kill9(&mut self) {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("{} was already reaped", self.name));
        let exited = child.try_wait().expect("query the child's status");
        assert!(
            exited.is_none(),
            "{} had already exited ({exited:?}) before kill -9\n--- stderr ---\n{}",
            self.name,
            self.logs()
        );
        // `Child::kill` is SIGKILL on Unix.
        child.kill().expect("SIGKILL the service");
        child.wait().expect("reap the killed service");
    }
}

/// How long `redis-server` may take to answer `PING`.
pub const REDIS_READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A private `redis-server` on a loopback port, with an append-only file fsynced on every
/// write in its own temporary folder: [`RedisServer::start_again`] brings it back with its
/// data, [`RedisServer::wipe_and_start_again`] without. Killed on drop.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    /// TLS only (`--tls-port`): the CA file clients verify the server with.
    tls_ca: Option<PathBuf>,
    /// `--requirepass`.
    password: Option<String>,
    /// Holds `data/` (the `--dir`, where the append-only files go) and `redis.log`.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl RedisServer {
    /// Starts `redis-server` on a [`free_port`] and waits (bounded) until it answers `PING`.
    /// Fails the test loudly when `redis-server` is not installed.
    #[must_use]
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("redis tempdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("redis data folder");
        let mut redis = Self {
            port: free_port(),
            child: None,
            tls_ca: None,
            password: None,
            dir,
        };
        redis.launch();
        redis
    }

    /// Starts `redis-server` with `--requirepass password`.
    #[must_use]
    pub fn start_with_password(password: &str) -> Self {
        let dir = tempfile::tempdir().expect("redis tempdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("redis data folder");
        let mut redis = Self {
            port: free_port(),
            child: None,
            tls_ca: None,
            password: Some(password.to_string()),
            dir,
        };
        redis.launch();
        redis
    }

    /// Starts `redis-server` speaking only TLS (`--port 0 --tls-port P`) with the given PEM
    /// certificate and key (which must name 127.0.0.1); `ca_pem` is what clients trust.
    /// Ready once `redis-cli --tls` gets `PONG`.
    #[must_use]
    pub fn start_tls(cert_pem: &str, key_pem: &str, ca_pem: &str) -> Self {
        let dir = tempfile::tempdir().expect("redis tempdir");
        std::fs::create_dir_all(dir.path().join("data")).expect("redis data folder");
        for (name, pem) in [
            ("cert.pem", cert_pem),
            ("key.pem", key_pem),
            ("ca.pem", ca_pem),
        ] {
            std::fs::write(dir.path().join(name), pem).expect("write TLS file");
        }
        let mut redis = Self {
            port: free_port(),
            child: None,
            tls_ca: Some(dir.path().join("ca.pem")),
            password: None,
            dir,
        };
        redis.launch();
        redis
    }

    /// `rediss://127.0.0.1:PORT` (TLS mode).
    #[must_use]
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    /// The CA file of a TLS server.
    #[must_use]
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls_ca.as_deref()
    }

    /// `redis://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the process runs (started and not yet stopped or killed).
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn launch(&mut self) {
        assert!(self.child.is_none(), "redis-server is already running");
        let redis = require_tool("redis-server");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("redis log file");
        let log_err = log.try_clone().expect("redis log file");
        let mut cmd = Command::new(redis);
        if self.tls_ca.is_some() {
            let d = self.dir.path();
            cmd.args(["--port", "0", "--tls-port"])
                .arg(self.port.to_string())
                .arg("--tls-cert-file")
                .arg(d.join("cert.pem"))
                .arg("--tls-key-file")
                .arg(d.join("key.pem"))
                .arg("--tls-ca-cert-file")
                .arg(d.join("ca.pem"))
                .args(["--tls-auth-clients", "no"]);
        } else {
            cmd.arg("--port").arg(self.port.to_string());
        }
        if let Some(pw) = &self.password {
            cmd.arg("--requirepass").arg(pw);
        }
        let child = cmd
            .args(["--bind", "127.0.0.1", "--dir"])
            .arg(self.data_dir())
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        self.wait_pong();
    }

    /// Waits until a fresh TCP connection gets `+PONG` for `PING` (not `-LOADING`).
    fn wait_pong(&mut self) {
        let deadline = Instant::now() + REDIS_READY_TIMEOUT;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                panic!(
                    "redis-server exited with {status} at start\n--- redis log ---\n{}",
                    self.logs()
                );
            }
            let answer = match &self.tls_ca {
                Some(ca) => ping_tls(self.port, ca),
                None => ping(self.port, self.password.as_deref()),
            };
            match answer {
                Ok(answer) if answer.starts_with("+PONG") => return,
                Ok(answer) => last = answer,
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "redis-server on port {} did not answer PING within {REDIS_READY_TIMEOUT:?} \
             (last: {last})\n--- redis log ---\n{}",
            self.port,
            self.logs()
        );
    }

    /// SIGTERM, then waits (bounded) for the exit. Redis flushes the append-only file first.
    pub fn stop(&mut self) {
        let mut child = self.child.take().expect("redis-server is not running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -TERM redis-server failed");
        let deadline = Instant::now() + REDIS_READY_TIMEOUT;
        loop {
            if child.try_wait().expect("redis-server status").is_some() {
                return;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "redis-server did not exit within {REDIS_READY_TIMEOUT:?} of SIGTERM\n\
                     --- redis log ---\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts again on the same port and folder: the data written before [`Self::stop`] or
    /// [`Self::kill`] is loaded back.
    pub fn start_again(&mut self) {
        self.launch();
    }

    /// Stops the server when it runs, deletes everything in its data folder, and starts it
    /// again on the same port: every key is gone.
    pub fn wipe_and_start_again(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        let data = self.data_dir();
        std::fs::remove_dir_all(&data).expect("wipe the redis data folder");
        std::fs::create_dir_all(&data).expect("recreate the redis data folder");
        self.launch();
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything redis-server logged so far (every run).
    #[must_use]
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One `PING` on a fresh connection; the first line of the answer.
/// `PING` over TLS with `redis-cli` (shipped with redis-server).
fn ping_tls(port: u16, ca: &Path) -> std::io::Result<String> {
    let out = Command::new(require_tool("redis-cli"))
        .args(["--tls", "--cacert"])
        .arg(ca)
        .args(["-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .arg("PING")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok(if text == "PONG" { "+PONG".into() } else { text })
}

fn ping(port: u16, password: Option<&str>) -> std::io::Result<String> {
    use std::io::Write;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut conn = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    conn.set_read_timeout(Some(Duration::from_millis(500)))?;
    if let Some(pw) = password {
        // Inline AUTH; its +OK comes first, then PING's answer.
        conn.write_all(format!("AUTH {pw}\r\n").as_bytes())?;
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf)?;
        let answer = String::from_utf8_lossy(&buf[..n]).trim_end().to_string();
        if !answer.starts_with("+OK") {
            return Ok(answer);
        }
    }
    conn.write_all(b"PING\r\n")?;
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while !got.contains(&b'\n') {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&got).trim_end().to_string())
}
