//! Tests of the wire helpers against the `stun`/`turn` crates' own codecs.

use stun::message::Getter;
use turn::proto::chandata::ChannelData;
use turn::proto::data::Data;
use turn::proto::peeraddr::PeerAddress;

use super::*;

fn decode(raw: &[u8]) -> Message {
    parse(raw).expect("valid STUN")
}

/// RFC 8656 section 11.4: a Data indication carries XOR-PEER-ADDRESS and DATA.
#[test]
fn our_data_indication_decodes_with_the_crates_codec() {
    for peer in ["198.51.100.1:5000", "[2001:db8::1]:6000"] {
        let peer: SocketAddr = peer.parse().expect("addr");
        let mut out = Vec::new();
        encode_data_indication(peer, b"hello", [9; 12], &mut out).expect("fits");
        let m = decode(&out);
        let mut pa = PeerAddress::default();
        pa.get_from(&m).expect("peer");
        assert_eq!(SocketAddr::new(pa.ip, pa.port), peer);
        let mut d = Data::default();
        d.get_from(&m).expect("data");
        assert_eq!(d.0, b"hello");
        assert_eq!(peer_addresses(&m), Some(vec![peer]));
    }
}

/// RFC 8656 section 12.4: channel number, length, payload.
#[test]
fn our_channel_data_decodes_with_the_crates_codec() {
    let mut out = Vec::new();
    encode_channel_data(0x4001, b"abc", &mut out).expect("fits");
    let mut c = ChannelData {
        raw: out.clone(),
        ..Default::default()
    };
    c.decode().expect("decode");
    assert_eq!(c.number.0, 0x4001);
    assert_eq!(c.data, b"abc");
    assert_eq!(channel_data(&out), Some((0x4001, 4, 3)));
    assert_eq!(channel_data(&out[..5]), None, "truncated");
}

#[test]
fn a_rewritten_nonce_keeps_the_request_verifiable_with_the_same_key() {
    let key = vec![1u8; 16];
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(
            stun::message::METHOD_ALLOCATE,
            stun::message::CLASS_REQUEST,
        )),
        Box::new(TextAttribute::new(ATTR_NONCE, "ours".into())),
        Box::new(MessageIntegrity(key.clone())),
        Box::new(FINGERPRINT),
    ];
    let mut m = Message::new();
    m.build(&setters).expect("build");
    let rewritten = with_nonce(&decode(&m.raw), "theirs", &key).expect("rewrite");
    let mut r = decode(&rewritten);
    assert_eq!(text(&r, ATTR_NONCE).as_deref(), Some("theirs"));
    MessageIntegrity(key).check(&mut r).expect("integrity");
}

#[test]
fn error_responses_carry_code_nonce_and_realm() {
    let req = decode(&binding_success(
        &Message::new(),
        "127.0.0.1:1".parse().expect("addr"),
    ));
    let r = decode(&error_response(&req, 401, Some(("n1", "realm")), None));
    assert_eq!(error_code(&r), Some(401));
    assert_eq!(text(&r, ATTR_NONCE).as_deref(), Some("n1"));
    assert_eq!(text(&r, ATTR_REALM).as_deref(), Some("realm"));
}

/// RFC 8489 section 5: the message length is 16 bits and counts every attribute with its
/// padding. The largest UDP payload over IPv6 (65,527 bytes) does not fit a Data indication
/// (which adds 28 bytes of attribute headers and the payload's padding): it is refused rather than sent with
/// a wrapped length; the largest that fits still encodes exactly.
#[test]
fn a_data_indication_that_would_wrap_its_length_is_refused() {
    let v6: SocketAddr = "[2001:db8::1]:5000".parse().expect("addr");
    let v4: SocketAddr = "198.51.100.1:5000".parse().expect("addr");
    let mut out = Vec::new();
    let big = vec![7u8; 65_527];
    assert_eq!(
        encode_data_indication(v6, &big, [1; 12], &mut out),
        Err(TooLarge(65_527))
    );
    // Body = 24 (XOR-PEER-ADDRESS, IPv6) + 4 (DATA header) + payload + padding, a multiple
    // of 4 up to 65,532: 65,504 fits exactly, one more does not.
    let fits = vec![7u8; 65_504];
    encode_data_indication(v6, &fits, [1; 12], &mut out).expect("fits exactly");
    assert_eq!(out.len(), 20 + 65_532);
    let mut d = Data::default();
    d.get_from(&decode(&out)).expect("data");
    assert_eq!(d.0.len(), 65_504);
    assert!(encode_data_indication(v6, &vec![0u8; 65_505], [1; 12], &mut out).is_err());
    // IPv4: 12 bytes of XOR-PEER-ADDRESS, so 65,516 is the largest aligned payload.
    encode_data_indication(v4, &vec![0u8; 65_516], [1; 12], &mut out).expect("fits");
    assert!(encode_data_indication(v4, &vec![0u8; 65_517], [1; 12], &mut out).is_err());
}

/// RFC 8656 section 12.4: a 16-bit length; nothing larger is ever encoded.
#[test]
fn a_channel_data_payload_over_64_kib_is_refused() {
    let mut out = Vec::new();
    assert_eq!(
        encode_channel_data(0x4000, &vec![0u8; 65_536], &mut out),
        Err(TooLarge(65_536))
    );
    encode_channel_data(0x4000, &vec![0u8; 65_535], &mut out).expect("fits");
    assert_eq!(channel_data(&out), Some((0x4000, 4, 65_535)));
}

/// RFC 8489 section 14.5: attributes after MESSAGE-INTEGRITY are ignored. The parsed
/// message keeps only what the integrity covers (FINGERPRINT and anything else after it are
/// cut), and it still verifies with the same key.
#[test]
fn attributes_after_message_integrity_are_cut_off_and_the_rest_still_verifies() {
    let key = vec![5u8; 16];
    let tid = TransactionId::new();
    let peer = |ip: &str| PeerAddress {
        ip: ip.parse().expect("ip"),
        port: 9,
    };
    let mut m = Message::new();
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(tid),
        Box::new(MessageType::new(
            stun::message::METHOD_CREATE_PERMISSION,
            CLASS_REQUEST,
        )),
        Box::new(peer("8.8.8.8")),
        Box::new(TextAttribute::new(ATTR_USERNAME, "u".into())),
        Box::new(MessageIntegrity(key.clone())),
    ];
    m.build(&setters).expect("build");
    peer("10.0.0.1")
        .add_to(&mut m)
        .expect("appended after integrity");
    TextAttribute::new(ATTR_USERNAME, "someone-else".into())
        .add_to(&mut m)
        .expect("appended");
    FINGERPRINT.add_to(&mut m).expect("fingerprint");
    assert_eq!(decode(&m.raw).attributes.0.len(), 6, "all six on the wire");

    let mut cut = parse_client(&m.raw).expect("parses");
    let types: Vec<AttrType> = cut.attributes.0.iter().map(|a| a.typ).collect();
    assert_eq!(
        types,
        vec![ATTR_XOR_PEER_ADDRESS, ATTR_USERNAME, ATTR_MESSAGE_INTEGRITY]
    );
    assert_eq!(
        peer_addresses(&cut),
        Some(vec!["8.8.8.8:9".parse().expect("addr")])
    );
    assert_eq!(text(&cut, ATTR_USERNAME).as_deref(), Some("u"));
    MessageIntegrity(key)
        .check(&mut cut)
        .expect("still verifies");
    // A message ending with MESSAGE-INTEGRITY, or without one, is unchanged.
    let plain = binding_success(&Message::new(), "127.0.0.1:1".parse().expect("addr"));
    assert_eq!(parse_client(&plain).map(|m| m.raw), Some(plain));
}

#[test]
fn value_bounds_point_at_the_attribute_value_in_the_raw_bytes() {
    let mut out = Vec::new();
    let peer: SocketAddr = "198.51.100.1:5000".parse().expect("addr");
    encode_data_indication(peer, b"payload", [2; 12], &mut out).expect("fits");
    let m = decode(&out);
    let (start, len) = value_bounds(&m, stun::attributes::ATTR_DATA).expect("DATA");
    assert_eq!(&out[start..start + len], b"payload");
}
