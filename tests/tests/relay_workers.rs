//! The data plane's workers share nothing (issue 14): with `relay.workers = 2`, each UDP
//! listener address has one SO_REUSEPORT socket per worker, and the kernel hashes every
//! client 5-tuple to one of them for good. An allocation served by one worker keeps relaying,
//! every datagram in order, while the other worker's clients allocate, bind, relay and
//! release over and over; the per-worker gauge shows the split throughout.

mod relay_support;

use std::net::SocketAddr;
use std::time::Duration;

use relay_support::{
    RawClient, credential, relay_addr, relay_config, round_trip, sample, scrape, udp_peer,
};
use switchboard_tests::{Ports, Service, TEST_SECRET};

/// Clients kept on the other worker, and how many times each allocates and releases.
const CHURN_CLIENTS: usize = 6;
const CHURN_ROUNDS: usize = 12;
/// Fresh client sockets tried to find [`CHURN_CLIENTS`] on the other worker (each lands
/// there with probability 1/2; 64 tries fail to find 6 with probability below 1e-12).
const MAX_TRIES: usize = 64;
/// Datagrams the peer sends back to back (within the client socket's default buffer).
const PEER_BURST: usize = 64;

fn worker_allocations(ports: &Ports) -> [f64; 2] {
    let text = scrape(ports);
    [0, 1].map(|w| {
        sample(
            &text,
            &format!("switchboard_relay_worker_allocations{{worker=\"{w}\"}}"),
        )
    })
}

/// The worker whose gauge went up by one between `before` and `after`, if exactly one did.
fn landed(before: [f64; 2], after: [f64; 2]) -> Option<usize> {
    match (after[0] - before[0], after[1] - before[1]) {
        (d0, d1) if d0 == 1.0 && d1 == 0.0 => Some(0),
        (d0, d1) if d0 == 0.0 && d1 == 1.0 => Some(1),
        _ => None,
    }
}

#[test]
fn a_workers_allocation_keeps_relaying_while_another_workers_clients_churn() {
    let ports = Ports::new();
    let relay = Service::start(
        "switchboard-relay",
        &relay_config(&ports, &["127.0.0.0/8"], &[], "workers = 2"),
    );
    let server: SocketAddr = relay_addr(&ports);
    assert_eq!(
        worker_allocations(&ports),
        [0.0, 0.0],
        "two workers, no allocations"
    );

    // The steady allocation: a channel to its peer, one round trip to prove it.
    let mut steady = RawClient::new(server, &credential(TEST_SECRET, "steady"));
    let before = worker_allocations(&ports);
    let steady_relayed = steady.allocate().expect("steady allocation");
    let home = landed(before, worker_allocations(&ports)).expect("one worker took it");
    let other = 1 - home;
    let (steady_peer, steady_peer_addr) = udp_peer("127.0.0.1");
    assert_eq!(steady.create_permission(&[steady_peer_addr]), 200);
    assert_eq!(steady.channel_bind(0x4000, steady_peer_addr), 200);
    round_trip(&steady, 0x4000, &steady_peer, steady_relayed, b"steady-0");

    // Client sockets the kernel hashes to the other worker (a 5-tuple keeps its worker).
    let mut churners = Vec::new();
    for i in 0..MAX_TRIES {
        if churners.len() == CHURN_CLIENTS {
            break;
        }
        let mut c = RawClient::new(server, &credential(TEST_SECRET, &format!("churn-{i}")));
        let before = worker_allocations(&ports);
        c.allocate().expect("churn allocation");
        let went = landed(before, worker_allocations(&ports)).expect("one worker took it");
        assert_eq!(c.release(), 200);
        if went == other {
            churners.push(c);
        }
    }
    assert_eq!(
        churners.len(),
        CHURN_CLIENTS,
        "found {CHURN_CLIENTS} clients on worker {other} in {MAX_TRIES} tries"
    );
    assert_eq!(worker_allocations(&ports)[other], 0.0);

    // Churn on the other worker; the steady allocation relays between every step.
    let (churn_peer, churn_peer_addr) = udp_peer("127.0.0.1");
    let mut seq = 1u32;
    // One numbered round trip on the steady allocation.
    let steady_step = |seq: &mut u32| {
        let payload = format!("steady-{seq}");
        round_trip(
            &steady,
            0x4000,
            &steady_peer,
            steady_relayed,
            payload.as_bytes(),
        );
        *seq += 1;
    };
    for round in 0..CHURN_ROUNDS {
        for c in &mut churners {
            let relayed = c.allocate().expect("re-allocation on the other worker");
            assert_eq!(c.create_permission(&[churn_peer_addr]), 200);
            assert_eq!(c.channel_bind(0x4001, churn_peer_addr), 200);
            round_trip(c, 0x4001, &churn_peer, relayed, b"churn");
            steady_step(&mut seq);
        }
        let split = worker_allocations(&ports);
        assert_eq!(
            split[home], 1.0,
            "round {round}: only the steady allocation"
        );
        assert_eq!(
            split[other], CHURN_CLIENTS as f64,
            "round {round}: every churner on worker {other}"
        );
        for c in &mut churners {
            assert_eq!(c.release(), 200);
            steady_step(&mut seq);
        }
        assert_eq!(worker_allocations(&ports), {
            let mut want = [0.0; 2];
            want[home] = 1.0;
            want
        });
    }

    // A burst on the steady channel after the churn: every datagram arrives, in order.
    const BURST: u32 = 200;
    for i in 0..BURST {
        steady.send_channel_data(0x4000, &i.to_be_bytes());
    }
    let mut buf = [0u8; 64];
    for i in 0..BURST {
        let (n, from) = steady_peer
            .recv_from(&mut buf)
            .expect("the peer receives every datagram of the burst");
        assert_eq!(
            (&buf[..n], from),
            (&i.to_be_bytes()[..], steady_relayed),
            "datagram {i} in order"
        );
    }
    // And back: a burst from the peer leaves the relay in segmented (GSO) sends of equal
    // sizes, a shorter datagram in the middle; the client gets each datagram whole, in order.
    let sizes: Vec<usize> = (0..PEER_BURST)
        .map(|i| if i == PEER_BURST / 2 { 8 } else { 32 })
        .collect();
    for (i, &size) in sizes.iter().enumerate() {
        let mut d = vec![0u8; size];
        d[..4].copy_from_slice(&(i as u32).to_be_bytes());
        steady_peer.send_to(&d, steady_relayed).expect("peer send");
    }
    for (i, &size) in sizes.iter().enumerate() {
        let got = steady
            .recv_data(Duration::from_secs(5))
            .unwrap_or_else(|| panic!("peer datagram {i} reaches the client"));
        assert_eq!(got.len(), size, "datagram {i} whole");
        assert_eq!(got[..4], (i as u32).to_be_bytes(), "datagram {i} in order");
    }
    let metrics = scrape(&ports);
    assert!(
        sample(
            &metrics,
            "switchboard_relay_relayed_packets_total{direction=\"client_to_peer\"}"
        ) >= f64::from(BURST),
        "{metrics}"
    );
    assert!(
        sample(
            &metrics,
            "switchboard_relay_relayed_packets_total{direction=\"peer_to_client\"}"
        ) >= PEER_BURST as f64,
        "{metrics}"
    );
    drop(relay);
}
