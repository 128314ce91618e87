//! Independent clients against the real relay: coturn's `turnutils_uclient` (REST secret
//! `-W`) client-to-client and towards `turnutils_peer`, over channels and over Send/Data
//! indications, with 0 % loss at a modest rate; and the `turn` crate's own client.

mod relay_support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use relay_support::{UclientResult, credential, parse_uclient, relay_config};
use switchboard_tests::{Ports, Service, TEST_SECRET, free_port, require_tool};
use webrtc_util::Conn;

fn start(ports: &Ports) -> Service {
    Service::start(
        "switchboard-relay",
        &relay_config(
            ports,
            &["127.0.0.0/8"],
            &[],
            "max_allocations_per_user = 100",
        ),
    )
}

/// Runs `turnutils_uclient` with `args` against the relay (bounded by its own -n/-m and a
/// kill after 120 s) and parses its summary.
fn uclient(ports: &Ports, args: &[&str]) -> UclientResult {
    let tool = require_tool("turnutils_uclient");
    let port = ports.relay.to_string();
    let mut cmd = Command::new("timeout");
    cmd.arg("120")
        .arg(tool)
        .args(args)
        .args(["-W", TEST_SECRET, "-p", &port, "127.0.0.1"])
        .stdin(Stdio::null());
    let out = cmd.output().expect("run turnutils_uclient");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    parse_uclient(&text).unwrap_or_else(|| panic!("no summary from turnutils_uclient:\n{text}"))
}

fn assert_lossless(r: UclientResult, expected: u64) {
    assert_eq!(r.sent, expected, "{r:?}");
    assert_eq!(r.received, expected, "{r:?}");
    assert_eq!(r.lost, 0, "{r:?}");
    assert!(r.loss_percent.abs() < f64::EPSILON, "{r:?}");
}

/// RFC 8656 section 12: client-to-client over channels (`-y`), 4 clients x 200 messages.
#[test]
fn uclient_client_to_client_over_channels_loses_nothing() {
    let ports = Ports::new();
    let _relay = start(&ports);
    let r = uclient(
        &ports,
        &[
            "-y", "-c", "-m", "4", "-n", "200", "-l", "170", "-z", "5", "-u", "alice",
        ],
    );
    assert_lossless(r, 4 * 200);
}

/// RFC 8656 sections 11 and 12, towards `turnutils_peer`: channels, then Send/Data
/// indications (`-s`); also the bare-timestamp username `-W` sends without `-u`.
#[test]
fn uclient_towards_turnutils_peer_loses_nothing_with_channels_and_send_indications() {
    let ports = Ports::new();
    let _relay = start(&ports);
    let peer_port = free_port();
    let mut peer = Command::new(require_tool("turnutils_peer"))
        .args(["-L", "127.0.0.1", "-p", &peer_port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start turnutils_peer");
    let port = peer_port.to_string();
    let base = [
        "-c",
        "-m",
        "3",
        "-n",
        "200",
        "-l",
        "170",
        "-z",
        "5",
        "-e",
        "127.0.0.1",
        "-r",
    ];
    let mut channels = base.to_vec();
    channels.push(&port);
    let r1 = uclient(&ports, &channels);
    let mut indications = base.to_vec();
    indications.extend([port.as_str(), "-s", "-u", "bob"]);
    let r2 = uclient(&ports, &indications);
    let _ = peer.kill();
    let _ = peer.wait();
    assert_lossless(r1, 3 * 200);
    assert_lossless(r2, 3 * 200);
}

/// The webrtc-rs `turn` client allocates and exchanges datagrams with a loopback peer.
#[test]
fn the_turn_crate_client_allocates_and_exchanges_data_with_a_loopback_peer() {
    let ports = Ports::new();
    let _relay = start(&ports);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let cred = credential(TEST_SECRET, "crate-client");
        let server = format!("127.0.0.1:{}", ports.relay);
        let conn = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = turn::client::Client::new(turn::client::ClientConfig {
            stun_serv_addr: server.clone(),
            turn_serv_addr: server,
            username: cred.username.clone(),
            password: cred.password.clone(),
            realm: relay_support::REALM.into(),
            software: String::new(),
            rto_in_ms: 0,
            conn: Arc::new(conn),
            vnet: None,
        })
        .await
        .expect("client");
        client.listen().await.expect("listen");
        let relay_conn = client.allocate().await.expect("allocate");
        let relayed = relay_conn.local_addr().expect("relayed address");

        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("peer");
        let peer_addr = peer.local_addr().expect("addr");
        let mut buf = vec![0u8; 1500];
        for i in 0..20u8 {
            // The client creates the permission (and later a channel) on first send.
            relay_conn
                .send_to(&[i; 100], peer_addr)
                .await
                .expect("send via relay");
            let (n, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
                .await
                .expect("peer receives in time")
                .expect("recv");
            assert_eq!(&buf[..n], &[i; 100]);
            assert_eq!(from, relayed);
            peer.send_to(&[i ^ 0xff; 80], relayed).await.expect("reply");
            let (n, from) =
                tokio::time::timeout(Duration::from_secs(5), relay_conn.recv_from(&mut buf))
                    .await
                    .expect("client receives in time")
                    .expect("recv");
            assert_eq!(&buf[..n], &[i ^ 0xff; 80]);
            assert_eq!(from, peer_addr);
        }
        relay_conn.close().await.expect("close");
        client.close().await.expect("close client");
    });
}
