//! The data path's wire decisions, sans I/O: what a client's packet is (ChannelData, a Send
//! indication, or a request for the control plane), and the in-place framing of a peer's
//! datagram for the client. A peer datagram is received at [`HEADROOM`] into its buffer, so
//! its ChannelData or Data indication header is written in front of it and the payload is
//! never copied (RFC 8656 sections 11.4, 12.4).

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

use stun::attributes::{ATTR_DATA, ATTR_XOR_PEER_ADDRESS};
use stun::message::{CLASS_INDICATION, MAGIC_COOKIE, METHOD_SEND, Message};

use super::table::{Dropped, Entry, Table};
use crate::control::tables::ClientKey;
use crate::wire::{self, TooLarge};

/// Bytes kept free in front of a peer datagram: the largest prefix, a Data indication from
/// an IPv6 peer (20 header + 4 + 20 XOR-PEER-ADDRESS + 4 DATA header).
pub const HEADROOM: usize = 48;
/// Bytes kept free after it: a Data indication's padding.
pub const TAILROOM: usize = 4;

/// What a client's packet asks of the data plane.
#[derive(Debug)]
pub enum FromClient {
    /// RFC 8656 section 12.4: `len` bytes at `start` on channel `number`.
    ChannelData {
        number: u16,
        start: usize,
        len: usize,
    },
    /// RFC 8656 section 11.2: `len` bytes at `start` for `peer`.
    Send {
        peer: SocketAddr,
        start: usize,
        len: usize,
    },
    /// Any other STUN message: for the control plane (only the part MESSAGE-INTEGRITY
    /// covers was kept by the parse).
    Control(Message),
    /// Not ChannelData, not STUN, or a Send indication without exactly one peer and data.
    Ignore,
}

/// Classifies one whole message from a client.
#[must_use]
pub fn classify(packet: &[u8]) -> FromClient {
    if wire::looks_like_channel_data(packet) {
        return match wire::channel_data(packet) {
            Some((number, start, len)) => FromClient::ChannelData { number, start, len },
            None => FromClient::Ignore,
        };
    }
    let Some(m) = wire::parse_client(packet) else {
        return FromClient::Ignore;
    };
    if m.typ.class != CLASS_INDICATION || m.typ.method != METHOD_SEND {
        return FromClient::Control(m);
    }
    let peers = wire::peer_addresses(&m).unwrap_or_default();
    let (&[peer], Some((start, len))) = (peers.as_slice(), wire::value_bounds(&m, ATTR_DATA))
    else {
        return FromClient::Ignore;
    };
    FromClient::Send { peer, start, len }
}

/// Frames the `len`-byte payload at `buf[HEADROOM..]` as ChannelData on `number` (no
/// padding: UDP needs none and the stream writer pads). Returns the message's range.
pub fn frame_channel_data(
    buf: &mut [u8],
    len: usize,
    number: u16,
) -> Result<Range<usize>, TooLarge> {
    let l = u16::try_from(len).map_err(|_| TooLarge(len))?;
    let start = HEADROOM - 4;
    let msg = buf.get_mut(start..HEADROOM + len).ok_or(TooLarge(len))?;
    msg[..2].copy_from_slice(&number.to_be_bytes());
    msg[2..4].copy_from_slice(&l.to_be_bytes());
    Ok(start..HEADROOM + len)
}

/// Frames the `len`-byte payload at `buf[HEADROOM..]` as a Data indication from `peer`
/// with transaction id `tid`, padding included. Returns the message's range; a payload the
/// 16-bit message length cannot describe is refused, never wrapped.
pub fn frame_data_indication(
    buf: &mut [u8],
    len: usize,
    peer: SocketAddr,
    tid: [u8; 12],
) -> Result<Range<usize>, TooLarge> {
    let addr_len: usize = if peer.is_ipv4() { 8 } else { 20 };
    let prefix = 20 + 4 + addr_len + 4;
    let pad = (4 - len % 4) % 4;
    let body = u16::try_from(4 + addr_len + 4 + len + pad).map_err(|_| TooLarge(len))?;
    let data_len = u16::try_from(len).map_err(|_| TooLarge(len))?;
    let start = HEADROOM - prefix;
    let end = HEADROOM + len + pad;
    let msg = buf.get_mut(start..end).ok_or(TooLarge(len))?;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    // Type 0x0017: method Data (0x007), class indication.
    msg[0..2].copy_from_slice(&0x0017u16.to_be_bytes());
    msg[2..4].copy_from_slice(&body.to_be_bytes());
    msg[4..8].copy_from_slice(&cookie);
    msg[8..20].copy_from_slice(&tid);
    msg[20..22].copy_from_slice(&ATTR_XOR_PEER_ADDRESS.0.to_be_bytes());
    msg[22..24].copy_from_slice(&(addr_len as u16).to_be_bytes());
    // RFC 8489 section 14.2: family, port XOR the cookie's top half, address XOR the
    // cookie (and the transaction id for IPv6).
    msg[24] = 0;
    msg[25] = if peer.is_ipv4() { 0x01 } else { 0x02 };
    msg[26..28].copy_from_slice(&(peer.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
    let mut mask = [0u8; 16];
    mask[..4].copy_from_slice(&cookie);
    mask[4..].copy_from_slice(&tid);
    match peer.ip() {
        std::net::IpAddr::V4(ip) => {
            for (i, b) in ip.octets().iter().enumerate() {
                msg[28 + i] = b ^ mask[i];
            }
        }
        std::net::IpAddr::V6(ip) => {
            for (i, b) in ip.octets().iter().enumerate() {
                msg[28 + i] = b ^ mask[i];
            }
        }
    }
    let d = 24 + addr_len;
    msg[d..d + 2].copy_from_slice(&ATTR_DATA.0.to_be_bytes());
    msg[d + 2..d + 4].copy_from_slice(&data_len.to_be_bytes());
    msg[prefix + len..].fill(0);
    Ok(start..end)
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;

/// The data plane's decision on one client packet, against the worker's table.
#[derive(Debug)]
pub enum Decision<'t, S> {
    /// Relay `packet[start..start + len]` to `peer` from `entry`'s relayed socket.
    ToPeer {
        entry: &'t mut Entry<S>,
        peer: SocketAddr,
        start: usize,
        len: usize,
    },
    /// Not relayed (no allocation, channel or permission, or over budget).
    Dropped(Dropped),
    /// A Send indication to a peer the policy denies (SPEC section 3: dropped, counted).
    Denied,
    /// For the control plane.
    Control(Message),
    /// Nothing to do (not TURN, or malformed).
    Ignore,
}

/// Decides on `packet` from the client of `key`: ChannelData on a live channel and Send
/// indications to an allowed (`allowed`), permitted peer within the bitrate budget are
/// relayed; other STUN goes to the control plane.
pub fn decide<'t, S>(
    table: &'t mut Table<S>,
    key: &ClientKey,
    packet: &[u8],
    now: Instant,
    allowed: impl Fn(SocketAddr) -> bool,
) -> Decision<'t, S> {
    match classify(packet) {
        FromClient::ChannelData { number, start, len } => {
            let Some(entry) = table.get_mut(key) else {
                return Decision::Dropped(Dropped::NoAllocation);
            };
            match entry.channel_to_peer(number, len, now) {
                Ok(peer) => Decision::ToPeer {
                    entry,
                    peer,
                    start,
                    len,
                },
                Err(why) => Decision::Dropped(why),
            }
        }
        FromClient::Send { peer, start, len } => {
            let Some(entry) = table.get_mut(key) else {
                return Decision::Dropped(Dropped::NoAllocation);
            };
            if !allowed(peer) {
                return Decision::Denied;
            }
            match entry.send_to_peer(peer, len, now) {
                Ok(()) => Decision::ToPeer {
                    entry,
                    peer,
                    start,
                    len,
                },
                Err(why) => Decision::Dropped(why),
            }
        }
        FromClient::Control(m) => Decision::Control(m),
        FromClient::Ignore => Decision::Ignore,
    }
}
