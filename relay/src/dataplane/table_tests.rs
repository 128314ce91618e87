//! The worker table's decisions without sockets: `S = ()`, the clock passed in.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::control::tables::PERMISSION_LIFETIME;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn key(client: &str) -> ClientKey {
    ClientKey {
        stream: false,
        local: addr("127.0.0.1:3478"),
        client: addr(client),
    }
}

/// RFC 8656 section 12: ChannelData goes to the bound peer only while the binding lives
/// (600 s); peer datagrams come back on the channel, and as Data indications once it is
/// gone but the permission (refreshed by the bind) still lives.
#[test]
fn a_bound_channel_relays_both_ways_until_it_expires() {
    let t0 = Instant::now();
    let peer = addr("8.8.8.8:5000");
    let mut e = Entry::new((), None, t0);
    assert_eq!(e.channel_to_peer(0x4000, 10, t0), Err(Dropped::NoChannel));
    assert_eq!(e.peer_to_client(peer, 10, t0), Err(Dropped::NoPermission));
    e.bind(0x4000, peer, t0);
    assert_eq!(e.channel_to_peer(0x4000, 10, t0), Ok(peer));
    assert_eq!(e.channel_to_peer(0x4001, 10, t0), Err(Dropped::NoChannel));
    assert_eq!(
        e.peer_to_client(peer, 10, t0),
        Ok(ToClient::Channel(0x4000))
    );
    // Another port of the same IP has the permission but not the channel.
    let other_port = addr("8.8.8.8:5001");
    assert_eq!(
        e.peer_to_client(other_port, 10, t0),
        Ok(ToClient::Indication)
    );
    let late = t0 + CHANNEL_LIFETIME;
    assert_eq!(e.channel_to_peer(0x4000, 10, late), Err(Dropped::NoChannel));
    // The permission (300 s) expired before the channel did.
    assert_eq!(e.peer_to_client(peer, 10, late), Err(Dropped::NoPermission));
}

/// RFC 8656 section 9: a Send indication needs a live permission for the peer's IP, any
/// port; it expires 300 s after the last CreatePermission.
#[test]
fn send_needs_a_live_permission_for_the_peer_ip() {
    let t0 = Instant::now();
    let mut e = Entry::new((), None, t0);
    let peer = addr("9.9.9.9:1000");
    assert_eq!(e.send_to_peer(peer, 4, t0), Err(Dropped::NoPermission));
    e.permit(&[peer.ip()], t0);
    assert_eq!(e.send_to_peer(addr("9.9.9.9:2000"), 4, t0), Ok(()));
    assert_eq!(e.peer_to_client(peer, 4, t0), Ok(ToClient::Indication));
    let later = t0 + PERMISSION_LIFETIME;
    assert_eq!(e.send_to_peer(peer, 4, later), Err(Dropped::NoPermission));
    // A refresh before expiry extends it.
    e.permit(&[peer.ip()], t0 + Duration::from_secs(200));
    assert_eq!(e.send_to_peer(peer, 4, later), Ok(()));
}

/// Rebinding a channel number to another peer (after expiry) leaves no stale reverse
/// entry: the old peer's datagrams go as Data indications, not on the reused number.
#[test]
fn a_rebound_number_forgets_its_old_peer() {
    let t0 = Instant::now();
    let (a, b) = (addr("8.8.4.4:1"), addr("1.1.1.1:2"));
    let mut e = Entry::new((), None, t0);
    e.bind(0x4000, a, t0);
    let later = t0 + CHANNEL_LIFETIME + Duration::from_secs(1);
    e.bind(0x4000, b, later);
    e.permit(&[a.ip()], later);
    assert_eq!(e.channel_of(a, later), None);
    assert_eq!(e.peer_to_client(a, 1, later), Ok(ToClient::Indication));
    assert_eq!(e.peer_to_client(b, 1, later), Ok(ToClient::Channel(0x4000)));
    assert_eq!(e.channels(), 1);
}

/// SPEC section 3.1: one budget per allocation, both directions; a quarter second of burst.
#[test]
fn the_bitrate_budget_covers_both_directions() {
    let t0 = Instant::now();
    let peer = addr("8.8.8.8:5000");
    let mut e = Entry::new((), Some(4000), t0);
    e.bind(0x4000, peer, t0);
    assert_eq!(e.channel_to_peer(0x4000, 1000, t0), Ok(peer));
    assert_eq!(
        e.peer_to_client(peer, 500, t0),
        Ok(ToClient::Channel(0x4000))
    );
    assert_eq!(e.peer_to_client(peer, 100, t0), Err(Dropped::Bitrate));
    assert_eq!(e.channel_to_peer(0x4000, 100, t0), Err(Dropped::Bitrate));
    let t1 = t0 + Duration::from_millis(100);
    assert_eq!(e.channel_to_peer(0x4000, 300, t1), Ok(peer));
    assert_eq!(e.channel_to_peer(0x4000, 300, t1), Err(Dropped::Bitrate));
}

/// Entries are per client key: one client's allocation is invisible to another, to the
/// same address over another transport kind, and on another listener.
#[test]
fn entries_are_found_only_by_their_own_key() {
    let t0 = Instant::now();
    let mut t: Table<u32> = Table::default();
    t.insert(key("198.51.100.1:1000"), Entry::new(1, None, t0));
    t.insert(key("198.51.100.1:1001"), Entry::new(2, None, t0));
    assert_eq!(t.get(&key("198.51.100.1:1000")).map(|e| e.io), Some(1));
    let mut stream = key("198.51.100.1:1000");
    stream.stream = true;
    assert!(t.get(&stream).is_none());
    let mut other_listener = key("198.51.100.1:1000");
    other_listener.local = addr("127.0.0.1:3479");
    assert!(t.get(&other_listener).is_none());
    assert_eq!(t.remove(&key("198.51.100.1:1000")).map(|e| e.io), Some(1));
    assert_eq!(t.len(), 1);
}
