//! What an operator reads at start-up when stderr is not a terminal (journald, `docker
//! logs`, a pipe): plain text with no ANSI colour codes, and a "Relay listening" line that
//! names the UDP, TCP and TLS listeners under their own fields.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use switchboard_tests::{Ports, bin, test_config};

/// Start-up takes well under this; only a hung binary reaches it.
const WAIT: Duration = Duration::from_secs(30);

/// A binary started with `--config` in a temporary folder and stderr on a pipe, read line
/// by line on a thread. Killed on drop.
struct Piped {
    child: Child,
    lines: mpsc::Receiver<String>,
    _dir: tempfile::TempDir,
}

impl Piped {
    fn start(binary: &str, config: &str, files: &[(&str, &[u8])]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = dir.path().join("switchboard.toml");
        std::fs::write(&cfg, config).expect("write config");
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).expect("write file");
        }
        let mut child = Command::new(bin(binary))
            .arg("--config")
            .arg(&cfg)
            .current_dir(dir.path())
            .env_remove("SWITCHBOARD_CONFIG")
            .env_remove("SWITCHBOARD_TURN_SECRETS")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("NO_COLOR")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            _dir: dir,
        }
    }

    /// Every line up to and including the first containing `needle`; panics with what was
    /// read if the binary exits or stays silent first.
    fn read_until(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            match self.lines.recv_timeout(WAIT) {
                Ok(line) => {
                    let done = line.contains(needle);
                    seen.push(line);
                    if done {
                        return seen;
                    }
                }
                Err(e) => panic!("no line containing {needle:?} ({e}); stderr so far:\n{seen:#?}"),
            }
        }
    }
}

impl Drop for Piped {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_no_ansi(lines: &[String]) {
    for line in lines {
        assert!(
            !line.contains("\x1b["),
            "a colour code in piped stderr: {line:?}"
        );
    }
}

/// The value of `field=` on a log line (up to the next space).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(&prefix))
}

#[test]
fn the_relay_logs_each_transport_under_its_own_field_without_colour_codes_on_a_pipe() {
    let ports = Ports::new();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let (cert, key) = (ck.cert.pem(), ck.key_pair.serialize_pem());
    let tls = format!(
        "listen_tls = [\"127.0.0.1:{}\"]\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"",
        ports.relay_tls
    );
    let relay = Piped::start(
        "switchboard-relay",
        &test_config(&ports, &tls),
        &[("cert.pem", cert.as_bytes()), ("key.pem", key.as_bytes())],
    );
    let lines = relay.read_until("Relay listening");
    assert_no_ansi(&lines);
    let line = lines.last().expect("the listening line");
    let stream = format!("[127.0.0.1:{}]", ports.relay);
    let tls = format!("[127.0.0.1:{}]", ports.relay_tls);
    assert_eq!(field(line, "udp"), Some(stream.as_str()), "{line}");
    assert_eq!(field(line, "tcp"), Some(stream.as_str()), "{line}");
    assert_eq!(field(line, "tls"), Some(tls.as_str()), "{line}");
}

#[test]
fn signaling_logs_without_colour_codes_on_a_pipe() {
    let ports = Ports::new();
    let signaling = Piped::start("switchboard-signaling", &test_config(&ports, ""), &[]);
    let lines = signaling.read_until("Listening");
    assert_no_ansi(&lines);
}
