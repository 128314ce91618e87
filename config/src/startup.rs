//! Start-up shared by both binaries: command line, `--check-config`, config loading, logging.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{CommandFactory, FromArgMatches, Parser};
use tracing_subscriber::EnvFilter;

use crate::{Component, Config, LogFormat};

/// Exit code for an invalid configuration (SPEC section 1).
pub const EXIT_CONFIG: u8 = 2;

#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file [default: $SWITCHBOARD_CONFIG, then ./switchboard.toml, then
    /// built-in development defaults]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the configuration (FILE, else as --config), print a one-line summary and
    /// exit: 0 when valid, 2 with the file, key, line and cause when not
    #[arg(long, value_name = "FILE", num_args = 0..=1)]
    check_config: Option<Option<PathBuf>>,
    /// Probe the running service: GET /health on the configured address (signaling.listen
    /// or relay.metrics_listen; loopback when it is a wildcard) and exit 0 on 200 OK, 1
    /// otherwise. For container health checks
    #[arg(long, conflicts_with = "check_config")]
    health: bool,
}

/// What the binary should do after start-up.
#[derive(Debug)]
pub enum Startup {
    /// Run with this configuration; logging is initialised.
    Run(Box<Config>),
    /// Exit now with this code (check-config, bad config).
    Exit(ExitCode),
}

/// Parses the command line, loads and validates the configuration, initialises logging and
/// logs configuration warnings.
#[must_use]
pub fn startup(component: Component) -> Startup {
    let (name, about) = match component {
        Component::Signaling => (
            "switchboard-signaling",
            "Switchboard signaling: Socket.IO rooms, REST API and TURN credentials",
        ),
        Component::Relay => (
            "switchboard-relay",
            "Switchboard relay: STUN/TURN over UDP, TCP and TLS",
        ),
    };
    let cmd = Args::command().name(name).bin_name(name).about(about);
    let args = match Args::from_arg_matches(&cmd.get_matches()) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    if let Some(file) = args.check_config {
        let path = file.or(args.config);
        return match crate::load(path.as_deref(), component) {
            Ok(cfg) => {
                #[allow(clippy::print_stdout)] // --check-config answers on stdout.
                {
                    println!("{}", cfg.summary(component));
                }
                for w in cfg.warnings(component) {
                    eprintln!("warning: {w}");
                }
                Startup::Exit(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("error: invalid configuration: {e}");
                Startup::Exit(ExitCode::from(EXIT_CONFIG))
            }
        };
    }
    let cfg = match crate::load(args.config.as_deref(), component) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: invalid configuration: {e}");
            return Startup::Exit(ExitCode::from(EXIT_CONFIG));
        }
    };
    if args.health {
        let addr = probe_addr(match component {
            Component::Signaling => cfg.signaling.listen,
            Component::Relay => cfg.relay.metrics_listen,
        });
        return match probe_health(addr, HEALTH_TIMEOUT) {
            Ok(()) => {
                #[allow(clippy::print_stdout)] // --health answers on stdout.
                {
                    println!("healthy: http://{addr}/health answered 200");
                }
                Startup::Exit(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("unhealthy: http://{addr}/health: {e}");
                Startup::Exit(ExitCode::FAILURE)
            }
        };
    }
    if let Err(e) = init_logging(&cfg) {
        eprintln!("error: invalid configuration: key `log_level`: {e}");
        return Startup::Exit(ExitCode::from(EXIT_CONFIG));
    }
    for w in cfg.warnings(component) {
        tracing::warn!("{w}");
    }
    tracing::info!(summary = %cfg.summary(component), "Configuration loaded");
    Startup::Run(Box::new(cfg))
}

/// How long `--health` waits for connect and answer together.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// The address to probe for a listen address: a wildcard becomes the loopback of its family.
#[must_use]
pub fn probe_addr(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// `GET /health` over plain HTTP/1.0; `Ok` when the status line says 200. A dozen lines of
/// std instead of an HTTP client dependency in both binaries.
pub fn probe_health(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream
        .set_read_timeout(Some(left))
        .and_then(|()| stream.set_write_timeout(Some(left)))
        .map_err(|e| e.to_string())?;
    write!(stream, "GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(64);
    stream
        .take(256)
        .read_to_end(&mut head)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&head);
    let status = text.lines().next().unwrap_or_default();
    match status.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        Some(code) => Err(format!("answered {code}")),
        None => Err("no HTTP answer".into()),
    }
}

/// Logs to stderr, human or JSON, coloured only when stderr is a terminal; `RUST_LOG` wins
/// over `log_level`.
pub fn init_logging(cfg: &Config) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v).map_err(|e| format!("RUST_LOG: {e}"))?,
        _ => EnvFilter::try_new(cfg.log_level.as_deref().unwrap_or("info"))
            .map_err(|e| e.to_string())?,
    };
    // Colour codes only on a terminal: in journald, files and pipes they are noise.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match cfg.log_format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A second init (in tests) is harmless.
    let _ = result;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::time::Duration;

    use super::{probe_addr, probe_health};

    /// A one-shot HTTP server answering `reply` once it has read the whole request (up to
    /// the blank line ending its head). Answering and closing earlier, with request bytes
    /// still unread, makes the kernel reset the connection, and the client may then see
    /// the reset instead of the answer: the probe writes its request in several pieces.
    fn serve_once(reply: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut request = Vec::new();
                let mut buf = [0u8; 512];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = s.write_all(reply);
            }
        });
        addr
    }

    #[test]
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        let p = |s: &str| probe_addr(s.parse().expect("addr")).to_string();
        assert_eq!(p("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(p("[::]:9641"), "[::1]:9641");
        assert_eq!(p("10.1.2.3:8080"), "10.1.2.3:8080");
        assert_eq!(p("127.0.0.1:1"), "127.0.0.1:1");
    }

    #[test]
    fn health_probe_is_ok_only_on_200() {
        let t = Duration::from_secs(5);
        let ok = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n");
        assert_eq!(probe_health(ok, t), Ok(()));
        let unavailable = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        assert_eq!(probe_health(unavailable, t), Err("answered 503".into()));
        let garbage = serve_once(b"");
        assert_eq!(probe_health(garbage, t), Err("no HTTP answer".into()));
    }

    #[test]
    fn health_probe_fails_when_nothing_listens() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        assert!(probe_health(addr, Duration::from_secs(5)).is_err());
    }
}
