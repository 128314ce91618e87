//! Replays the fuzz corpus and every regression (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`) through the harness functions the fuzz targets call, so
//! an input that once crashed stays fixed without a nightly toolchain.
//!
//! `SWITCHBOARD_WRITE_SEEDS=1 cargo test -p switchboard-relay --test fuzz_corpus` rewrites
//! the generated seeds after a change to the harness's credentials or messages.

use std::path::{Path, PathBuf};

use switchboard_relay::fuzzing;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file of the target's corpus and regressions, with its path.
fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = fuzz_dir().join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_input = path.is_file()
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| !n.starts_with('.') && n != "README.md");
            if is_input {
                let bytes = std::fs::read(&path).expect("read input");
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

/// Runs every input through `harness`; fails naming each input that panicked.
fn replay(target: &str, min_inputs: usize, harness: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(
        inputs.len() >= min_inputs,
        "{target}: only {} inputs found under {}",
        inputs.len(),
        fuzz_dir().display()
    );
    let failed: Vec<String> = inputs
        .iter()
        .filter(|(_, bytes)| std::panic::catch_unwind(|| harness(bytes)).is_err())
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(
        failed.is_empty(),
        "{target}: these inputs fail: {failed:#?}"
    );
}

/// The generated seeds are checked in as generated (or rewritten with
/// `SWITCHBOARD_WRITE_SEEDS=1`).
fn seeds_are_checked_in(target: &str, seeds: Vec<(&'static str, Vec<u8>)>) {
    let dir = fuzz_dir().join("corpus").join(target);
    let write = std::env::var_os("SWITCHBOARD_WRITE_SEEDS").is_some();
    let mut stale = Vec::new();
    for (name, bytes) in seeds {
        let path = dir.join(format!("gen-{name}"));
        if write {
            std::fs::create_dir_all(&dir).expect("corpus folder");
            std::fs::write(&path, &bytes).expect("write seed");
        } else if std::fs::read(&path).ok().as_deref() != Some(&bytes[..]) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "missing or stale seeds (rerun with SWITCHBOARD_WRITE_SEEDS=1): {stale:#?}"
    );
}

#[test]
fn every_client_packet_seed_and_regression_passes_the_gate_harness() {
    replay("relay_client_packet", 20, fuzzing::client_packet);
}

#[test]
fn every_stream_seed_and_regression_passes_the_framer_harness() {
    replay("stream_framer", 5, fuzzing::stream_framer);
}

#[test]
fn every_stun_seed_and_regression_passes_the_attribute_harness() {
    replay("stun_attributes", 20, fuzzing::stun_attributes);
}

#[test]
fn the_generated_relay_seeds_are_checked_in() {
    let packets = fuzzing::seeds::client_packets();
    seeds_are_checked_in("relay_client_packet", packets.clone());
    seeds_are_checked_in("stun_attributes", packets);
    seeds_are_checked_in("stream_framer", fuzzing::seeds::streams());
}

/// The seeds signed with the harness's credential get past authentication, and the
/// fixture's allocation relays: the fuzzer starts from requests the gate hands to the
/// crate and packets it relays, not only from ones it refuses.
#[test]
fn the_signed_seeds_reach_the_crate_and_the_data_seeds_reach_the_peer() {
    let seeds = fuzzing::seeds::client_packets();
    let seed = |name: &str| {
        seeds
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b.clone())
            .expect("seed")
    };
    let cases = [
        ("binding-request", false, "reply"),
        ("allocate-unauthenticated", false, "reply"),
        ("allocate", false, "to-crate"),
        ("refresh", true, "to-crate"),
        ("create-permission", true, "to-crate"),
        ("create-permission-denied-peer", true, "reply"),
        ("channel-bind", true, "to-crate"),
        ("send-indication", true, "to-peer"),
        ("channel-data", true, "to-peer"),
        ("channel-data", false, "drop"),
    ];
    for (name, with_allocation, want) in cases {
        assert_eq!(
            fuzzing::decision(&seed(name), with_allocation),
            want,
            "{name} (allocation: {with_allocation})"
        );
    }
}
