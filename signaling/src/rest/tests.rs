//! REST handlers exercised in-process through the router with `oneshot` (no sockets).

use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use switchboard_config::{Component, parse};
use tower::ServiceExt as _;

use crate::{Hub, app};

const TOML: &str = r#"
[turn]
secrets = ["unit-test-secret-0123456789abcdef"]
public_host = "turn.example.com"
credential_ttl = "10m"
[signaling]
admin_token = "unit-admin-token-0123456789"
[relay]
listen_udp = ["0.0.0.0:3478"]
listen_tcp = ["0.0.0.0:3478"]
"#;

fn hub() -> Arc<Hub> {
    let cfg = parse(TOML, None, Component::Signaling, &|_| None).expect("valid test config");
    Hub::new(Arc::new(cfg))
}

async fn call(hub: &Arc<Hub>, req: Request<Body>) -> (StatusCode, Value, axum::http::HeaderMap) {
    let (router, _io) = app(hub.clone());
    let res = router.oneshot(req).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = to_bytes(res.into_body(), 1 << 20).await.unwrap_or_default();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body, headers)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

#[tokio::test]
async fn ice_servers_lists_stun_and_turn_from_the_config_and_is_never_cached() {
    let hub = hub();
    let (status, body, headers) = call(&hub, get("/api/ice-servers?username=dana")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(
        body["iceServers"][0],
        json!({"urls": ["stun:turn.example.com:3478"]})
    );
    assert_eq!(
        body["iceServers"][1]["urls"],
        json!([
            "turn:turn.example.com:3478?transport=udp",
            "turn:turn.example.com:3478?transport=tcp"
        ])
    );
    assert_eq!(body["ttl"], json!(600));
    let name = body["username"].as_str().unwrap_or_default();
    assert!(
        name.contains(":dana-") && !name.ends_with(":dana"),
        "auth off: the server picks the user id, the client only prefixes it: {name}"
    );
}

#[tokio::test]
async fn errors_use_the_one_json_shape() {
    let hub = hub();
    let (status, body, _) = call(&hub, get("/api/rooms/missing")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not-found");
    assert!(body["error"]["message"].is_string());
}

#[tokio::test]
async fn post_creates_a_room_with_a_uuid_and_delete_needs_the_admin_token() {
    let hub = hub();
    let req = Request::post("/api/rooms")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"name":"Retro","maxPeers":2,"password":"pw"}"#,
        ))
        .expect("request");
    let (status, body, _) = call(&hub, req).await;
    assert_eq!(status, StatusCode::CREATED);
    let id = body["id"].as_str().unwrap_or_default().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    assert_eq!(body["hasPassword"], json!(true));
    assert!(
        !body.to_string().contains("\"pw\""),
        "the password is never echoed"
    );

    let delete = |token: Option<&str>| {
        let mut b = Request::delete(format!("/api/rooms/{id}"));
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        b.body(Body::empty()).expect("request")
    };
    let (status, body, headers) = call(&hub, delete(None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert_eq!(headers[header::WWW_AUTHENTICATE], "Bearer");
    let (status, _, _) = call(&hub, delete(Some("unit-admin-token-0123456789"))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = call(&hub, get(&format!("/api/rooms/{id}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn ready_turns_503_once_shutdown_begins() {
    let hub = hub();
    assert_eq!(call(&hub, get("/ready")).await.0, StatusCode::OK);
    hub.set_not_ready();
    assert_eq!(
        call(&hub, get("/ready")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(call(&hub, get("/health")).await.0, StatusCode::OK);
}
