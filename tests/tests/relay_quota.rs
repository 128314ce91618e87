//! Quotas (RFC 8656 section 7.2 step 7: 486 Allocation Quota Reached), the metrics an
//! operator scrapes from `metrics_listen`, `/health`, and graceful shutdown (SPEC
//! section 5).

mod relay_support;

use std::time::Duration;

use relay_support::{RawClient, credential, relay_addr, relay_config, sample, scrape};
use switchboard_tests::{Ports, Service, TEST_SECRET};

#[test]
fn the_n_plus_first_allocation_of_a_user_gets_486_and_metrics_count_it_all() {
    let ports = Ports::new();
    let relay = Service::start(
        "switchboard-relay",
        &relay_config(&ports, &[], &[], "max_allocations_per_user = 2"),
    );
    let server = relay_addr(&ports);
    let mut alice: Vec<RawClient> = (0..3)
        .map(|_| RawClient::new(server, &credential(TEST_SECRET, "alice")))
        .collect();
    assert!(alice[0].allocate().is_ok());
    assert!(alice[1].allocate().is_ok());
    assert_eq!(alice[2].allocate(), Err(486), "third allocation of alice");
    // Another user is not affected.
    let mut bob = RawClient::new(server, &credential(TEST_SECRET, "bob"));
    assert!(bob.allocate().is_ok());
    // Freeing one of alice's allocations gives the slot back (RFC 8656 section 7.4).
    assert_eq!(alice[0].release(), 200);
    let mut again = RawClient::new(server, &credential(TEST_SECRET, "alice"));
    assert!(again.allocate().is_ok(), "alice allocates after a release");

    // An expired credential and a denied peer, for the counters below.
    let expired = switchboard_config::credentials::mint(
        &secrecy::SecretString::from(TEST_SECRET.to_string()),
        "eve",
        Duration::from_secs(1),
        relay_support::now_unix() - 100,
    );
    assert_eq!(RawClient::new(server, &expired).allocate(), Err(401));
    assert_eq!(
        bob.create_permission(&["10.0.0.1:80".parse().expect("addr")]),
        403
    );

    let m = scrape(&ports);
    assert_eq!(sample(&m, "switchboard_relay_allocations"), 3.0, "{m}");
    assert_eq!(
        sample(&m, "switchboard_relay_allocations_created_total"),
        4.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "switchboard_relay_quota_rejections_total{scope=\"user\"}"
        ),
        1.0,
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            "switchboard_relay_auth_failures_total{reason=\"expired\"}"
        ),
        1.0,
        "{m}"
    );
    assert!(
        sample(
            &m,
            "switchboard_relay_auth_failures_total{reason=\"missing\"}"
        ) >= 6.0
    );
    assert_eq!(
        sample(
            &m,
            "switchboard_relay_denied_peers_total{request=\"create_permission\"}"
        ),
        1.0,
        "{m}"
    );
    assert!(
        !m.contains("alice") && !m.contains("bob"),
        "no per-user labels"
    );
    drop(relay);
}

#[test]
fn health_answers_and_sigterm_stops_with_exit_0_after_stopping() {
    let ports = Ports::new();
    let mut relay = Service::start("switchboard-relay", &relay_config(&ports, &[], &[], ""));
    let url = format!("http://127.0.0.1:{}/health", ports.metrics);
    let mut resp = ureq::get(&url).call().expect("GET /health");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.body_mut().read_to_string().expect("body").trim(), "ok");
    let mut c = RawClient::new(relay_addr(&ports), &credential(TEST_SECRET, "c"));
    c.allocate().expect("allocate");
    relay.signal("TERM");
    relay
        .wait_notify("STOPPING=1", Duration::from_secs(10))
        .expect("STOPPING=1");
    let status = relay
        .wait_exit(Duration::from_secs(10))
        .expect("exit in time");
    assert!(status.success(), "{status}");
}
