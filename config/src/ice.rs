//! The STUN/TURN URIs that `/api/ice-servers` lists, built from `[turn]` and `[relay]`.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use crate::model::{Advertise, RelayConfig, TurnConfig};

/// URIs split the way `RTCIceServer` wants them: STUN needs no credential, TURN does.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IceUris {
    pub stun: Vec<String>,
    pub turn: Vec<String>,
}

fn ports(addrs: &[SocketAddr]) -> Vec<u16> {
    let mut seen = BTreeSet::new();
    addrs
        .iter()
        .map(SocketAddr::port)
        .filter(|p| seen.insert(*p))
        .collect()
}

/// Builds the URI list: only kinds listed in `advertise` whose listener is configured, then
/// `extra_uris` (more relays) sorted into the STUN or TURN list by scheme (RFC 7064/7065).
#[must_use]
pub fn ice_uris(turn: &TurnConfig, relay: &RelayConfig) -> IceUris {
    let host = if turn.public_host.contains(':') {
        format!("[{}]", turn.public_host)
    } else {
        turn.public_host.clone()
    };
    let mut out = IceUris::default();
    for kind in &turn.advertise {
        match kind {
            Advertise::Stun => {
                if let Some(p) = ports(&relay.listen_udp).first() {
                    out.stun.push(format!("stun:{host}:{p}"));
                }
            }
            Advertise::TurnUdp => {
                if let Some(p) = ports(&relay.listen_udp).first() {
                    out.turn.push(format!("turn:{host}:{p}?transport=udp"));
                }
            }
            Advertise::TurnTcp => {
                if let Some(p) = ports(&relay.listen_tcp).first() {
                    out.turn.push(format!("turn:{host}:{p}?transport=tcp"));
                }
            }
            Advertise::Turns => {
                for p in ports(&relay.listen_tls) {
                    out.turn.push(format!("turns:{host}:{p}?transport=tcp"));
                }
            }
        }
    }
    for uri in &turn.extra_uris {
        if uri.starts_with("stun:") {
            out.stun.push(uri.clone());
        } else {
            out.turn.push(uri.clone());
        }
    }
    out
}
