//! End-to-end tests of signaling authentication (`auth = "token"` and `"jwt"`) for the
//! Socket.IO handshake and REST.

#[path = "common/signaling.rs"]
mod common;

use common::{base, http};
use serde_json::json;
use switchboard_tests::Ports;

const TOKEN: &str = "client-token-abcdef0123456789";
const JWT_SECRET: &str = "jwt-test-secret-abcdef0123456789";

#[test]
fn with_token_auth_a_bad_or_missing_token_fails_the_handshake_and_the_subject_is_the_turn_user() {
    let ports = Ports::new();
    let svc = common::start(&ports, &format!("auth = \"token\"\ntokens = [\"{TOKEN}\"]"));
    let r = common::drive(
        &svc,
        &ports,
        "auth",
        &json!({"attempts": {"good": {"token": TOKEN}, "wrong": {"token": "nope"}, "none": null}}),
    );
    assert_eq!(
        r["wrong"],
        json!({"connected": false, "error": "unauthorized"}),
        "{r}"
    );
    assert_eq!(
        r["none"],
        json!({"connected": false, "error": "unauthorized"}),
        "{r}"
    );
    assert_eq!(r["good"]["connected"], json!(true), "{r}");
    let ack = &r["good"]["ack"];
    assert_eq!(ack["ok"], json!(true), "{r}");
    let user = ack["self"]["userId"].as_str().unwrap_or_default();
    assert!(
        user.starts_with("tok-"),
        "the token decides the user, not the client: {user}"
    );
    assert!(!user.contains(TOKEN));
    let turn_user = ack["iceServers"][1]["username"]
        .as_str()
        .unwrap_or_default();
    assert!(turn_user.ends_with(&format!(":{user}")), "{turn_user}");

    // REST: the same tokens as bearer tokens.
    let b = base(&ports);
    let none = http("GET", &format!("{b}/api/ice-servers"), &[], None);
    assert_eq!(none.status, 401);
    assert_eq!(none.body["error"]["code"], "unauthorized");
    let wrong = http(
        "GET",
        &format!("{b}/api/rooms"),
        &[("authorization", "Bearer nope")],
        None,
    );
    assert_eq!(wrong.status, 401);
    let bearer = format!("Bearer {TOKEN}");
    let good = http(
        "GET",
        &format!("{b}/api/ice-servers?username=mallory"),
        &[("authorization", &bearer)],
        None,
    );
    assert_eq!(good.status, 200);
    let name = good.body["username"].as_str().unwrap_or_default();
    assert!(
        name.ends_with(&format!(":{user}")),
        "subject wins over ?username: {name}"
    );
    assert_eq!(http("GET", &format!("{b}/health"), &[], None).status, 200);
    assert!(
        !svc.logs().contains(TOKEN),
        "the token never reaches the log"
    );
}

#[test]
fn with_jwt_auth_only_a_valid_unexpired_token_connects_and_sub_is_the_turn_user() {
    let ports = Ports::new();
    let svc = common::start(
        &ports,
        &format!("auth = \"jwt\"\njwt_secret = \"{JWT_SECRET}\""),
    );
    let r = common::drive(&svc, &ports, "jwtAuth", &json!({"secret": JWT_SECRET}));
    assert_eq!(r["good"]["connected"], json!(true), "{r}");
    assert_eq!(r["good"]["ack"]["self"]["userId"], "carol");
    let turn_user = r["good"]["ack"]["iceServers"][1]["username"]
        .as_str()
        .unwrap_or_default();
    assert!(turn_user.ends_with(":carol"), "{turn_user}");
    for bad in ["forged", "expired", "none"] {
        assert_eq!(
            r[bad],
            json!({"connected": false, "error": "unauthorized"}),
            "{bad}: {r}"
        );
    }
    assert_eq!(r["restGood"]["status"], json!(200));
    assert!(
        r["restGood"]["body"]["username"]
            .as_str()
            .unwrap_or_default()
            .ends_with(":carol")
    );
    assert_eq!(r["restForged"]["status"], json!(401));
}

/// Each named claim set on the handshake and as a REST bearer: `(connected, REST status)`.
fn jwt_outcomes(extra: &str, claims: &serde_json::Value) -> serde_json::Value {
    let ports = Ports::new();
    let svc = common::start(
        &ports,
        &format!("auth = \"jwt\"\njwt_secret = \"{JWT_SECRET}\"\n{extra}"),
    );
    let r = common::drive(
        &svc,
        &ports,
        "jwtClaims",
        &json!({"secret": JWT_SECRET, "claims": claims}),
    );
    let mut out = serde_json::Map::new();
    for (name, v) in r.as_object().into_iter().flatten() {
        out.insert(name.clone(), json!([v["socket"]["connected"], v["rest"]]));
        if v["socket"]["connected"] == json!(false) {
            assert_eq!(v["socket"]["error"], "unauthorized", "{name}: {r}");
        }
    }
    serde_json::Value::Object(out)
}

#[test]
fn a_jwt_that_is_not_yet_valid_is_refused_on_connect_and_rest() {
    let r = jwt_outcomes(
        "",
        &json!({
            "early": {"sub": "dave", "exp": ["NOW", 600], "nbf": ["NOW", 600]},
            "started": {"sub": "dave", "exp": ["NOW", 600], "nbf": ["NOW", -60]},
            "anyAud": {"sub": "dave", "exp": ["NOW", 600], "aud": "whatever"},
        }),
    );
    assert_eq!(r["early"], json!([false, 401]), "{r}");
    assert_eq!(r["started"], json!([true, 200]), "{r}");
    assert_eq!(
        r["anyAud"],
        json!([true, 200]),
        "without jwt_audience, aud is not checked: {r}"
    );
}

#[test]
fn with_jwt_audience_and_issuer_set_only_matching_tokens_are_accepted() {
    let r = jwt_outcomes(
        "jwt_audience = \"switchboard-app\"\njwt_issuer = \"https://idp.example\"",
        &json!({
            "right": {"sub": "erin", "exp": ["NOW", 600], "aud": "switchboard-app", "iss": "https://idp.example"},
            "rightInList": {"sub": "erin", "exp": ["NOW", 600], "aud": ["x", "switchboard-app"], "iss": "https://idp.example"},
            "wrongAud": {"sub": "erin", "exp": ["NOW", 600], "aud": "other-app", "iss": "https://idp.example"},
            "noAud": {"sub": "erin", "exp": ["NOW", 600], "iss": "https://idp.example"},
            "wrongIss": {"sub": "erin", "exp": ["NOW", 600], "aud": "switchboard-app", "iss": "https://evil.example"},
            "noIss": {"sub": "erin", "exp": ["NOW", 600], "aud": "switchboard-app"},
        }),
    );
    assert_eq!(r["right"], json!([true, 200]), "{r}");
    assert_eq!(r["rightInList"], json!([true, 200]), "{r}");
    for bad in ["wrongAud", "noAud", "wrongIss", "noIss"] {
        assert_eq!(r[bad], json!([false, 401]), "{bad}: {r}");
    }
}

#[test]
fn a_browser_handshake_from_an_unlisted_origin_is_refused() {
    let ports = Ports::new();
    let svc = common::start(&ports, "");
    let good = format!("http://127.0.0.1:{}", ports.signaling);
    let r = common::drive(
        &svc,
        &ports,
        "auth",
        &json!({
            "attempts": {"listed": null, "evilWs": null, "evilPolling": null, "noOrigin": null},
            "headers": {"listed": {"origin": good}, "evilWs": {"origin": "https://evil.example"},
                        "evilPolling": {"origin": "https://evil.example"}},
            "transports": {"evilPolling": "polling"}
        }),
    );
    assert_eq!(r["listed"]["connected"], json!(true), "{r}");
    assert_eq!(r["noOrigin"]["connected"], json!(true), "{r}");
    for evil in ["evilWs", "evilPolling"] {
        assert_eq!(
            r[evil],
            json!({"connected": false, "error": "origin not allowed"}),
            "{evil}: {r}"
        );
    }
}

/// The user id part of a TURN REST username (`expiry:user`).
fn turn_user(username: &serde_json::Value) -> String {
    let name = username.as_str().unwrap_or_default();
    name.split_once(':')
        .map(|(_, u)| u)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn with_auth_off_clients_claiming_the_same_user_id_get_distinct_server_chosen_turn_users() {
    // The relay counts allocations per TURN user id: if the client's word chose it, anyone
    // could spend a named user's quota. Both clients join claiming `userId: "spoofed"`.
    let ports = Ports::new();
    let svc = common::start(&ports, "");
    let r = common::drive(
        &svc,
        &ports,
        "auth",
        &json!({"attempts": {"first": null, "second": null}}),
    );
    let mut seen = Vec::new();
    for who in ["first", "second"] {
        let ack = &r[who]["ack"];
        assert_eq!(ack["ok"], json!(true), "{r}");
        let user = turn_user(&ack["iceServers"][1]["username"]);
        assert!(
            !user.is_empty() && !user.contains("spoofed"),
            "{who}: {user}"
        );
        seen.push(user);
    }
    assert_ne!(seen[0], seen[1], "{r}");

    // REST without auth: `?username=` may only prefix a fresh random id.
    let b = base(&ports);
    let users: Vec<String> = (0..2)
        .map(|_| {
            let res = http(
                "GET",
                &format!("{b}/api/ice-servers?username=alice"),
                &[],
                None,
            );
            assert_eq!(res.status, 200);
            turn_user(&res.body["username"])
        })
        .collect();
    for u in &users {
        assert!(
            u.starts_with("alice-") && u.len() > "alice-".len() + 16,
            "{u}"
        );
    }
    assert_ne!(users[0], users[1]);
    let plain = http("GET", &format!("{b}/api/ice-servers"), &[], None);
    assert!(turn_user(&plain.body["username"]).starts_with("anon-"));
}
