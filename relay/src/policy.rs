//! Peer address policy (SPEC section 3): which peers an allocation may reach, so the
//! relay never becomes an SSRF proxy into the host's private or loopback networks.
//!
//! Pure: no sockets, no clock. The relay's own *relayed* sockets are dynamic state and are
//! checked separately by the caller (see `tables`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Why a peer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// In the built-in deny list (or an address embedding a denied IPv4).
    BuiltIn,
    /// In `denied_peers`.
    Configured,
    /// One of the relay's own listening or relayed addresses.
    OwnAddress,
}

/// The built-in deny list of SPEC section 3, IPv4 part.
const DENIED_V4: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),          // "this" network, RFC 1122
    (Ipv4Addr::new(10, 0, 0, 0), 8),         // private, RFC 1918
    (Ipv4Addr::new(100, 64, 0, 0), 10),      // CGNAT shared space, RFC 6598
    (Ipv4Addr::new(127, 0, 0, 0), 8),        // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),     // link-local, cloud metadata
    (Ipv4Addr::new(172, 16, 0, 0), 12),      // private, RFC 1918
    (Ipv4Addr::new(192, 0, 0, 0), 24),       // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),       // TEST-NET-1
    (Ipv4Addr::new(192, 168, 0, 0), 16),     // private, RFC 1918
    (Ipv4Addr::new(198, 18, 0, 0), 15),      // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24),    // TEST-NET-2
    (Ipv4Addr::new(203, 0, 113, 0), 24),     // TEST-NET-3
    (Ipv4Addr::new(224, 0, 0, 0), 4),        // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),        // reserved
    (Ipv4Addr::new(255, 255, 255, 255), 32), // limited broadcast
];

/// The built-in deny list, IPv6 part (embedded-IPv4 forms are handled separately).
const DENIED_V6: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::UNSPECIFIED, 128),
    (Ipv6Addr::LOCALHOST, 128),
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
];

/// The peer policy of one relay instance.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    builtin: Vec<IpNet>,
    allowed: Vec<IpNet>,
    denied: Vec<IpNet>,
    /// Listening addresses (an unspecified IP means "any of ours").
    own_listen: Vec<SocketAddr>,
    /// `relay_ip` and `external_ip`.
    own_ips: Vec<IpAddr>,
}

impl PeerPolicy {
    /// `allowed` wins over the built-in list and `denied`; the relay's own listening
    /// addresses are refused even when allowed (a relay must not loop into itself).
    #[must_use]
    pub fn new(
        allowed: Vec<IpNet>,
        denied: Vec<IpNet>,
        own_listen: Vec<SocketAddr>,
        own_ips: Vec<IpAddr>,
    ) -> Self {
        let mut builtin: Vec<IpNet> = DENIED_V4
            .iter()
            .filter_map(|&(a, p)| Ipv4Net::new(a, p).ok().map(IpNet::V4))
            .collect();
        builtin.extend(
            DENIED_V6
                .iter()
                .filter_map(|&(a, p)| Ipv6Net::new(a, p).ok().map(IpNet::V6)),
        );
        Self {
            builtin,
            allowed,
            denied,
            own_listen,
            own_ips,
        }
    }

    /// Checks a peer transport address (RFC 8656 section 9: the server MAY refuse a
    /// CreatePermission/ChannelBind for a peer it will not relay to, with 403).
    ///
    /// `live_relay_port`: whether `peer.port()` is one of this relay's live relayed sockets.
    /// Two clients of the same relay reach each other through their relayed addresses
    /// (`relay_ip`/`external_ip`), which is ordinary TURN; every other port on those
    /// addresses is refused unless allowed, and the listening addresses always are.
    pub fn check(&self, peer: SocketAddr, live_relay_port: bool) -> Result<(), Denied> {
        if self.is_own_listener(peer) {
            return Err(Denied::OwnAddress);
        }
        if live_relay_port && self.is_own_ip(peer.ip()) {
            return Ok(());
        }
        self.check_ip(peer.ip())
    }

    /// Checks a peer IP alone.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Denied> {
        // IPv4-mapped (::ffff:a.b.c.d) is the IPv4 address itself for every purpose.
        let ip = canonical(ip);
        if self.allowed.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        if self.is_own_ip(ip) {
            return Err(Denied::OwnAddress);
        }
        if self.denied.iter().any(|n| n.contains(&ip)) {
            return Err(Denied::Configured);
        }
        if self.builtin.iter().any(|n| n.contains(&ip)) {
            return Err(Denied::BuiltIn);
        }
        if let Some(v4) = embedded_ipv4(ip) {
            // NAT64, 6to4 and IPv4-compatible forms reach the embedded IPv4 address.
            return self.check_ip(IpAddr::V4(v4));
        }
        Ok(())
    }

    fn is_own_listener(&self, peer: SocketAddr) -> bool {
        let ip = canonical(peer.ip());
        self.own_listen.iter().any(|l| {
            l.port() == peer.port()
                && (canonical(l.ip()) == ip
                    || (l.ip().is_unspecified()
                        && (ip.is_loopback()
                            || ip.is_unspecified()
                            || self.own_ips.iter().any(|o| canonical(*o) == ip))))
        })
    }

    /// Whether `ip` is `relay_ip` or `external_ip` (an unspecified `relay_ip` counts as
    /// loopback).
    #[must_use]
    pub fn is_own_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.own_ips
            .iter()
            .any(|o| canonical(*o) == ip || (o.is_unspecified() && ip.is_loopback()))
    }
}

/// `::ffff:a.b.c.d` becomes `a.b.c.d`; everything else is unchanged.
#[must_use]
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The IPv4 address embedded in an IPv6 address by NAT64 (64:ff9b::/96, RFC 6052), 6to4
/// (2002::/16, RFC 3056) or the deprecated IPv4-compatible form (::a.b.c.d, RFC 4291).
#[must_use]
pub fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let o = v6.octets();
    let low = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] {
        return Some(low);
    }
    None
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
