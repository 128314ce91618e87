//! Every `listen_udp` address serves, IPv4 and IPv6 alike (RFC 8656 section 3.1: the
//! client-to-server leg may be IPv6 while the relayed address is IPv4).

mod relay_support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use relay_support::{RawClient, credential, relay_config};
use switchboard_tests::{Ports, Service, TEST_SECRET};

#[test]
fn clients_on_the_ipv6_listener_allocate_and_relay_like_ipv4_ones() {
    let ports = Ports::new();
    let config = relay_config(&ports, &["127.0.0.0/8"], &[], "").replace(
        &format!("listen_udp = [\"127.0.0.1:{}\"]", ports.relay),
        &format!(
            "listen_udp = [\"127.0.0.1:{p}\", \"[::1]:{p}\"]",
            p = ports.relay
        ),
    );
    let _relay = Service::start("switchboard-relay", &config);
    let peer = UdpSocket::bind("127.0.0.1:0").expect("peer");
    peer.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let peer_addr = peer.local_addr().expect("addr");

    for server in [
        SocketAddr::from(([127, 0, 0, 1], ports.relay)),
        SocketAddr::new("::1".parse().expect("ip"), ports.relay),
    ] {
        let mut c = RawClient::new(server, &credential(TEST_SECRET, "v6"));
        let relayed = c.allocate().expect("allocate");
        assert!(relayed.is_ipv4(), "relayed address family follows relay_ip");
        assert_eq!(c.channel_bind(0x4000, peer_addr), 200);
        c.send_channel_data(0x4000, b"hello");
        let mut buf = [0u8; 16];
        let (n, from) = peer.recv_from(&mut buf).expect("relayed datagram");
        assert_eq!((&buf[..n], from), (&b"hello"[..], relayed), "via {server}");
        peer.send_to(b"back", relayed).expect("send");
        assert_eq!(
            c.recv_data(Duration::from_secs(5)).as_deref(),
            Some(&b"back"[..]),
            "via {server}"
        );
    }
}
