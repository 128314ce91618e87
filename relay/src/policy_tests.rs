//! Unit tests for the peer policy: every range of SPEC section 3.

use super::*;

fn builtin() -> PeerPolicy {
    PeerPolicy::new(vec![], vec![], vec![], vec![])
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

fn net(s: &str) -> IpNet {
    s.parse().expect("net")
}

#[test]
fn every_builtin_ipv4_range_is_denied_at_both_ends() {
    let cases = [
        ("0.0.0.0", "0.255.255.255"),
        ("10.0.0.0", "10.255.255.255"),
        ("100.64.0.0", "100.127.255.255"),
        ("127.0.0.0", "127.255.255.255"),
        ("169.254.0.0", "169.254.255.255"),
        ("172.16.0.0", "172.31.255.255"),
        ("192.0.0.0", "192.0.0.255"),
        ("192.0.2.0", "192.0.2.255"),
        ("192.168.0.0", "192.168.255.255"),
        ("198.18.0.0", "198.19.255.255"),
        ("198.51.100.0", "198.51.100.255"),
        ("203.0.113.0", "203.0.113.255"),
        ("224.0.0.0", "239.255.255.255"),
        ("240.0.0.0", "255.255.255.255"),
    ];
    let p = builtin();
    for (lo, hi) in cases {
        assert_eq!(p.check_ip(ip(lo)), Err(Denied::BuiltIn), "{lo}");
        assert_eq!(p.check_ip(ip(hi)), Err(Denied::BuiltIn), "{hi}");
    }
}

#[test]
fn addresses_just_outside_the_ipv4_ranges_are_allowed() {
    let p = builtin();
    for a in [
        "1.0.0.0",
        "9.255.255.255",
        "11.0.0.0",
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.1.0",
        "192.169.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "203.0.114.1",
        "223.255.255.255",
        "8.8.8.8",
    ] {
        assert_eq!(p.check_ip(ip(a)), Ok(()), "{a}");
    }
}

#[test]
fn every_builtin_ipv6_range_is_denied() {
    let p = builtin();
    for a in [
        "::",
        "::1",
        "fc00::1",
        "fdff:ffff::1",
        "fe80::1",
        "febf::1",
        "ff02::1",
        "2001:db8::1",
        "2001:db8:ffff::1",
    ] {
        assert_eq!(p.check_ip(ip(a)), Err(Denied::BuiltIn), "{a}");
    }
    for a in ["2001:4860:4860::8888", "2606:4700::1111", "fec0::1"] {
        assert_eq!(p.check_ip(ip(a)), Ok(()), "{a}");
    }
}

#[test]
fn ipv4_mapped_and_compatible_forms_of_denied_ipv4_are_denied() {
    let p = builtin();
    for a in [
        "::ffff:127.0.0.1",
        "::ffff:10.1.2.3",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "::10.0.0.1",
    ] {
        assert!(p.check_ip(ip(a)).is_err(), "{a}");
    }
    assert_eq!(p.check_ip(ip("::ffff:8.8.8.8")), Ok(()));
}

#[test]
fn nat64_and_6to4_embedding_a_denied_ipv4_are_denied() {
    let p = builtin();
    assert!(p.check_ip(ip("64:ff9b::7f00:1")).is_err());
    assert!(p.check_ip(ip("64:ff9b::a9fe:a9fe")).is_err());
    assert!(p.check_ip(ip("2002:7f00:1::1")).is_err());
    assert!(p.check_ip(ip("2002:c0a8:101::1")).is_err());
    // Public embedded IPv4: allowed.
    assert_eq!(p.check_ip(ip("64:ff9b::808:808")), Ok(()));
    assert_eq!(p.check_ip(ip("2002:808:808::1")), Ok(()));
}

#[test]
fn allowed_peers_win_over_the_deny_list_including_mapped_forms() {
    let p = PeerPolicy::new(vec![net("127.0.0.0/8")], vec![], vec![], vec![]);
    assert_eq!(p.check_ip(ip("127.0.0.1")), Ok(()));
    assert_eq!(p.check_ip(ip("::ffff:127.0.0.1")), Ok(()));
    assert!(p.check_ip(ip("10.0.0.1")).is_err());
}

#[test]
fn denied_peers_add_to_the_builtin_list() {
    let p = PeerPolicy::new(vec![], vec![net("8.8.8.0/24")], vec![], vec![]);
    assert_eq!(p.check_ip(ip("8.8.8.8")), Err(Denied::Configured));
    assert_eq!(p.check_ip(ip("64:ff9b::808:808")), Err(Denied::Configured));
    assert_eq!(p.check_ip(ip("8.8.4.4")), Ok(()));
}

#[test]
fn the_relays_own_listening_address_is_denied_even_when_allowed() {
    let listen: SocketAddr = "127.0.0.1:3478".parse().expect("addr");
    let p = PeerPolicy::new(
        vec![net("127.0.0.0/8")],
        vec![],
        vec![listen],
        vec![ip("127.0.0.1")],
    );
    assert_eq!(p.check(listen, false), Err(Denied::OwnAddress));
    assert_eq!(
        p.check("[::ffff:127.0.0.1]:3478".parse().expect("addr"), false),
        Err(Denied::OwnAddress)
    );
    assert_eq!(
        p.check("127.0.0.1:5000".parse().expect("addr"), false),
        Ok(())
    );
    assert!(p.is_own_ip(ip("127.0.0.1")));
}

#[test]
fn an_unspecified_listener_denies_its_port_on_loopback_and_external_ip() {
    let p = PeerPolicy::new(
        vec![net("0.0.0.0/0")],
        vec![],
        vec!["0.0.0.0:3478".parse().expect("addr")],
        vec![ip("198.51.100.7")],
    );
    assert_eq!(
        p.check("198.51.100.7:3478".parse().expect("addr"), true),
        Err(Denied::OwnAddress)
    );
    assert_eq!(
        p.check("127.0.0.1:3478".parse().expect("addr"), false),
        Err(Denied::OwnAddress)
    );
    assert_eq!(
        p.check("8.8.8.8:3478".parse().expect("addr"), false),
        Ok(())
    );
}

#[test]
fn the_relays_own_ip_is_denied_except_for_its_live_relayed_ports() {
    let p = PeerPolicy::new(vec![], vec![], vec![], vec![ip("198.51.100.7")]);
    let own_relayed: SocketAddr = "198.51.100.7:50000".parse().expect("addr");
    // Another client's relayed address on this relay: ordinary client-to-client TURN.
    assert_eq!(p.check(own_relayed, true), Ok(()));
    // Anything else on the relay host's address is refused.
    let p = PeerPolicy::new(vec![], vec![], vec![], vec![ip("8.8.8.8")]);
    assert_eq!(
        p.check("8.8.8.8:22".parse().expect("addr"), false),
        Err(Denied::OwnAddress)
    );
}
