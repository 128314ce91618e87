//! A minimal STUN/TURN message codec (RFC 8489, RFC 8656): the requests the load tool sends
//! and the responses it reads. Written here rather than taken from the `stun` crate because
//! that crate is the codec of the relay under test: a load tool sharing it with the server
//! could not catch its bugs, and coturn is a target too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;

type HmacSha1 = Hmac<Sha1>;

/// RFC 8489 section 5.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
pub const HEADER_LEN: usize = 20;
const INTEGRITY_LEN: usize = 20;

/// Methods (RFC 8489 section 18.2, RFC 8656 section 17).
pub const METHOD_BINDING: u16 = 0x001;
pub const METHOD_ALLOCATE: u16 = 0x003;
pub const METHOD_REFRESH: u16 = 0x004;
pub const METHOD_CREATE_PERMISSION: u16 = 0x008;
pub const METHOD_CHANNEL_BIND: u16 = 0x009;

/// Attributes (RFC 8489 section 18.3, RFC 8656 section 18).
pub const ATTR_USERNAME: u16 = 0x0006;
pub const ATTR_MESSAGE_INTEGRITY: u16 = 0x0008;
pub const ATTR_ERROR_CODE: u16 = 0x0009;
pub const ATTR_CHANNEL_NUMBER: u16 = 0x000C;
pub const ATTR_LIFETIME: u16 = 0x000D;
pub const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
pub const ATTR_REALM: u16 = 0x0014;
pub const ATTR_NONCE: u16 = 0x0015;
pub const ATTR_XOR_RELAYED_ADDRESS: u16 = 0x0016;
pub const ATTR_REQUESTED_TRANSPORT: u16 = 0x0019;
pub const ATTR_XOR_MAPPED_ADDRESS: u16 = 0x0020;
pub const ATTR_SOFTWARE: u16 = 0x8022;

/// REQUESTED-TRANSPORT value for UDP (RFC 8656 section 18.7: the IANA protocol number).
pub const TRANSPORT_UDP: u8 = 17;

/// The class of a message (RFC 8489 section 5: the C1 and C0 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// Why bytes are not a STUN message we can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("shorter than a STUN header")]
    Short,
    #[error("not a STUN message (top bits or magic cookie)")]
    NotStun,
    #[error("length field disagrees with the datagram")]
    BadLength,
    #[error("attribute runs past the end of the message")]
    BadAttribute,
    #[error("no MESSAGE-INTEGRITY attribute")]
    NoIntegrity,
    #[error("MESSAGE-INTEGRITY does not match")]
    IntegrityMismatch,
}

/// The 16-bit message type of `method` and `class` (RFC 8489 section 5, figure 3: the
/// class bits C0 and C1 sit at bits 4 and 8, between the method's bits).
#[must_use]
pub fn message_type(method: u16, class: Class) -> u16 {
    let c: u16 = match class {
        Class::Request => 0b00,
        Class::Indication => 0b01,
        Class::Success => 0b10,
        Class::Error => 0b11,
    };
    (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((c & 1) << 4)
        | ((c & 2) << 7)
}

fn split_type(t: u16) -> (u16, Class) {
    let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let class = match ((t >> 4) & 1) | ((t >> 7) & 2) {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    (method, class)
}

/// Short-term credential key: the password (RFC 8489 section 9.1.1; SASLprep left to the
/// caller, whose passwords are ASCII).
#[must_use]
pub fn short_term_key(password: &str) -> Vec<u8> {
    password.as_bytes().to_vec()
}

/// Long-term credential key: MD5(username ":" realm ":" password) (RFC 8489 section 9.2.2).
#[must_use]
pub fn long_term_key(username: &str, realm: &str, password: &str) -> Vec<u8> {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().to_vec()
}

/// Builds one message: header, then attributes in the order added, each padded to 4 bytes.
#[derive(Debug)]
pub struct MessageBuilder {
    buf: Vec<u8>,
    txid: [u8; 12],
}

impl MessageBuilder {
    #[must_use]
    pub fn new(method: u16, class: Class, txid: [u8; 12]) -> Self {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&message_type(method, class).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&txid);
        Self { buf, txid }
    }

    /// Appends an attribute, padded with zeros to a multiple of 4 (RFC 8489 section 14).
    /// Values longer than a u16 length can hold are the caller's bug; they are truncated.
    pub fn attr(&mut self, typ: u16, value: &[u8]) -> &mut Self {
        let len = u16::try_from(value.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&typ.to_be_bytes());
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(&value[..usize::from(len)]);
        let pad = (4 - usize::from(len) % 4) % 4;
        self.buf.extend(std::iter::repeat_n(0, pad));
        self
    }

    pub fn u32_attr(&mut self, typ: u16, value: u32) -> &mut Self {
        self.attr(typ, &value.to_be_bytes())
    }

    /// An XOR-*-ADDRESS attribute (RFC 8489 section 14.2).
    pub fn xor_address(&mut self, typ: u16, addr: SocketAddr) -> &mut Self {
        let value = xor_address_value(addr, &self.txid);
        self.attr(typ, &value)
    }

    /// The message, its length field set.
    #[must_use]
    pub fn finish(mut self) -> Vec<u8> {
        self.set_len(self.buf.len() - HEADER_LEN);
        self.buf
    }

    /// The message with MESSAGE-INTEGRITY last: HMAC-SHA1 over the message up to the
    /// attribute, with the length field already counting it (RFC 8489 section 14.5).
    #[must_use]
    pub fn finish_with_integrity(mut self, key: &[u8]) -> Vec<u8> {
        self.set_len(self.buf.len() - HEADER_LEN + 4 + INTEGRITY_LEN);
        let mac = hmac_sha1(key, &self.buf);
        self.attr(ATTR_MESSAGE_INTEGRITY, &mac);
        self.buf
    }

    fn set_len(&mut self, len: usize) {
        let len = u16::try_from(len).unwrap_or(u16::MAX);
        self.buf[2..4].copy_from_slice(&len.to_be_bytes());
    }
}

fn hmac_sha1(key: &[u8], data: &[u8]) -> [u8; INTEGRITY_LEN] {
    // new_from_slice never fails for HMAC: any key length is valid.
    let mut mac = <HmacSha1 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn xor_address_value(addr: SocketAddr, txid: &[u8; 12]) -> Vec<u8> {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let mut v = vec![0u8];
    match addr.ip() {
        IpAddr::V4(ip) => {
            v.push(0x01);
            v.extend_from_slice(&port.to_be_bytes());
            v.extend(ip.octets().iter().zip(cookie).map(|(a, b)| a ^ b));
        }
        IpAddr::V6(ip) => {
            v.push(0x02);
            v.extend_from_slice(&port.to_be_bytes());
            let key: Vec<u8> = cookie.iter().chain(txid.iter()).copied().collect();
            v.extend(ip.octets().iter().zip(key).map(|(a, b)| a ^ b));
        }
    }
    v
}

/// A parsed message borrowing its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    raw: &'a [u8],
    pub method: u16,
    pub class: Class,
    pub txid: [u8; 12],
}

/// One attribute: its type, value (unpadded) and offset of its header in the message.
#[derive(Debug, Clone, Copy)]
pub struct Attr<'a> {
    pub typ: u16,
    pub value: &'a [u8],
    offset: usize,
}

impl<'a> Message<'a> {
    /// Parses a whole message: header checks (RFC 8489 section 6.3: top two bits zero, magic
    /// cookie, length a multiple of 4 that matches the bytes) and attribute bounds.
    pub fn parse(raw: &'a [u8]) -> Result<Self, StunError> {
        if raw.len() < HEADER_LEN {
            return Err(StunError::Short);
        }
        let typ = u16::from_be_bytes([raw[0], raw[1]]);
        let cookie = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]);
        if typ >> 14 != 0 || cookie != MAGIC_COOKIE {
            return Err(StunError::NotStun);
        }
        let len = usize::from(u16::from_be_bytes([raw[2], raw[3]]));
        if len % 4 != 0 || HEADER_LEN + len != raw.len() {
            return Err(StunError::BadLength);
        }
        let mut txid = [0u8; 12];
        txid.copy_from_slice(&raw[8..20]);
        let (method, class) = split_type(typ);
        let msg = Self {
            raw,
            method,
            class,
            txid,
        };
        for attr in msg.attrs() {
            attr?;
        }
        Ok(msg)
    }

    /// Every attribute in order, including those after MESSAGE-INTEGRITY.
    pub fn attrs(&self) -> impl Iterator<Item = Result<Attr<'a>, StunError>> + 'a {
        let raw = self.raw;
        let mut at = HEADER_LEN;
        std::iter::from_fn(move || {
            if at >= raw.len() {
                return None;
            }
            if at + 4 > raw.len() {
                at = raw.len();
                return Some(Err(StunError::BadAttribute));
            }
            let typ = u16::from_be_bytes([raw[at], raw[at + 1]]);
            let len = usize::from(u16::from_be_bytes([raw[at + 2], raw[at + 3]]));
            let start = at + 4;
            let end = start + len;
            if end > raw.len() {
                at = raw.len();
                return Some(Err(StunError::BadAttribute));
            }
            let attr = Attr {
                typ,
                value: &raw[start..end],
                offset: at,
            };
            at = start + len.div_ceil(4) * 4;
            Some(Ok(attr))
        })
    }

    /// The first attribute of type `typ` before MESSAGE-INTEGRITY: attributes after it are
    /// ignored (RFC 8489 section 14.5).
    #[must_use]
    pub fn get(&self, typ: u16) -> Option<&'a [u8]> {
        for attr in self.attrs() {
            let attr = attr.ok()?;
            if attr.typ == typ {
                return Some(attr.value);
            }
            if attr.typ == ATTR_MESSAGE_INTEGRITY {
                return None;
            }
        }
        None
    }

    #[must_use]
    pub fn text(&self, typ: u16) -> Option<&'a str> {
        self.get(typ).and_then(|v| std::str::from_utf8(v).ok())
    }

    #[must_use]
    pub fn u32_attr(&self, typ: u16) -> Option<u32> {
        let v = self.get(typ)?;
        Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
    }

    /// ERROR-CODE as a number, e.g. 401 (RFC 8489 section 14.8: class × 100 + number).
    #[must_use]
    pub fn error_code(&self) -> Option<u16> {
        let v = self.get(ATTR_ERROR_CODE)?;
        let class = u16::from(*v.get(2)? & 0x07);
        let number = u16::from(*v.get(3)?);
        Some(class * 100 + number)
    }

    /// An XOR-*-ADDRESS attribute decoded (RFC 8489 section 14.2).
    #[must_use]
    pub fn xor_address(&self, typ: u16) -> Option<SocketAddr> {
        let v = self.get(typ)?;
        let family = *v.get(1)?;
        let port = u16::from_be_bytes([*v.get(2)?, *v.get(3)?]) ^ (MAGIC_COOKIE >> 16) as u16;
        let cookie = MAGIC_COOKIE.to_be_bytes();
        match family {
            0x01 => {
                let b = v.get(4..8)?;
                let ip = Ipv4Addr::new(
                    b[0] ^ cookie[0],
                    b[1] ^ cookie[1],
                    b[2] ^ cookie[2],
                    b[3] ^ cookie[3],
                );
                Some(SocketAddr::new(ip.into(), port))
            }
            0x02 => {
                let b = v.get(4..20)?;
                let mut o = [0u8; 16];
                for (i, k) in cookie.iter().chain(self.txid.iter()).enumerate() {
                    o[i] = b[i] ^ k;
                }
                Some(SocketAddr::new(Ipv6Addr::from(o).into(), port))
            }
            _ => None,
        }
    }

    /// Checks MESSAGE-INTEGRITY with `key`: HMAC-SHA1 over the message up to the attribute,
    /// the length field adjusted to end just after it (RFC 8489 section 14.5), so that a
    /// FINGERPRINT after it does not count.
    pub fn check_integrity(&self, key: &[u8]) -> Result<(), StunError> {
        let attr = self
            .attrs()
            .filter_map(Result::ok)
            .find(|a| a.typ == ATTR_MESSAGE_INTEGRITY)
            .ok_or(StunError::NoIntegrity)?;
        if attr.value.len() != INTEGRITY_LEN {
            return Err(StunError::IntegrityMismatch);
        }
        let mut covered = self.raw[..attr.offset].to_vec();
        let len = u16::try_from(attr.offset - HEADER_LEN + 4 + INTEGRITY_LEN)
            .map_err(|_| StunError::BadLength)?;
        covered[2..4].copy_from_slice(&len.to_be_bytes());
        let mut mac = <HmacSha1 as Mac>::new_from_slice(key).map_err(|_| StunError::NoIntegrity)?;
        mac.update(&covered);
        mac.verify_slice(attr.value)
            .map_err(|_| StunError::IntegrityMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .map(|c| match c {
                b'0'..=b'9' => c - b'0',
                b'a'..=b'f' => c - b'a' + 10,
                _ => c - b'A' + 10,
            })
            .collect();
        digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
    }

    // RFC 5769 section 2.1: sample request (short-term credentials).
    const RFC5769_REQUEST: &str = "
        00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
        00 24 00 04 6e 00 01 ff 80 29 00 08 93 2f f9 b1 51 26 3b 36
        00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
        00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
        80 28 00 04 e5 7a 3b cf";

    // RFC 5769 section 2.2: sample IPv4 response.
    const RFC5769_IPV4_RESPONSE: &str = "
        01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 08 00 01 a1 47 e1 12 a6 43
        00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
        80 28 00 04 c0 7d 4c 96";

    // RFC 5769 section 2.3: sample IPv6 response.
    const RFC5769_IPV6_RESPONSE: &str = "
        01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
        80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
        00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
        00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
        80 28 00 04 c8 fb 0b 4c";

    // RFC 5769 section 2.4: sample request with long-term authentication.
    const RFC5769_LONG_TERM: &str = "
        00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
        00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
        00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46
                    53 54 76 79 36 34 73 41
        00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
        00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66";

    const RFC5769_PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";

    #[test]
    fn the_rfc5769_sample_request_verifies_with_its_short_term_password() {
        let raw = hex(RFC5769_REQUEST);
        let m = Message::parse(&raw).expect("RFC 5769 section 2.1 parses");
        assert_eq!((m.method, m.class), (METHOD_BINDING, Class::Request));
        assert_eq!(m.text(ATTR_USERNAME), Some("evtj:h6vY"));
        assert_eq!(m.check_integrity(&short_term_key(RFC5769_PASSWORD)), Ok(()));
        assert_eq!(
            m.check_integrity(&short_term_key("wrong")),
            Err(StunError::IntegrityMismatch)
        );
    }

    #[test]
    fn the_rfc5769_ipv4_response_yields_its_mapped_address_and_verifies() {
        let raw = hex(RFC5769_IPV4_RESPONSE);
        let m = Message::parse(&raw).expect("RFC 5769 section 2.2 parses");
        assert_eq!((m.method, m.class), (METHOD_BINDING, Class::Success));
        assert_eq!(
            m.xor_address(ATTR_XOR_MAPPED_ADDRESS),
            Some("192.0.2.1:32853".parse().expect("addr"))
        );
        assert_eq!(m.text(ATTR_SOFTWARE), Some("test vector"));
        assert_eq!(m.check_integrity(&short_term_key(RFC5769_PASSWORD)), Ok(()));
    }

    #[test]
    fn the_rfc5769_ipv6_response_yields_its_mapped_address_and_verifies() {
        let raw = hex(RFC5769_IPV6_RESPONSE);
        let m = Message::parse(&raw).expect("RFC 5769 section 2.3 parses");
        assert_eq!(
            m.xor_address(ATTR_XOR_MAPPED_ADDRESS),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .expect("addr")
            )
        );
        assert_eq!(m.check_integrity(&short_term_key(RFC5769_PASSWORD)), Ok(()));
    }

    #[test]
    fn the_rfc5769_long_term_request_verifies_with_md5_of_user_realm_password() {
        // RFC 5769 section 2.4; the password after SASLprep is "TheMatrIX".
        let raw = hex(RFC5769_LONG_TERM);
        let m = Message::parse(&raw).expect("RFC 5769 section 2.4 parses");
        let user = m.text(ATTR_USERNAME).expect("username");
        assert_eq!(user, "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}");
        assert_eq!(m.text(ATTR_REALM), Some("example.org"));
        assert_eq!(m.text(ATTR_NONCE), Some("f//499k954d6OL34oL9FSTvy64sA"));
        let key = long_term_key(user, "example.org", "TheMatrIX");
        assert_eq!(m.check_integrity(&key), Ok(()));
    }

    #[test]
    fn a_built_request_carries_integrity_the_parser_accepts_and_a_flipped_bit_breaks() {
        let key = long_term_key("1:u", "realm", "pw");
        let mut b = MessageBuilder::new(METHOD_ALLOCATE, Class::Request, [7; 12]);
        b.attr(ATTR_REQUESTED_TRANSPORT, &[TRANSPORT_UDP, 0, 0, 0])
            .attr(ATTR_USERNAME, b"1:u")
            .attr(ATTR_REALM, b"realm");
        let mut raw = b.finish_with_integrity(&key);
        let m = Message::parse(&raw).expect("own message parses");
        assert_eq!((m.method, m.class), (METHOD_ALLOCATE, Class::Request));
        assert_eq!(m.check_integrity(&key), Ok(()));
        raw[26] ^= 1;
        let m = Message::parse(&raw).expect("still well-formed");
        assert_eq!(m.check_integrity(&key), Err(StunError::IntegrityMismatch));
    }

    #[test]
    fn xor_addresses_round_trip_for_both_families() {
        // RFC 8489 section 14.2: IPv4 XORed with the cookie, IPv6 with cookie + transaction id.
        for addr in ["127.0.0.1:49152", "[2001:db8::7]:3478"] {
            let addr: SocketAddr = addr.parse().expect("addr");
            let mut b = MessageBuilder::new(METHOD_CHANNEL_BIND, Class::Request, [3; 12]);
            b.xor_address(ATTR_XOR_PEER_ADDRESS, addr);
            let raw = b.finish();
            let m = Message::parse(&raw).expect("parses");
            assert_eq!(m.xor_address(ATTR_XOR_PEER_ADDRESS), Some(addr));
        }
    }

    #[test]
    fn the_message_type_interleaves_class_bits_as_rfc8489_figure_3_shows() {
        assert_eq!(message_type(METHOD_BINDING, Class::Request), 0x0001);
        assert_eq!(message_type(METHOD_BINDING, Class::Success), 0x0101);
        assert_eq!(message_type(METHOD_ALLOCATE, Class::Error), 0x0113);
        assert_eq!(message_type(METHOD_CHANNEL_BIND, Class::Success), 0x0109);
        assert_eq!(split_type(0x0113), (METHOD_ALLOCATE, Class::Error));
    }

    #[test]
    fn an_error_response_yields_its_code_and_nonce() {
        let mut b = MessageBuilder::new(METHOD_ALLOCATE, Class::Error, [1; 12]);
        b.attr(
            ATTR_ERROR_CODE,
            &[0, 0, 4, 38, b'S', b't', b'a', b'l', b'e'],
        )
        .attr(ATTR_NONCE, b"abc");
        let raw = b.finish();
        let m = Message::parse(&raw).expect("parses");
        assert_eq!(m.error_code(), Some(438));
        assert_eq!(m.text(ATTR_NONCE), Some("abc"));
    }

    #[test]
    fn truncated_or_foreign_bytes_are_refused_not_panicked_on() {
        let raw = hex(RFC5769_IPV4_RESPONSE);
        assert_eq!(Message::parse(&raw[..10]).err(), Some(StunError::Short));
        assert_eq!(Message::parse(&raw[..40]).err(), Some(StunError::BadLength));
        let mut bad = raw.clone();
        bad[4] = 0;
        assert_eq!(Message::parse(&bad).err(), Some(StunError::NotStun));
        // An attribute length that runs past the end (RFC 8489 section 14).
        let mut bad = raw.clone();
        bad[22] = 0xFF;
        assert_eq!(Message::parse(&bad).err(), Some(StunError::BadAttribute));
    }

    #[test]
    fn attributes_after_message_integrity_are_ignored() {
        // RFC 8489 section 14.5: only FINGERPRINT may follow, and nothing after MI is used.
        let mut b = MessageBuilder::new(METHOD_REFRESH, Class::Success, [2; 12]);
        b.attr(ATTR_SOFTWARE, b"x");
        let mut raw = b.finish_with_integrity(b"k");
        raw.extend_from_slice(&[0x00, 0x0D, 0x00, 0x04, 0, 0, 0, 9]);
        let len = u16::try_from(raw.len() - HEADER_LEN).expect("len");
        raw[2..4].copy_from_slice(&len.to_be_bytes());
        let m = Message::parse(&raw).expect("parses");
        assert_eq!(m.u32_attr(ATTR_LIFETIME), None);
        assert_eq!(m.check_integrity(b"k"), Ok(()));
    }
}
