//! Peer address policy (SPEC section 3): which peers an allocation may reach, so the
//! relay never becomes an SSRF proxy into the host's private or loopback networks.
//!
//! Pure: no sockets, no clock. The relay's own *relayed* sockets are dynamic state and are
//! checked separately by the caller (see `crate::control::tables`). Quotas (allocations in
//! total and per user) are in `quota`.

pub mod quota;

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

/// The built-in deny list, IPv4 part: every block of the IANA IPv4 Special-Purpose Address
/// Registry (RFC 6890, as updated; iana.org/assignments/iana-ipv4-special-registry) whose
/// "Globally Reachable" is False or that is deprecated, plus multicast (RFC 5771) and SPEC
/// section 3's list. The registry's globally reachable entries (192.31.196.0/24 AS112,
/// 192.52.193.0/24 AMT, 192.175.48.0/24 AS112) are ordinary peers; inside 192.0.0.0/24 the
/// anycast /32s 192.0.0.9 and 192.0.0.10 are denied with the rest of the block, as SPEC
/// section 3 lists it whole.
pub(crate) const DENIED_V4: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),  // "this network", RFC 791 / RFC 1122
    (Ipv4Addr::new(10, 0, 0, 0), 8), // private use, RFC 1918
    (Ipv4Addr::new(100, 64, 0, 0), 10), // shared address space (CGNAT), RFC 6598
    (Ipv4Addr::new(127, 0, 0, 0), 8), // loopback, RFC 1122
    (Ipv4Addr::new(169, 254, 0, 0), 16), // link local (cloud metadata), RFC 3927
    (Ipv4Addr::new(172, 16, 0, 0), 12), // private use, RFC 1918
    (Ipv4Addr::new(192, 0, 0, 0), 24), // IETF protocol assignments, RFC 6890
    (Ipv4Addr::new(192, 0, 2, 0), 24), // documentation TEST-NET-1, RFC 5737
    (Ipv4Addr::new(192, 88, 99, 0), 24), // deprecated 6to4 relay anycast, RFC 7526
    (Ipv4Addr::new(192, 168, 0, 0), 16), // private use, RFC 1918
    (Ipv4Addr::new(198, 18, 0, 0), 15), // benchmarking, RFC 2544
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation TEST-NET-2, RFC 5737
    (Ipv4Addr::new(203, 0, 113, 0), 24), // documentation TEST-NET-3, RFC 5737
    (Ipv4Addr::new(224, 0, 0, 0), 4), // multicast, RFC 5771
    (Ipv4Addr::new(240, 0, 0, 0), 4), // reserved, RFC 1112
    (Ipv4Addr::new(255, 255, 255, 255), 32), // limited broadcast, RFC 919
];

const fn v6(s: [u16; 8]) -> Ipv6Addr {
    Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7])
}

/// The built-in deny list, IPv6 part: every block of the IANA IPv6 Special-Purpose Address
/// Registry (RFC 6890, as updated; iana.org/assignments/iana-ipv6-special-registry) whose
/// "Globally Reachable" is False, plus multicast, deprecated site-local and SIIT. Blocks that
/// embed an IPv4 address (NAT64 64:ff9b::/96, 6to4, Teredo, IPv4-compatible) are decided by
/// the embedded address instead ([`embedded_ipv4`]); IPv4-mapped addresses are the IPv4
/// address itself ([`canonical`]).
pub(crate) const DENIED_V6: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::UNSPECIFIED, 128),                // unspecified, RFC 4291
    (Ipv6Addr::LOCALHOST, 128),                  // loopback, RFC 4291
    (v6([0, 0, 0, 0, 0xffff, 0, 0, 0]), 96),     // SIIT IPv4-translated, RFC 2765
    (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0]), 48),  // local-use IPv4/IPv6 translation, RFC 8215
    (v6([0x100, 0, 0, 0, 0, 0, 0, 0]), 64),      // discard-only, RFC 6666
    (v6([0x100, 0, 0, 1, 0, 0, 0, 0]), 64),      // dummy IPv6 prefix, RFC 9780
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0]), 23),     // IETF protocol assignments, RFC 2928
    (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 32), // documentation, RFC 3849
    (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0]), 20),     // documentation, RFC 9637
    (v6([0x5f00, 0, 0, 0, 0, 0, 0, 0]), 16),     // segment routing SIDs, RFC 9602
    (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0]), 7),      // unique local, RFC 4193
    (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0]), 10),     // link-local unicast, RFC 4291
    (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0]), 10),     // site-local (deprecated), RFC 3879
    (v6([0xff00, 0, 0, 0, 0, 0, 0, 0]), 8),      // multicast, RFC 4291
];

/// More-specific entries of the IPv6 registry inside a denied block whose "Globally
/// Reachable" is True (or, for Teredo, decided by its embedded addresses): not denied by the
/// block around them.
pub(crate) const REACHABLE_V6: &[(Ipv6Addr, u8)] = &[
    (v6([0x2001, 0, 0, 0, 0, 0, 0, 0]), 32), // Teredo, RFC 4380 (embedded IPv4s)
    (v6([0x2001, 1, 0, 0, 0, 0, 0, 1]), 128), // PCP anycast, RFC 7723
    (v6([0x2001, 1, 0, 0, 0, 0, 0, 2]), 128), // TURN anycast, RFC 8155
    (v6([0x2001, 1, 0, 0, 0, 0, 0, 3]), 128), // DNS-SD SRP anycast, RFC 9665
    (v6([0x2001, 3, 0, 0, 0, 0, 0, 0]), 32), // AMT, RFC 7450
    (v6([0x2001, 4, 0x112, 0, 0, 0, 0, 0]), 48), // AS112-v6, RFC 7535
    (v6([0x2001, 0x20, 0, 0, 0, 0, 0, 0]), 28), // ORCHIDv2, RFC 7343
    (v6([0x2001, 0x30, 0, 0, 0, 0, 0, 0]), 28), // drone remote ID DETs, RFC 9374
];

/// The peer policy of one relay instance.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    builtin: Vec<IpNet>,
    /// Globally reachable more-specifics of `builtin` blocks.
    reachable: Vec<IpNet>,
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
        let reachable = REACHABLE_V6
            .iter()
            .filter_map(|&(a, p)| Ipv6Net::new(a, p).ok().map(IpNet::V6))
            .collect();
        Self {
            builtin,
            reachable,
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
        if self.builtin.iter().any(|n| n.contains(&ip))
            && !self.reachable.iter().any(|n| n.contains(&ip))
        {
            return Err(Denied::BuiltIn);
        }
        // NAT64, 6to4, Teredo and IPv4-compatible forms reach the embedded IPv4 address(es):
        // denied when any of them is.
        for v4 in embedded_ipv4(ip) {
            self.check_ip(IpAddr::V4(v4))?;
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

/// The IPv4 addresses an IPv6 address reaches: NAT64 with the well-known prefix
/// (64:ff9b::/96, RFC 6052), 6to4 (2002::/16, RFC 3056), Teredo (2001::/32, RFC 4380 section
/// 4: the server's IPv4 in bits 32-63 and the client's, inverted, in bits 96-127) and the
/// deprecated IPv4-compatible form (::a.b.c.d, RFC 4291 section 2.5.5.1). Empty for others.
pub fn embedded_ipv4(ip: IpAddr) -> impl Iterator<Item = Ipv4Addr> {
    let (first, second) = match ip {
        IpAddr::V4(_) => (None, None),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let o = v6.octets();
            let at = |i: usize| Ipv4Addr::new(o[i], o[i + 1], o[i + 2], o[i + 3]);
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || s[..6] == [0, 0, 0, 0, 0, 0] {
                (Some(at(12)), None)
            } else if s[0] == 0x2002 {
                (Some(at(2)), None)
            } else if s[..2] == [0x2001, 0] {
                let client = !u32::from(at(12));
                (Some(at(4)), Some(Ipv4Addr::from(client)))
            } else {
                (None, None)
            }
        }
    };
    first.into_iter().chain(second)
}

#[cfg(test)]
mod tests;
