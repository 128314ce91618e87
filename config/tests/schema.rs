//! The configuration schema as an operator meets it: the example loads, and every kind of
//! mistake is reported with the key path and the line it is on.

use std::path::{Path, PathBuf};

use switchboard_config::{
    Advertise, Auth, Component, ConfigError, CorsOrigins, ExposeSecret, Origin, parse,
};

const EXAMPLE: &str = include_str!("../switchboard.example.toml");

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("switchboard.example.toml")
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// A minimal valid file; tests append or replace lines to break it.
const MINIMAL: &str = r#"[turn]
secrets = ["0123456789abcdef-test"]
public_host = "turn.example.com"

[relay]
relay_ip = "127.0.0.1"
"#;

fn err(text: &str) -> ConfigError {
    match parse(
        text,
        Some(Path::new("/etc/switchboard/switchboard.toml")),
        Component::Relay,
        &no_env,
    ) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e,
    }
}

fn line_of(e: &ConfigError) -> usize {
    e.location.as_ref().map_or(0, |l| l.line)
}

#[test]
fn the_example_file_loads_for_both_binaries() {
    for component in [Component::Relay, Component::Signaling] {
        let cfg = switchboard_config::load_file(&example_path(), component, &no_env)
            .unwrap_or_else(|e| panic!("example must load: {e}"));
        assert_eq!(cfg.origin, Origin::File(example_path()));
        assert_eq!(cfg.turn.realm, "switchboard");
        assert_eq!(cfg.turn.public_host, "turn.example.com");
        assert_eq!(cfg.turn.secrets.len(), 1);
        assert_eq!(cfg.turn.credential_ttl.as_secs(), 86_400);
        assert_eq!(cfg.turn.advertise.len(), 4);
        assert_eq!(cfg.signaling.max_peers_per_room, 6);
        assert_eq!(cfg.signaling.max_payload_bytes, 65_536);
        assert_eq!(cfg.relay.port_range.start, 49152);
        assert_eq!(cfg.relay.external_ip.to_string(), "203.0.113.10");
        assert_eq!(
            cfg.signaling.cors_origins,
            CorsOrigins::List(vec!["https://app.example.com".into()])
        );
    }
}

#[test]
fn built_in_development_defaults_are_loopback_only_and_warn() {
    let cfg = switchboard_config::load_development(Component::Relay).expect("dev defaults");
    assert_eq!(cfg.origin, Origin::DevelopmentDefaults);
    assert!(cfg.signaling.listen.ip().is_loopback());
    assert!(cfg.relay.listen_udp.iter().all(|a| a.ip().is_loopback()));
    assert!(cfg.relay.relay_ip.is_loopback());
    let warnings = cfg.warnings(Component::Relay);
    assert!(
        warnings.iter().any(|w| w.contains("DEVELOPMENT")),
        "{warnings:?}"
    );
}

#[test]
fn unknown_key_is_an_error_with_its_path_and_line() {
    let e = err(&MINIMAL.replace("[relay]\n", "[relay]\nlisten_upd = [\"0.0.0.0:3478\"]\n"));
    assert_eq!(e.key, "relay.listen_upd", "{e}");
    assert_eq!(line_of(&e), 6, "{e}");
    assert!(e.message.contains("unknown field"), "{e}");
    assert!(
        e.to_string()
            .starts_with("/etc/switchboard/switchboard.toml:6:"),
        "{e}"
    );
}

#[test]
fn unknown_table_is_an_error() {
    let e = err(&format!("{MINIMAL}\n[relai]\nx = 1\n"));
    assert_eq!(e.key, "relai", "{e}");
    assert_eq!(line_of(&e), 8, "{e}");
}

#[test]
fn bad_cidr_names_the_key_and_line() {
    let e = err(&format!("{MINIMAL}allowed_peers = [\"10.0.0.0/33\"]\n"));
    assert!(e.key.starts_with("relay.allowed_peers"), "{e}");
    assert_eq!(line_of(&e), 7, "{e}");
    assert!(e.message.to_lowercase().contains("invalid"), "{e}");
}

#[test]
fn inverted_port_range_names_the_key_and_line() {
    let e = err(&format!("{MINIMAL}port_range = [60000, 50000]\n"));
    assert_eq!(e.key, "relay.port_range", "{e}");
    assert_eq!(line_of(&e), 7, "{e}");
    assert!(e.message.contains("inverted"), "{e}");
}

#[test]
fn credential_ttl_below_ten_seconds_is_refused_and_ten_seconds_loads() {
    let with_ttl =
        |ttl: &str| MINIMAL.replace("[turn]\n", &format!("[turn]\ncredential_ttl = \"{ttl}\"\n"));
    let e = err(&with_ttl("9s"));
    assert_eq!(e.key, "turn.credential_ttl", "{e}");
    assert!(e.message.contains("10 seconds"), "{e}");
    let cfg = parse(&with_ttl("10s"), None, Component::Signaling, &no_env)
        .unwrap_or_else(|e| panic!("10 s is the minimum and loads: {e}"));
    assert_eq!(
        cfg.turn.credential_ttl,
        switchboard_config::MIN_CREDENTIAL_TTL
    );
    assert_eq!(err(&with_ttl("31d")).key, "turn.credential_ttl");
}

#[test]
fn empty_secrets_names_the_key_and_line() {
    let e = err(&MINIMAL.replace("secrets = [\"0123456789abcdef-test\"]", "secrets = []"));
    assert_eq!(e.key, "turn.secrets", "{e}");
    assert_eq!(line_of(&e), 2, "{e}");
    let e = err(&MINIMAL.replace("0123456789abcdef-test", ""));
    assert_eq!(e.key, "turn.secrets", "{e}");
    assert_eq!(line_of(&e), 2, "{e}");
}

#[test]
fn unparsable_address_names_the_key_and_line() {
    let e = err(&format!(
        "{MINIMAL}\n[signaling]\nlisten = \"localhost:eighty\"\n"
    ));
    assert_eq!(e.key, "signaling.listen", "{e}");
    assert_eq!(line_of(&e), 9, "{e}");
    assert!(e.message.contains("address"), "{e}");
}

#[test]
fn missing_secret_file_names_the_key_and_line() {
    let text = MINIMAL.replace(
        "secrets = [\"0123456789abcdef-test\"]",
        "secrets_file = \"/nonexistent/turn-secrets\"",
    );
    let e = err(&text);
    assert_eq!(e.key, "turn.secrets_file", "{e}");
    assert_eq!(line_of(&e), 2, "{e}");
    assert!(e.message.contains("/nonexistent/turn-secrets"), "{e}");
}

#[test]
fn syntax_error_reports_line_and_column() {
    let e = err("[turn\nsecrets = 1\n");
    assert_eq!(line_of(&e), 1, "{e}");
    assert!(e.location.is_some());
}

#[test]
fn wrong_type_names_the_key() {
    let e = err(&format!("{MINIMAL}max_allocations = \"lots\"\n"));
    assert_eq!(e.key, "relay.max_allocations", "{e}");
    assert_eq!(line_of(&e), 7, "{e}");
}

#[test]
fn secret_file_is_read_relative_to_the_config_and_keeps_rotation_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("turn-secrets"),
        "# rotated 2026-11\nnew-secret-0123456789\n\nold-secret-0123456789\n",
    )
    .expect("write");
    let text = MINIMAL.replace(
        "secrets = [\"0123456789abcdef-test\"]",
        "secrets_file = \"turn-secrets\"",
    );
    let path = dir.path().join("switchboard.toml");
    let cfg = parse(&text, Some(&path), Component::Relay, &no_env).expect("loads");
    let got: Vec<&str> = cfg
        .turn
        .secrets
        .all()
        .iter()
        .map(|s| s.expose_secret())
        .collect();
    assert_eq!(got, ["new-secret-0123456789", "old-secret-0123456789"]);
    assert_eq!(
        cfg.turn.secrets.signing().expose_secret(),
        "new-secret-0123456789"
    );
}

#[test]
fn credentials_directory_is_expanded_for_systemd() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("turn-secrets"),
        "from-systemd-credential-dir\n",
    )
    .expect("write");
    let text = MINIMAL.replace(
        "secrets = [\"0123456789abcdef-test\"]",
        "secrets_file = \"$CREDENTIALS_DIRECTORY/turn-secrets\"",
    );
    let dir_s = dir.path().to_string_lossy().to_string();
    let env = move |k: &str| (k == "CREDENTIALS_DIRECTORY").then(|| dir_s.clone());
    let cfg = parse(
        &text,
        Some(Path::new("/etc/x.toml")),
        Component::Relay,
        &env,
    )
    .expect("loads");
    assert_eq!(
        cfg.turn.secrets.signing().expose_secret(),
        "from-systemd-credential-dir"
    );
}

#[test]
fn secrets_can_come_from_the_environment() {
    let text = MINIMAL.replace("secrets = [\"0123456789abcdef-test\"]\n", "");
    let env = |k: &str| {
        (k == "SWITCHBOARD_TURN_SECRETS")
            .then(|| "a-0123456789abcdef,b-0123456789abcdef".to_string())
    };
    let cfg = parse(&text, None, Component::Relay, &env).expect("loads");
    assert_eq!(cfg.turn.secrets.len(), 2);
    // And without any source it is an error naming all three.
    let e = err(&text);
    assert_eq!(e.key, "turn.secrets");
    assert!(e.message.contains("SWITCHBOARD_TURN_SECRETS"), "{e}");
}

#[test]
fn inline_and_file_secret_together_is_an_error() {
    let e = err(&MINIMAL.replace("[relay]", "secrets_file = \"x\"\n[relay]"));
    assert_eq!(e.key, "turn.secrets");
}

#[test]
fn star_cors_must_stand_alone_and_origins_need_a_scheme() {
    let e = err(&format!(
        "{MINIMAL}\n[signaling]\ncors_origins = [\"*\", \"https://a.example\"]\n"
    ));
    assert_eq!(e.key, "signaling.cors_origins");
    let e = err(&format!(
        "{MINIMAL}\n[signaling]\ncors_origins = [\"a.example\"]\n"
    ));
    assert_eq!(e.key, "signaling.cors_origins");
    assert_eq!(line_of(&e), 9, "{e}");
}

#[test]
fn tls_listener_without_certificate_is_an_error() {
    let e = err(&format!("{MINIMAL}listen_tls = [\"0.0.0.0:5349\"]\n"));
    assert_eq!(e.key, "relay.listen_tls");
    assert_eq!(line_of(&e), 7, "{e}");
}

#[test]
fn wildcard_relay_ip_needs_external_ip_for_the_relay_only() {
    let text = MINIMAL.replace("relay_ip = \"127.0.0.1\"", "relay_ip = \"0.0.0.0\"");
    let e = err(&text);
    assert_eq!(e.key, "relay.external_ip");
    parse(&text, None, Component::Signaling, &no_env).expect("signaling does not need it");
}

#[test]
fn auth_modes_need_their_secrets_and_only_signaling_reads_them() {
    let jwt =
        format!("{MINIMAL}\n[signaling]\nauth = \"jwt\"\njwt_secret_file = \"/nonexistent/jwt\"\n");
    let e = parse(&jwt, None, Component::Signaling, &no_env).expect_err("missing jwt file");
    assert_eq!(e.key, "signaling.jwt_secret_file");
    // The relay's systemd unit does not get the JWT secret, and must not need it.
    parse(&jwt, None, Component::Relay, &no_env).expect("relay ignores signaling secrets");

    let token = format!("{MINIMAL}\n[signaling]\nauth = \"token\"\n");
    let e = parse(&token, None, Component::Signaling, &no_env).expect_err("no tokens");
    assert_eq!(e.key, "signaling.auth");
    let with = format!("{MINIMAL}\n[signaling]\nauth = \"token\"\ntokens = [\"t1\", \"t2\"]\n");
    let cfg = parse(&with, None, Component::Signaling, &no_env).expect("tokens");
    assert!(matches!(cfg.signaling.auth, Auth::Token(ref t) if t.len() == 2));

    let forgot = format!("{MINIMAL}\n[signaling]\ntokens = [\"t1\"]\n");
    let e = parse(&forgot, None, Component::Signaling, &no_env).expect_err("auth none + tokens");
    assert_eq!(e.key, "signaling.auth");
}

#[test]
fn advertise_rejects_unknown_kinds() {
    let e = err(&MINIMAL.replace("public_host", "advertise = [\"turn-sctp\"]\npublic_host"));
    assert_eq!(e.key, "turn.advertise[0]", "{e}");
    assert_eq!(line_of(&e), 3, "{e}");
    let ok = parse(
        &MINIMAL.replace("public_host", "advertise = [\"turns\"]\npublic_host"),
        None,
        Component::Relay,
        &no_env,
    )
    .expect("valid");
    assert_eq!(ok.turn.advertise, [Advertise::Turns]);
}

/// Every key the schema accepts is documented in the example file, so the two cannot drift.
/// The schema's key list is read from serde's own "expected one of" message.
#[test]
fn the_example_documents_every_key_of_the_schema() {
    for (table, prefix) in [
        ("", ""),
        ("[turn]\n", "turn."),
        ("[signaling]\n", "signaling."),
        ("[signaling.peerjs]\n", "signaling.peerjs."),
        ("[[turn.relays]]\n", "turn.relays."),
        ("[relay]\n", "relay."),
    ] {
        let probe = format!("{table}zz_not_a_key = 1\n");
        let e = parse(&probe, None, Component::Relay, &no_env).expect_err("unknown key");
        let expected = e
            .message
            .split_once("expected one of")
            .or_else(|| e.message.split_once("expected"))
            .map(|(_, list)| list.to_string())
            .unwrap_or_else(|| panic!("serde lists fields: {e}"));
        let keys: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
        assert!(!keys.is_empty(), "{e}");
        for key in keys {
            let is_table = EXAMPLE.contains(&format!("[{prefix}{key}]"));
            let line_form = EXAMPLE
                .lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} = ")));
            assert!(
                is_table || line_form,
                "key `{prefix}{key}` is not documented in the example"
            );
        }
    }
}

/// The README's configuration reference names every key of the example file.
#[test]
fn the_readme_reference_names_every_key_of_the_example() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md at the workspace root");
    let mut table = String::new();
    for line in EXAMPLE.lines() {
        let l = line.trim();
        // `# [[turn.relays]]`: an array of tables, shown commented out.
        if let Some(name) = l
            .trim_start_matches("# ")
            .strip_prefix("[[")
            .and_then(|r| r.strip_suffix("]]"))
        {
            table = format!("{name}.");
            continue;
        }
        if let Some(name) = l.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = format!("{name}.");
            continue;
        }
        let l = l.trim_start_matches("# ");
        let Some((key, _)) = l.split_once(" = ") else {
            continue;
        };
        if !key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        let path = format!("{table}{key}");
        assert!(
            readme.contains(&format!("`{path}`")),
            "README.md reference lacks `{path}`"
        );
    }
}

#[test]
fn new_keys_of_this_round_have_their_spec_defaults() {
    let cfg = parse(MINIMAL, None, Component::Relay, &no_env).expect("minimal");
    let s = &cfg.signaling;
    assert_eq!(s.max_connections_per_ip, 256);
    assert_eq!(s.max_persistent_rooms, 1000);
    assert_eq!(s.persistent_room_idle.as_secs(), 24 * 3600);
    assert_eq!(s.metrics_listen.to_string(), "127.0.0.1:9642");
    assert_eq!(s.redis_prefix, "switchboard");
    assert_eq!(s.peerjs.alive_timeout.as_secs(), 60);
    assert_eq!(s.peerjs.expire_timeout.as_secs(), 5);
    assert_eq!(s.peerjs.concurrent_limit, 5000);
    assert!(!s.peerjs.allow_discovery);
    let r = &cfg.relay;
    assert_eq!(r.max_permissions_per_allocation, 64);
    assert_eq!(r.max_stream_connections_per_ip, 64);
    assert!(!r.strict_expiry);
    assert_eq!(r.drain_timeout.as_secs(), 2 * 3600);
    assert!(r.alternate_server.is_none() && r.relay_ip6.is_none() && r.admin_token.is_none());
    assert!(cfg.turn.relays.is_empty());
}

#[test]
fn relay_entries_ipv6_addresses_and_limits_are_validated_with_their_key() {
    let bad_health = MINIMAL.replace(
        "[relay]",
        "[[turn.relays]]\nuris = [\"turn:r2.example.com:3478\"]\nhealth = \"r2:9641\"\n\n[relay]",
    );
    assert_eq!(err(&bad_health).key, "turn.relays.health");
    let ok = parse(
        &bad_health.replace("\"r2:9641\"", "\"http://10.0.0.2:9641/ready\""),
        None,
        Component::Relay,
        &no_env,
    )
    .expect("valid relay entry");
    assert_eq!(ok.turn.relays.len(), 1);
    let no_uri = MINIMAL.replace("[relay]", "[[turn.relays]]\nuris = []\n\n[relay]");
    assert_eq!(err(&no_uri).key, "turn.relays.uris");

    let v4_as_v6 = format!("{MINIMAL}relay_ip6 = \"127.0.0.1\"\n");
    assert_eq!(err(&v4_as_v6).key, "relay.relay_ip6");
    let wildcard6 = format!("{MINIMAL}relay_ip6 = \"::\"\n");
    assert_eq!(err(&wildcard6).key, "relay.external_ip6");
    let dual = parse(
        &format!("{MINIMAL}relay_ip6 = \"::1\"\n"),
        None,
        Component::Relay,
        &no_env,
    )
    .expect("dual stack");
    assert_eq!(dual.relay.external_ip6, dual.relay.relay_ip6);

    let perms = format!("{MINIMAL}max_permissions_per_allocation = 0\n");
    assert_eq!(err(&perms).key, "relay.max_permissions_per_allocation");
    let per_ip = format!("{MINIMAL}max_stream_connections_per_ip = 0\n");
    assert_eq!(err(&per_ip).key, "relay.max_stream_connections_per_ip");
    let prefix = format!("{MINIMAL}\n[signaling]\nredis_prefix = \"a b\"\n");
    assert_eq!(err(&prefix).key, "signaling.redis_prefix");
    let aud = format!("{MINIMAL}\n[signaling]\njwt_audience = \"x\"\n");
    assert_eq!(err(&aud).key, "signaling.jwt_audience");
}

#[test]
fn the_relay_admin_token_and_redis_url_come_from_their_own_component() {
    let text = format!(
        "{MINIMAL}admin_token = \"relay-admin\"\n\n[signaling]\nredis_url = \"redis://127.0.0.1:6379\"\n"
    );
    let relay = parse(&text, None, Component::Relay, &no_env).expect("relay");
    assert_eq!(
        relay
            .relay
            .admin_token
            .as_ref()
            .map(|t| t.expose_secret().to_string()),
        Some("relay-admin".into())
    );
    assert!(
        relay.signaling.redis_url.is_none(),
        "the relay never reads signaling secrets"
    );
    let sig = parse(&text, None, Component::Signaling, &no_env).expect("signaling");
    assert!(sig.relay.admin_token.is_none());
    assert!(sig.signaling.redis_url.is_some());
    let bad = format!("{MINIMAL}\n[signaling]\nredis_url = \"http://x\"\n");
    let e = parse(&bad, None, Component::Signaling, &no_env).expect_err("bad scheme");
    assert_eq!(e.key, "signaling.redis_url");
}
