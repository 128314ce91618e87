//! Replays the `config_loader` fuzz corpus and every regression
//! (`fuzz/corpus/config_loader/`, `fuzz/regressions/config_loader/`) through the harness
//! the fuzz target calls, so an input that once crashed stays fixed on stable.

use std::path::{Path, PathBuf};

use switchboard_config::fuzzing::{FAKE_FILE, config_text};
use switchboard_config::{Component, parse};

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
fn every_config_seed_and_regression_passes_the_loader_harness() {
    let inputs = inputs("config_loader");
    assert!(inputs.len() >= 5, "only {} inputs", inputs.len());
    let failed: Vec<String> = inputs
        .iter()
        .filter(|(_, bytes)| std::panic::catch_unwind(|| config_text(bytes)).is_err())
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(failed.is_empty(), "these inputs fail: {failed:#?}");
}

/// The seeds that should be valid are, as the harness parses them: the fuzzer starts from
/// files that pass every validation step, not only from ones refused early.
#[test]
fn the_valid_config_seeds_pass_validation_for_both_components() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/config_loader");
    for name in [
        "switchboard.dev.toml",
        "switchboard.example-inline-secrets.toml",
        "minimal.toml",
        "token-auth-dual-stack.toml",
    ] {
        let text = std::fs::read_to_string(dir.join(name)).expect("seed");
        for component in [Component::Signaling, Component::Relay] {
            if let Err(e) = parse(&text, Some(Path::new(FAKE_FILE)), component, &|_| None) {
                panic!("{name} ({component:?}): {e}");
            }
        }
    }
}

/// The example file's `secrets_file` is a relative path: under the harness's fake folder it
/// is reported as unreadable, never read from the real disk.
#[test]
fn a_relative_secret_file_resolves_under_the_harness_folder_and_is_not_found() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/config_loader");
    let text = std::fs::read_to_string(dir.join("switchboard.example.toml")).expect("seed");
    let e = parse(&text, Some(Path::new(FAKE_FILE)), Component::Relay, &|_| {
        None
    })
    .expect_err("no such file");
    assert_eq!(e.key, "turn.secrets_file");
    assert!(
        e.message
            .contains("/nonexistent-switchboard-fuzz/turn-secrets"),
        "{e}"
    );
}
