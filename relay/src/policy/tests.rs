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
        ("192.88.99.0", "192.88.99.255"),
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
    for a in [
        "2001:4860:4860::8888",
        "2606:4700::1111",
        "fbff::1",
        "ff::1",
    ] {
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

/// IANA IPv4 Special-Purpose Address Registry: blocks not globally reachable that SPEC
/// section 3's first list did not name (192.88.99.0/24, deprecated by RFC 7526), and the
/// registry's globally reachable blocks, which stay ordinary peers.
#[test]
fn the_ipv4_special_purpose_registry_is_covered_and_its_reachable_blocks_are_not() {
    let p = builtin();
    for a in [
        "192.88.99.1", // 6to4 relay anycast (deprecated), RFC 7526
        "192.0.0.8",   // IPv4 dummy address, RFC 7600
        "192.0.0.170", // NAT64/DNS64 discovery, RFC 7050
        "0.0.0.0",     // this host, RFC 1122
        "255.255.255.255",
    ] {
        assert_eq!(p.check_ip(ip(a)), Err(Denied::BuiltIn), "{a}");
    }
    for a in [
        "192.31.196.1", // AS112-v4, RFC 7535: globally reachable
        "192.52.193.1", // AMT, RFC 7450: globally reachable
        "192.175.48.1", // AS112 direct delegation, RFC 7534: globally reachable
        "192.88.98.255",
        "192.88.100.0",
    ] {
        assert_eq!(p.check_ip(ip(a)), Ok(()), "{a}");
    }
}

/// IANA IPv6 Special-Purpose Address Registry: every block whose "Globally Reachable" is
/// False, at both ends, plus site-local (RFC 3879) and SIIT (RFC 2765).
#[test]
fn every_non_global_ipv6_registry_block_is_denied_at_both_ends() {
    let p = builtin();
    let cases = [
        ("::ffff:0:0.0.0.0", "::ffff:0:255.255.255.255"), // SIIT, RFC 2765
        ("64:ff9b:1::", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff"), // local-use NAT64, RFC 8215
        ("100::", "100::ffff:ffff:ffff:ffff"),            // discard-only, RFC 6666
        ("100:0:0:1::", "100:0:0:1:ffff:ffff:ffff:ffff"), // dummy prefix, RFC 9780
        ("2001:2::", "2001:2:0:ffff:ffff:ffff:ffff:ffff"), // benchmarking, RFC 5180
        ("2001:10::", "2001:1f:ffff:ffff:ffff:ffff:ffff:ffff"), // deprecated ORCHID, RFC 4843
        ("2001:5::", "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff"), // rest of 2001::/23, RFC 2928
        ("3fff::", "3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff"), // documentation, RFC 9637
        ("5f00::", "5f00:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), // SRv6 SIDs, RFC 9602
        ("fec0::", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), // site-local, RFC 3879
    ];
    for (lo, hi) in cases {
        assert_eq!(p.check_ip(ip(lo)), Err(Denied::BuiltIn), "{lo}");
        assert_eq!(p.check_ip(ip(hi)), Err(Denied::BuiltIn), "{hi}");
    }
    // The example of the issue: SIIT form of the cloud metadata address.
    assert!(p.check_ip(ip("::ffff:0:a9fe:a9fe")).is_err());
}

/// The registry's globally reachable entries inside 2001::/23 are ordinary peers.
#[test]
fn globally_reachable_entries_inside_2001_23_are_allowed() {
    let p = builtin();
    for a in [
        "2001:1::1",     // PCP anycast, RFC 7723
        "2001:1::2",     // TURN anycast, RFC 8155
        "2001:3::1",     // AMT, RFC 7450
        "2001:4:112::1", // AS112-v6, RFC 7535
        "2001:20::1",    // ORCHIDv2, RFC 7343
        "2001:30::1",    // drone remote ID, RFC 9374
        "2001:200::1",   // outside the /23: ordinary global unicast
    ] {
        assert_eq!(p.check_ip(ip(a)), Ok(()), "{a}");
    }
    assert!(p.check_ip(ip("2001:1::4")).is_err(), "rest of 2001:1::/32");
}

/// Teredo (RFC 4380 section 4): 2001:0:SSSS:SSSS:flags:port:CCCC:CCCC carries the server's
/// IPv4 and the client's IPv4 inverted; either one denied denies the address.
#[test]
fn teredo_addresses_are_denied_when_their_server_or_client_ipv4_is() {
    let p = builtin();
    // Server 65.54.227.120, client 192.0.2.45 (RFC 4380's example, client in TEST-NET-1).
    assert!(
        p.check_ip(ip("2001:0:4136:e378:8000:63bf:3fff:fdd2"))
            .is_err()
    );
    // Server 10.0.0.1 (private), client 8.8.8.8 (!0x08080808 = f7f7:f7f7).
    assert!(p.check_ip(ip("2001:0:a00:1:0:0:f7f7:f7f7")).is_err());
    // Server 8.8.4.4, client 127.0.0.1 (!0x7f000001 = 80ff:fffe).
    assert!(p.check_ip(ip("2001:0:808:404:0:0:80ff:fffe")).is_err());
    // Both public: a Teredo host reachable through the Teredo relays.
    assert_eq!(p.check_ip(ip("2001:0:808:404:0:0:f7f7:f7f7")), Ok(()));
    let embedded: Vec<Ipv4Addr> = embedded_ipv4(ip("2001:0:808:404:0:0:80ff:fffe")).collect();
    assert_eq!(
        embedded,
        vec![Ipv4Addr::new(8, 8, 4, 4), Ipv4Addr::new(127, 0, 0, 1)]
    );
}

/// 6to4 and NAT64 forms of the newly covered IPv4 blocks are denied too.
#[test]
fn embedded_forms_of_the_new_ipv4_blocks_are_denied() {
    let p = builtin();
    assert!(
        p.check_ip(ip("64:ff9b::c058:6301")).is_err(),
        "NAT64 of 192.88.99.1"
    );
    assert!(
        p.check_ip(ip("2002:c058:6301::1")).is_err(),
        "6to4 of 192.88.99.1"
    );
    assert!(
        p.check_ip(ip("::ffff:192.88.99.1")).is_err(),
        "mapped 192.88.99.1"
    );
}
