//! STUN/TURN wire helpers for our layer: parsing what we must inspect (RFC 8489 section 5,
//! RFC 8656 sections 12 and 14) and building the few messages we answer ourselves. The
//! data-path encoders write into caller buffers without allocating.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use stun::agent::TransactionId;
use stun::attributes::{
    ATTR_FINGERPRINT, ATTR_LIFETIME, ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME,
    ATTR_XOR_PEER_ADDRESS, ATTR_XOR_RELAYED_ADDRESS, AttrType,
};
use stun::error_code::{ErrorCode, ErrorCodeAttribute};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{
    BINDING_SUCCESS, CLASS_ERROR_RESPONSE, CLASS_REQUEST, MAGIC_COOKIE, METHOD_REFRESH, Message,
    MessageType, Setter,
};
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;

/// Decodes a STUN message, or `None` for anything else.
#[must_use]
pub fn parse(packet: &[u8]) -> Option<Message> {
    if !stun::message::is_message(packet) {
        return None;
    }
    let mut m = Message {
        raw: packet.to_vec(),
        ..Message::default()
    };
    m.decode().ok()?;
    Some(m)
}

/// Decodes a STUN message from a client with everything after its MESSAGE-INTEGRITY cut
/// off: RFC 8489 section 14.5 says agents MUST ignore attributes that follow it (only
/// FINGERPRINT, which only checks the bytes, may follow), so nothing unauthenticated is ever
/// used for a decision or handed on. The cut message still verifies with the same key: the
/// integrity covers exactly the bytes before it (RFC 8489 section 14.5).
#[must_use]
pub fn parse_client(packet: &[u8]) -> Option<Message> {
    let m = parse(packet)?;
    let Some(end) = integrity_end(&m) else {
        return Some(m);
    };
    if end == MESSAGE_HEADER_LEN + m.length as usize {
        return Some(m);
    }
    let mut raw = m.raw.get(..end)?.to_vec();
    let body = u16::try_from(end - MESSAGE_HEADER_LEN).ok()?;
    raw[2..4].copy_from_slice(&body.to_be_bytes());
    parse(&raw)
}

/// STUN header length (RFC 8489 section 5).
const MESSAGE_HEADER_LEN: usize = 20;

/// Where each attribute of `m` starts in its raw bytes (RFC 8489 section 14: TLVs padded to
/// 4 bytes after the 20-byte header), with the offset just past it.
fn attribute_spans(m: &Message) -> impl Iterator<Item = (AttrType, usize, usize)> + '_ {
    let mut offset = MESSAGE_HEADER_LEN;
    m.attributes.0.iter().map(move |a| {
        let start = offset;
        offset += 4 + a.value.len().div_ceil(4) * 4;
        (a.typ, start, offset)
    })
}

/// The offset just past the first MESSAGE-INTEGRITY attribute.
fn integrity_end(m: &Message) -> Option<usize> {
    attribute_spans(m)
        .find(|(t, _, _)| *t == ATTR_MESSAGE_INTEGRITY)
        .map(|(_, _, end)| end)
}

/// Where the value of the first `t` attribute sits in the raw message: (start, len).
#[must_use]
pub fn value_bounds(m: &Message, t: AttrType) -> Option<(usize, usize)> {
    attribute_spans(m)
        .zip(&m.attributes.0)
        .find(|((typ, _, _), _)| *typ == t)
        .map(|((_, start, _), a)| (start + 4, a.value.len()))
}

/// A ChannelData message (RFC 8656 section 12.4): channel number and payload bounds.
/// Channel numbers up to 0x7FFF are accepted: RFC 5766 allowed them, clients such as
/// coturn's still use them, and so does the `turn` crate.
#[must_use]
pub fn channel_data(packet: &[u8]) -> Option<(u16, usize, usize)> {
    if packet.len() < 4 || !looks_like_channel_data(packet) {
        return None;
    }
    let number = u16::from_be_bytes([packet[0], packet[1]]);
    let len = usize::from(u16::from_be_bytes([packet[2], packet[3]]));
    (4 + len <= packet.len()).then_some((number, 4, len))
}

/// Whether a first byte is in the ChannelData range (0x4000–0x7FFF, RFC 5766 section 11).
#[must_use]
pub fn looks_like_channel_data(packet: &[u8]) -> bool {
    packet.first().is_some_and(|b| (0x40..=0x7f).contains(b))
}

/// Every XOR-PEER-ADDRESS of `m` (the crate installs only the first; we check all).
/// `None` if one is malformed.
#[must_use]
pub fn peer_addresses(m: &Message) -> Option<Vec<SocketAddr>> {
    m.attributes
        .0
        .iter()
        .filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS)
        .map(|a| decode_xor_address(&a.value, &m.transaction_id.0))
        .collect()
}

/// The XOR-RELAYED-ADDRESS of an Allocate success response.
#[must_use]
pub fn relayed_address(m: &Message) -> Option<SocketAddr> {
    m.attributes
        .0
        .iter()
        .find(|a| a.typ == ATTR_XOR_RELAYED_ADDRESS)
        .and_then(|a| decode_xor_address(&a.value, &m.transaction_id.0))
}

/// RFC 8489 section 14.2.
fn decode_xor_address(v: &[u8], tid: &[u8; 12]) -> Option<SocketAddr> {
    if v.len() < 4 {
        return None;
    }
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = u16::from_be_bytes([v[2], v[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    match (v[1], v.len()) {
        (1, 8) => {
            let mut o = [0u8; 4];
            for i in 0..4 {
                o[i] = v[4 + i] ^ cookie[i];
            }
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(o)), port))
        }
        (2, 20) => {
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&cookie);
            key[4..].copy_from_slice(tid);
            let mut o = [0u8; 16];
            for i in 0..16 {
                o[i] = v[4 + i] ^ key[i];
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
        }
        _ => None,
    }
}

/// Writes an XOR-address value (RFC 8489 section 14.2) for `tid` into `out`.
fn encode_xor_address(addr: SocketAddr, tid: &[u8; 12], out: &mut Vec<u8>) {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    match addr.ip() {
        IpAddr::V4(v4) => {
            out.extend_from_slice(&[0, 1]);
            out.extend_from_slice(&port.to_be_bytes());
            for (i, b) in v4.octets().iter().enumerate() {
                out.push(b ^ cookie[i]);
            }
        }
        IpAddr::V6(v6) => {
            out.extend_from_slice(&[0, 2]);
            out.extend_from_slice(&port.to_be_bytes());
            let mut key = [0u8; 16];
            key[..4].copy_from_slice(&cookie);
            key[4..].copy_from_slice(tid);
            for (i, b) in v6.octets().iter().enumerate() {
                out.push(b ^ key[i]);
            }
        }
    }
}

/// A payload that no 16-bit length field can describe in the message it would travel in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a payload of {0} bytes does not fit the message's 16-bit length")]
pub struct TooLarge(pub usize);

/// A ChannelData message (RFC 8656 section 12.4) for `payload` on `number`, into `out`.
/// Over UDP no padding is needed. A payload over 65,535 bytes is refused, never wrapped.
pub fn encode_channel_data(number: u16, payload: &[u8], out: &mut Vec<u8>) -> Result<(), TooLarge> {
    out.clear();
    let len = u16::try_from(payload.len()).map_err(|_| TooLarge(payload.len()))?;
    out.extend_from_slice(&number.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// A Data indication (RFC 8656 section 11.4) carrying `payload` from `peer`, into `out`.
/// The message length counts XOR-PEER-ADDRESS, the DATA header and padding too (RFC 8489
/// section 5), so a payload close to 64 KiB does not fit: it is refused, never wrapped.
pub fn encode_data_indication(
    peer: SocketAddr,
    payload: &[u8],
    tid: [u8; 12],
    out: &mut Vec<u8>,
) -> Result<(), TooLarge> {
    out.clear();
    let addr_len: u16 = if peer.is_ipv4() { 8 } else { 20 };
    let pad = (4 - payload.len() % 4) % 4;
    let body = 4 + usize::from(addr_len) + 4 + payload.len() + pad;
    let too_large = TooLarge(payload.len());
    let body = u16::try_from(body).map_err(|_| too_large)?;
    let data_len = u16::try_from(payload.len()).map_err(|_| too_large)?;
    // Type 0x0017: method Data (0x007), class indication.
    out.extend_from_slice(&0x0017u16.to_be_bytes());
    out.extend_from_slice(&body.to_be_bytes());
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(&tid);
    out.extend_from_slice(&ATTR_XOR_PEER_ADDRESS.0.to_be_bytes());
    out.extend_from_slice(&addr_len.to_be_bytes());
    encode_xor_address(peer, &tid, out);
    out.extend_from_slice(&stun::attributes::ATTR_DATA.0.to_be_bytes());
    out.extend_from_slice(&data_len.to_be_bytes());
    out.extend_from_slice(payload);
    out.extend(std::iter::repeat_n(0u8, pad));
    debug_assert_eq!(out.len(), MESSAGE_HEADER_LEN + usize::from(body));
    Ok(())
}

fn build(setters: &[Box<dyn Setter>]) -> Vec<u8> {
    let mut m = Message::new();
    match m.build(setters) {
        Ok(()) => m.raw,
        Err(_) => Vec::new(),
    }
}

/// A Binding success response with XOR-MAPPED-ADDRESS (RFC 8489 section 14.2).
#[must_use]
pub fn binding_success(req: &Message, src: SocketAddr) -> Vec<u8> {
    build(&[
        Box::new(TransactionId(req.transaction_id.0)),
        Box::new(BINDING_SUCCESS),
        Box::new(XorMappedAddress {
            ip: src.ip(),
            port: src.port(),
        }),
        Box::new(FINGERPRINT),
    ])
}

/// An error response to `req`. With `nonce`, carries NONCE and REALM (401/438, RFC 8489
/// section 9.2.4); with `key`, MESSAGE-INTEGRITY (errors to authenticated requests).
#[must_use]
pub fn error_response(
    req: &Message,
    code: u16,
    nonce: Option<(&str, &str)>,
    key: Option<&[u8]>,
) -> Vec<u8> {
    let mut setters: Vec<Box<dyn Setter>> = vec![
        Box::new(TransactionId(req.transaction_id.0)),
        Box::new(MessageType::new(req.typ.method, CLASS_ERROR_RESPONSE)),
        Box::new(ErrorCodeAttribute {
            code: ErrorCode(code),
            reason: reason(code).as_bytes().to_vec(),
        }),
    ];
    if let Some((nonce, realm)) = nonce {
        setters.push(Box::new(TextAttribute::new(ATTR_NONCE, nonce.to_owned())));
        setters.push(Box::new(TextAttribute::new(ATTR_REALM, realm.to_owned())));
    }
    if let Some(key) = key {
        setters.push(Box::new(MessageIntegrity(key.to_vec())));
    }
    setters.push(Box::new(FINGERPRINT));
    build(&setters)
}

fn reason(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        437 => "Allocation Mismatch",
        441 => "Wrong Credentials",
        438 => "Stale Nonce",
        486 => "Allocation Quota Reached",
        508 => "Insufficient Capacity",
        _ => "Error",
    }
}

/// Re-encodes an authenticated request with `nonce` in place of its NONCE and a
/// MESSAGE-INTEGRITY recomputed with `key` (the key we verified it with). `None` when the
/// result would not fit the 16-bit message length.
#[must_use]
pub fn with_nonce(req: &Message, nonce: &str, key: &[u8]) -> Option<Vec<u8>> {
    let mut m = Message::new();
    m.typ = req.typ;
    m.transaction_id = req.transaction_id;
    m.write_header();
    for a in &req.attributes.0 {
        if a.typ == ATTR_MESSAGE_INTEGRITY || a.typ == ATTR_FINGERPRINT {
            break;
        }
        if a.typ == ATTR_NONCE {
            m.add(ATTR_NONCE, nonce.as_bytes());
        } else {
            m.add(a.typ, &a.value);
        }
    }
    // The header's length field is 16 bits: a longer body would be written wrapped.
    let fits = |m: &Message| m.length <= u32::from(u16::MAX);
    if !fits(&m) {
        return None;
    }
    MessageIntegrity(key.to_vec()).add_to(&mut m).ok()?;
    fits(&m).then_some(m.raw)
}

/// A Refresh request with LIFETIME 0 (RFC 8656 section 7.4), signed with `key`.
#[must_use]
pub fn release_request(username: &str, realm: &str, nonce: &str, key: &[u8]) -> Option<Vec<u8>> {
    let mut m = Message::new();
    m.build(&[
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(METHOD_REFRESH, CLASS_REQUEST)),
        Box::new(RawAttr(ATTR_LIFETIME, vec![0; 4])),
        Box::new(TextAttribute::new(ATTR_USERNAME, username.to_owned())),
        Box::new(TextAttribute::new(ATTR_REALM, realm.to_owned())),
        Box::new(TextAttribute::new(ATTR_NONCE, nonce.to_owned())),
        Box::new(MessageIntegrity(key.to_vec())),
    ])
    .ok()?;
    Some(m.raw)
}

struct RawAttr(AttrType, Vec<u8>);

impl Setter for RawAttr {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(self.0, &self.1);
        Ok(())
    }
}

/// The text of attribute `t`, if present and UTF-8.
#[must_use]
pub fn text(m: &Message, t: AttrType) -> Option<String> {
    m.get(t).ok().and_then(|v| String::from_utf8(v).ok())
}

/// The error code of an error response.
#[must_use]
pub fn error_code(m: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    stun::message::Getter::get_from(&mut e, m).ok()?;
    Some(e.code.0)
}

#[cfg(test)]
#[path = "wire_tests.rs"]
mod tests;
