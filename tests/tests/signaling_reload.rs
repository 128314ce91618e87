//! End-to-end test of SIGHUP on signaling (SPEC sections 4 and 5): the file is re-read and
//! the new TURN secrets, client tokens, admin token and CORS origins apply without a restart;
//! a broken file is refused, the old settings stay and the process lives on.

#[path = "common/signaling.rs"]
mod common;

use std::time::Duration;

use common::{base, http};
use serde_json::json;
use switchboard_config::credentials::verify;
use switchboard_config::unix_now;
use switchboard_tests::{Ports, TEST_SECRET};

const TOKEN_A: &str = "token-a-0123456789abcdef";
const TOKEN_B: &str = "token-b-0123456789abcdef";
const ADMIN_A: &str = "admin-a-0123456789abcdef";
const ADMIN_B: &str = "admin-b-0123456789abcdef";
const NEW_SECRET: &str = "switchboard-rotated-secret-0123456789";
/// Bound on one reload (RELOADING=1 … READY=1).
const RELOAD_TIMEOUT: Duration = Duration::from_secs(20);

fn settings(token: &str, admin: &str) -> String {
    format!("auth = \"token\"\ntokens = [\"{token}\"]\nadmin_token = \"{admin}\"")
}

fn ice_status(ports: &Ports, token: &str) -> u16 {
    let bearer = format!("Bearer {token}");
    http(
        "GET",
        &format!("{}/api/ice-servers", base(ports)),
        &[("authorization", &bearer)],
        None,
    )
    .status
}

#[test]
fn sighup_applies_new_tokens_secrets_admin_token_and_origins_and_a_broken_file_keeps_the_old_ones()
{
    let ports = Ports::new();
    let mut svc = common::start(&ports, &settings(TOKEN_A, ADMIN_A));
    assert_eq!(ice_status(&ports, TOKEN_A), 200);
    assert_eq!(ice_status(&ports, TOKEN_B), 401);

    // Rewrite the file: token B, admin B, a rotated TURN secret (new first, old second), one
    // more origin, and a key that only a restart applies.
    let new = common::config(
        &ports,
        &format!("{}\nmax_peers_per_room = 3", settings(TOKEN_B, ADMIN_B)),
    )
    .replace(
        &format!("secrets = [\"{TEST_SECRET}\"]"),
        &format!("secrets = [\"{NEW_SECRET}\", \"{TEST_SECRET}\"]"),
    )
    .replace(
        "cors_origins = [",
        "cors_origins = [\"https://new.example\", ",
    );
    let file = svc.dir().join("switchboard.toml");
    std::fs::write(&file, new).expect("rewrite config");
    svc.signal("HUP");
    svc.wait_notify("READY=1", RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", svc.logs()));

    assert_eq!(ice_status(&ports, TOKEN_B), 200, "{}", svc.logs());
    assert_eq!(ice_status(&ports, TOKEN_A), 401, "the old token is gone");
    let r = common::drive(
        &svc,
        &ports,
        "auth",
        &json!({"attempts": {"b": {"token": TOKEN_B}, "a": {"token": TOKEN_A}}}),
    );
    assert_eq!(r["b"]["connected"], json!(true), "{r}");
    assert_eq!(
        r["a"],
        json!({"connected": false, "error": "unauthorized"}),
        "{r}"
    );

    // New credentials are signed with the new first secret.
    let bearer = format!("Bearer {TOKEN_B}");
    let b = base(&ports);
    let ice = http(
        "GET",
        &format!("{b}/api/ice-servers"),
        &[("authorization", &bearer)],
        None,
    );
    let (user, pass) = (
        ice.body["username"].as_str().unwrap_or_default(),
        ice.body["password"].as_str().unwrap_or_default(),
    );
    let secret = |s: &str| switchboard_config::SecretString::from(s.to_string());
    assert_eq!(verify(&[secret(NEW_SECRET)], user, pass, unix_now()), Ok(0));
    assert!(verify(&[secret(TEST_SECRET)], user, pass, unix_now()).is_err());

    // The admin token: B is the admin now (404: authorised, no such room), A is not.
    let delete = |admin: &str| {
        let h = format!("Bearer {admin}");
        http(
            "DELETE",
            &format!("{b}/api/rooms/no-such-room"),
            &[("authorization", &h)],
            None,
        )
        .status
    };
    assert_eq!(delete(ADMIN_B), 404);
    assert_eq!(delete(ADMIN_A), 401);

    // CORS: the new origin is allowed.
    let pre = http(
        "OPTIONS",
        &format!("{b}/api/rooms"),
        &[
            ("origin", "https://new.example"),
            ("access-control-request-method", "GET"),
        ],
        None,
    );
    assert_eq!(
        pre.header("access-control-allow-origin"),
        Some("https://new.example"),
        "{pre:?}"
    );
    let logs = svc.logs();
    assert!(logs.contains("Configuration reloaded"), "{logs}");
    assert!(
        logs.contains("need a restart") && logs.contains("signaling.max_peers_per_room"),
        "{logs}"
    );

    // A broken file: refused, the process lives on with B.
    std::fs::write(&file, "[signaling\nthis is not toml").expect("break config");
    svc.signal("HUP");
    svc.wait_notify("READY=1", RELOAD_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", svc.logs()));
    assert_eq!(http("GET", &format!("{b}/health"), &[], None).status, 200);
    assert_eq!(ice_status(&ports, TOKEN_B), 200, "old settings kept");
    assert_eq!(ice_status(&ports, TOKEN_A), 401);
    assert!(svc.logs().contains("Reload refused"), "{}", svc.logs());
    for secret in [TOKEN_A, TOKEN_B, ADMIN_A, ADMIN_B, NEW_SECRET] {
        assert!(!svc.logs().contains(secret), "no secret in the log");
    }
}
