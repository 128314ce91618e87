//! The command line an operator meets first: `--check-config`, `--health`, `--help`, `--version`.

use std::process::Command;

use switchboard_tests::bin;

fn example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/switchboard.example.toml")
}

#[test]
fn check_config_accepts_the_example_for_both_binaries() {
    for name in ["switchboard-relay", "switchboard-signaling"] {
        let out = Command::new(bin(name))
            .arg("--check-config")
            .arg(example())
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout.lines().count(),
            1,
            "{name} prints a one-line summary: {stdout}"
        );
        assert!(stdout.contains("ok"), "{stdout}");
    }
}

#[test]
fn check_config_rejects_a_broken_copy_with_exit_2_key_path_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(example()).expect("example");
    let line = text
        .lines()
        .position(|l| l.starts_with("port_range"))
        .expect("example has port_range")
        + 1;
    let broken = text.replace("port_range = [49152, 65535]", "port_range = [65535, 49152]");
    let path = dir.path().join("broken.toml");
    std::fs::write(&path, broken).expect("write");
    std::fs::copy(
        example().with_file_name("turn-secrets"),
        dir.path().join("turn-secrets"),
    )
    .expect("copy secrets");
    for name in ["switchboard-relay", "switchboard-signaling"] {
        let out = Command::new(bin(name))
            .arg("--check-config")
            .arg(&path)
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains("relay.port_range"), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("broken.toml:{line}:")),
            "{name}: {stderr}"
        );
    }
}

#[test]
fn a_broken_file_also_stops_start_up_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[turn]\nsecrets = []\npublic_host = \"x.example\"\n").expect("write");
    let out = Command::new(bin("switchboard-relay"))
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("turn.secrets"));
}

#[test]
fn a_missing_config_file_named_on_the_command_line_is_an_error_not_dev_defaults() {
    let out = Command::new(bin("switchboard-signaling"))
        .args(["--check-config", "/nonexistent/switchboard.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn version_and_help_answer() {
    for name in ["switchboard-relay", "switchboard-signaling"] {
        let out = Command::new(bin(name))
            .arg("--version")
            .output()
            .expect("run");
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).starts_with(name));
        let out = Command::new(bin(name)).arg("--help").output().expect("run");
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            help.contains("--check-config") && help.contains("--config"),
            "{help}"
        );
    }
}

#[test]
fn health_flag_probes_the_running_service_and_fails_once_it_is_gone() {
    use switchboard_tests::{Ports, Service, test_config};
    let ports = Ports::new();
    let config = test_config(&ports, "");
    let mut relay = Service::start("switchboard-relay", &config);
    let mut signaling = Service::start("switchboard-signaling", &config);
    let file = signaling.dir().join("switchboard.toml");
    let probe = |name: &str| {
        Command::new(bin(name))
            .arg("--config")
            .arg(&file)
            .arg("--health")
            .output()
            .expect("run --health")
    };
    for name in ["switchboard-signaling", "switchboard-relay"] {
        let out = probe(name);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("healthy"));
    }
    for svc in [&mut signaling, &mut relay] {
        svc.signal("TERM");
        svc.wait_exit(std::time::Duration::from_secs(15))
            .expect("stops on SIGTERM");
    }
    for name in ["switchboard-signaling", "switchboard-relay"] {
        let out = probe(name);
        assert_eq!(out.status.code(), Some(1), "{name} after stop");
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("unhealthy"),
            "{name}"
        );
    }
}
