//! Harness of the fuzz target `config_loader` (in `fuzz/`), a plain function over bytes so
//! that the target is a one-liner and `tests/fuzz_corpus.rs` replays the checked-in corpus
//! and every regression through the same code on stable. Panics when an invariant fails.
//! Not part of the crate's API.

use std::path::Path;

use crate::{Component, ConfigError, parse};

/// Where the fuzzed text pretends to live: relative `*_file` paths resolve under it, and
/// nothing exists there, so no secret file is ever read.
pub const FAKE_FILE: &str = "/nonexistent-switchboard-fuzz/switchboard.toml";

/// Whether some `*_file` key names a path outside [`FAKE_FILE`]'s folder (absolute, or
/// with `..`): such input would read real files (even `/dev/zero`), so it is skipped.
fn reads_real_files(value: &toml::Value) -> bool {
    let escapes = |v: &toml::Value| {
        v.as_str()
            .is_some_and(|p| Path::new(p).is_absolute() || p.contains(".."))
    };
    match value {
        toml::Value::Table(t) => t
            .iter()
            .any(|(k, v)| (k.ends_with("_file") && escapes(v)) || reads_real_files(v)),
        toml::Value::Array(a) => a.iter().any(reads_real_files),
        _ => false,
    }
}

/// Parses and validates arbitrary text for both components with an empty environment:
/// no panic; a valid configuration honours the schema's rules and parses again the same
/// way; an error names a line and column inside the text.
pub fn config_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(table) = text.parse::<toml::Table>()
        && reads_real_files(&toml::Value::Table(table))
    {
        return;
    }
    let file = Path::new(FAKE_FILE);
    for component in [Component::Signaling, Component::Relay] {
        match parse(text, Some(file), component, &|_| None) {
            Ok(cfg) => {
                assert!(!cfg.summary(component).is_empty());
                let _ = cfg.warnings(component);
                assert!(
                    !cfg.turn.secrets.all().is_empty(),
                    "at least one TURN secret"
                );
                let ttl = cfg.turn.credential_ttl;
                assert!(
                    (crate::MIN_CREDENTIAL_TTL..=crate::MAX_CREDENTIAL_TTL).contains(&ttl),
                    "credential_ttl {ttl:?}"
                );
                let ports = cfg.relay.port_range;
                assert!(ports.start > 0 && ports.start <= ports.end, "{ports:?}");
                assert!(!cfg.turn.realm.is_empty());
                let again = parse(text, Some(file), component, &|_| None);
                assert!(again.is_ok(), "parsing is deterministic");
            }
            Err(e) => check_error(text, &e),
        }
    }
}

fn check_error(text: &str, e: &ConfigError) {
    let shown = e.to_string();
    assert!(
        shown.starts_with(FAKE_FILE),
        "the error names the file: {shown}"
    );
    assert!(!e.message.is_empty(), "the error says why: {shown}");
    if let Some(loc) = &e.location {
        let lines = text.split('\n').count();
        assert!(
            loc.line >= 1 && loc.line <= lines,
            "line in the text: {shown}"
        );
        let line = text.split('\n').nth(loc.line - 1).unwrap_or_default();
        assert!(
            loc.column >= 1 && loc.column <= line.chars().count() + 1,
            "column in the line: {shown}"
        );
    }
}
