//! The data plane's wire decisions without sockets.

use std::net::SocketAddr;
use std::time::Instant;

use stun::agent::TransactionId;
use stun::message::{CLASS_INDICATION, MessageType, Setter};
use turn::proto::data::Data;
use turn::proto::peeraddr::PeerAddress;

use super::*;
use crate::dataplane::table::Entry;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn key() -> ClientKey {
    ClientKey {
        stream: false,
        local: addr("127.0.0.1:3478"),
        client: addr("198.51.100.1:4000"),
    }
}

fn send_indication(peer: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut m = Message::new();
    let setters: Vec<Box<dyn Setter>> = vec![
        Box::new(TransactionId::new()),
        Box::new(MessageType::new(METHOD_SEND, CLASS_INDICATION)),
        Box::new(PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        }),
        Box::new(Data(data.to_vec())),
    ];
    m.build(&setters).expect("build");
    m.raw
}

fn channel_data(number: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = number.to_be_bytes().to_vec();
    p.extend_from_slice(&u16::try_from(payload.len()).expect("len").to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// ChannelData on a bound channel and a Send indication to a permitted, allowed peer are
/// relayed with the payload's exact bounds; without an allocation, channel, permission or
/// policy they are not; requests go to the control plane.
#[test]
fn client_packets_are_relayed_only_on_live_state() {
    let t0 = Instant::now();
    let peer = addr("8.8.8.8:9000");
    let mut table: Table<()> = Table::default();
    let cd = channel_data(0x4000, b"hello");
    let send = send_indication(peer, b"world!");
    let allowed = |_| true;
    assert!(matches!(
        decide(&mut table, &key(), &cd, t0, allowed),
        Decision::Dropped(Dropped::NoAllocation)
    ));
    table.insert(key(), Entry::new((), None, t0));
    assert!(matches!(
        decide(&mut table, &key(), &cd, t0, allowed),
        Decision::Dropped(Dropped::NoChannel)
    ));
    assert!(matches!(
        decide(&mut table, &key(), &send, t0, allowed),
        Decision::Dropped(Dropped::NoPermission)
    ));
    table.get_mut(&key()).expect("entry").bind(0x4000, peer, t0);
    match decide(&mut table, &key(), &cd, t0, allowed) {
        Decision::ToPeer {
            peer: p,
            start,
            len,
            ..
        } => {
            assert_eq!(p, peer);
            assert_eq!(&cd[start..start + len], b"hello");
        }
        other => panic!("{other:?}"),
    }
    match decide(&mut table, &key(), &send, t0, allowed) {
        Decision::ToPeer {
            peer: p,
            start,
            len,
            ..
        } => {
            assert_eq!(p, peer);
            assert_eq!(&send[start..start + len], b"world!");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decide(&mut table, &key(), &send, t0, |_| false),
        Decision::Denied
    ));
    let binding = [
        0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];
    assert!(matches!(
        decide(&mut table, &key(), &binding, t0, allowed),
        Decision::Control(_)
    ));
    assert!(matches!(
        decide(&mut table, &key(), b"GET / HTTP/1.1\r\n", t0, allowed),
        Decision::Ignore
    ));
    // A ChannelData header longer than the packet is not relayed.
    let mut short = channel_data(0x4000, b"hello");
    short.truncate(6);
    assert!(matches!(
        decide(&mut table, &key(), &short, t0, allowed),
        Decision::Ignore
    ));
}

/// The in-place framing gives the same bytes as the copying encoders of `wire`.
#[test]
fn framing_in_place_matches_the_reference_encoders() {
    for payload in [&b""[..], b"a", b"abcd", b"abcdefg", &[7u8; 1201][..]] {
        let mut buf = vec![0xEEu8; HEADROOM + payload.len() + TAILROOM];
        buf[HEADROOM..HEADROOM + payload.len()].copy_from_slice(payload);
        let r = frame_channel_data(&mut buf, payload.len(), 0x4abc).expect("fits");
        let mut reference = Vec::new();
        wire::encode_channel_data(0x4abc, payload, &mut reference).expect("fits");
        assert_eq!(&buf[r], &reference[..]);
        for peer in [addr("203.0.113.9:4242"), addr("[2001:db8::7]:99")] {
            let mut buf = vec![0xEEu8; HEADROOM + payload.len() + TAILROOM];
            buf[HEADROOM..HEADROOM + payload.len()].copy_from_slice(payload);
            let tid = [9u8; 12];
            let r = frame_data_indication(&mut buf, payload.len(), peer, tid).expect("fits");
            let mut reference = Vec::new();
            wire::encode_data_indication(peer, payload, tid, &mut reference).expect("fits");
            assert_eq!(&buf[r], &reference[..], "{peer}, {} bytes", payload.len());
        }
    }
}

/// A payload the 16-bit length cannot describe is refused, never wrapped.
#[test]
fn oversized_payloads_are_refused() {
    let len = 65_520;
    let mut buf = vec![0u8; HEADROOM + len + TAILROOM];
    assert!(frame_data_indication(&mut buf, len, addr("8.8.8.8:1"), [0; 12]).is_err());
    let len = 65_536;
    let mut buf = vec![0u8; HEADROOM + len + TAILROOM];
    assert!(frame_channel_data(&mut buf, len, 0x4000).is_err());
}
