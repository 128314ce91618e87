//! The shipped systemd units are valid (`systemd-analyze verify`, with the binaries at the
//! paths the units name through a temporary install prefix) and locked down
//! (`systemd-analyze security` exposure at most 4.0, "OK").

use std::path::{Path, PathBuf};
use std::process::Command;

use switchboard_tests::{bin, require_tool};

const UNITS: [&str; 2] = ["switchboard-relay.service", "switchboard-signaling.service"];

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd")
}

/// Copies the units into a temp dir with `/usr/local/bin/` rewritten to a prefix that holds
/// the freshly built binaries.
fn installed_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = dir.path().join("bin");
    std::fs::create_dir_all(&prefix).expect("prefix");
    for name in ["switchboard-relay", "switchboard-signaling"] {
        std::fs::copy(bin(name), prefix.join(name)).expect("install binary");
    }
    for unit in UNITS {
        let text = std::fs::read_to_string(units_dir().join(unit)).expect("unit");
        assert!(
            text.contains("ExecStart=/usr/local/bin/"),
            "{unit} names /usr/local/bin"
        );
        let text = text.replace("/usr/local/bin/", &format!("{}/", prefix.display()));
        std::fs::write(dir.path().join(unit), text).expect("write unit");
    }
    dir
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let tool = require_tool("systemd-analyze");
    let dir = installed_copy();
    let out = Command::new(tool)
        .arg("verify")
        .args(UNITS.iter().map(|u| dir.path().join(u)))
        .output()
        .expect("run systemd-analyze");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn units_have_an_exposure_score_of_ok_or_better() {
    let tool = require_tool("systemd-analyze");
    let dir = installed_copy();
    for unit in UNITS {
        let out = Command::new(&tool)
            .args(["security", "--offline=true", "--no-pager"])
            .arg(dir.path().join(unit))
            .output()
            .expect("run systemd-analyze security");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or_else(|| panic!("no score for {unit}: {text}"));
        let score: f64 = line
            .split(':')
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("unparsable score line: {line}"));
        assert!(score <= 4.0, "{unit}: exposure {score} > 4.0 ({line})");
    }
}

#[test]
fn units_use_the_hardening_the_spec_requires() {
    for unit in UNITS {
        let text = std::fs::read_to_string(units_dir().join(unit)).expect("unit");
        for needle in [
            "Type=notify",
            "DynamicUser=yes",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=yes",
            "PrivateTmp=yes",
            "RestrictAddressFamilies=",
            "SystemCallFilter=@system-service",
            "AmbientCapabilities=CAP_NET_BIND_SERVICE",
            "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
            "LoadCredential=turn-secrets:",
            "Restart=on-failure",
            "LimitNOFILE=",
        ] {
            assert!(text.contains(needle), "{unit} lacks {needle}");
        }
    }
    for unit in UNITS {
        let text = std::fs::read_to_string(units_dir().join(unit)).expect("unit");
        assert!(
            text.contains("ExecReload=/bin/kill -HUP $MAINPID"),
            "{unit}: `systemctl reload` sends SIGHUP"
        );
    }
}
