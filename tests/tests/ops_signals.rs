//! What systemd and operators rely on: READY=1 only once listening, STOPPING=1 and exit 0
//! on SIGTERM within a bound, clients told the server is going away.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use switchboard_tests::{Ports, Service, require_tool, test_config};

/// Shutdown must finish well inside systemd's TimeoutStopSec (20 s in the units).
const STOP_BOUND: Duration = Duration::from_secs(15);

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect on first try");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

fn stun_binding(port: u16) -> Vec<u8> {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // RFC 8489 section 5: Binding request, no attributes, magic cookie, transaction id.
    let mut req = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42];
    req.extend_from_slice(b"switchboard!");
    sock.send_to(&req, ("127.0.0.1", port)).expect("send");
    let mut buf = [0u8; 1500];
    let (n, _) = sock
        .recv_from(&mut buf)
        .expect("binding response on the first try");
    buf[..n].to_vec()
}

#[test]
fn signaling_serves_http_as_soon_as_it_reports_ready() {
    let ports = Ports::new();
    let svc = Service::start("switchboard-signaling", &test_config(&ports, ""));
    let resp = http_get(ports.signaling, "/health");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}\n{}", svc.logs());
}

#[test]
fn relay_answers_stun_as_soon_as_it_reports_ready() {
    let ports = Ports::new();
    let svc = Service::start("switchboard-relay", &test_config(&ports, ""));
    let resp = stun_binding(ports.relay);
    // Binding success response (0x0101) echoing our transaction id.
    assert_eq!(&resp[..2], &[0x01, 0x01], "{resp:?}\n{}", svc.logs());
    assert_eq!(&resp[8..20], b"switchboard!");
    let health = http_get(ports.metrics, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}

#[test]
fn sigterm_stops_signaling_with_exit_0_and_clients_see_a_server_disconnect() {
    let node = require_tool("node");
    let ports = Ports::new();
    let mut svc = Service::start("switchboard-signaling", &test_config(&ports, ""));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("js/wait-disconnect.mjs");
    let mut client = Command::new(node)
        .arg(script)
        .arg(format!("http://127.0.0.1:{}", ports.signaling))
        .stdout(Stdio::piped())
        .spawn()
        .expect("node");
    let mut lines = BufReader::new(client.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    assert!(
        first.contains("\"connect\""),
        "client did not connect: {first}"
    );

    svc.signal("TERM");
    svc.wait_notify("STOPPING=1", STOP_BOUND)
        .expect("STOPPING=1 sent");
    let status = svc.wait_exit(STOP_BOUND).expect("exits within the bound");
    assert_eq!(status.code(), Some(0), "{}", svc.logs());

    let second = lines.next().and_then(Result::ok).unwrap_or_default();
    // "io server disconnect": the server closed the session on purpose (io.close()), as
    // opposed to "transport close" from a dropped TCP connection.
    assert!(
        second.contains("io server disconnect"),
        "client saw: {second}"
    );
    let _ = client.wait();
}

#[test]
fn sigterm_stops_the_relay_with_exit_0() {
    let ports = Ports::new();
    let mut svc = Service::start("switchboard-relay", &test_config(&ports, ""));
    assert_eq!(&stun_binding(ports.relay)[..2], &[0x01, 0x01]);
    svc.signal("TERM");
    svc.wait_notify("STOPPING=1", STOP_BOUND)
        .expect("STOPPING=1 sent");
    let status = svc.wait_exit(STOP_BOUND).expect("exits within the bound");
    assert_eq!(status.code(), Some(0), "{}", svc.logs());
}

#[test]
fn sigint_also_stops_signaling_cleanly() {
    let ports = Ports::new();
    let mut svc = Service::start("switchboard-signaling", &test_config(&ports, ""));
    svc.signal("INT");
    let status = svc.wait_exit(STOP_BOUND).expect("exits within the bound");
    assert_eq!(status.code(), Some(0), "{}", svc.logs());
}
