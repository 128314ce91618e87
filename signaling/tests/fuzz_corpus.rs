//! Replays the `signaling_event` fuzz corpus and every regression
//! (`fuzz/corpus/signaling_event/`, `fuzz/regressions/signaling_event/`) through the
//! harness the fuzz target calls, so an input that once crashed stays fixed on stable.

use std::path::{Path, PathBuf};

use serde_json::json;
use switchboard_signaling::fuzzing;
use switchboard_signaling::protocol::ErrorCode;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        for path in entries.flatten().map(|e| e.path()) {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(".");
            if path.is_file() && !name.starts_with('.') && name != "README.md" {
                let bytes = std::fs::read(&path).expect("read input");
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_signaling_event_seed_and_regression_passes_the_decoder_harness() {
    let inputs = inputs("signaling_event");
    assert!(inputs.len() >= 20, "only {} inputs", inputs.len());
    let failed: Vec<String> = inputs
        .iter()
        .filter(|(_, bytes)| std::panic::catch_unwind(|| fuzzing::event(bytes)).is_err())
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "these inputs fail: {failed:#?}");
}

/// The harness drives the checks the server runs before acting: the JS tests' payloads are
/// accepted, and the malformed ones they send are refused with the codes they expect.
#[test]
fn the_decoder_accepts_the_clients_payloads_and_refuses_malformed_ones_with_bad_request() {
    let decode = |name: &str, payload: serde_json::Value| {
        let bytes = serde_json::to_vec(&payload).expect("json");
        fuzzing::decode(name, &bytes, fuzzing::MAX_PAYLOAD).map_err(|r| r.code)
    };
    assert!(
        decode(
            "join-room",
            json!({"roomId": "events", "displayName": "Ann"})
        )
        .is_ok()
    );
    assert!(decode("ice-candidate", json!({"targetId": "b", "candidate": null})).is_ok());
    assert!(decode("signal", json!({"to": "b", "data": 1})).is_ok());
    for (name, payload) in [
        ("join-room", json!({"roomId": 42})),
        ("join-room", json!({"roomId": "no spaces/allowed"})),
        ("offer", json!("just a string")),
        ("offer", json!({"targetId": "b"})),
        ("update-state", json!({"roomId": "r", "state": 3})),
        ("hack-the-planet", json!({"x": 1})),
    ] {
        assert_eq!(
            decode(name, payload).err(),
            Some(ErrorCode::BadRequest),
            "{name}"
        );
    }
    let big = vec![b'x'; fuzzing::MAX_PAYLOAD + 1];
    assert_eq!(
        fuzzing::decode("message", &big, fuzzing::MAX_PAYLOAD)
            .map_err(|r| r.code)
            .err(),
        Some(ErrorCode::PayloadTooLarge)
    );
}
