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
        encode_data_indication(peer, b"hello", [9; 12], &mut out);
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
    encode_channel_data(0x4001, b"abc", &mut out);
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
