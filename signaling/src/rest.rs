//! The REST API (SPEC section 4): health, readiness, metrics, stats, ICE servers and rooms.

mod error;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

pub use error::AppError;

use crate::auth::{bearer, server_chosen_user_id};
use crate::clock;
use crate::core::{UserId, resolve_user_id};
use crate::hub::{Hub, RoomsError};
use crate::rooms::{MAX_DISPLAY_NAME_LEN, RoomInfo};

fn token(headers: &HeaderMap) -> Option<&str> {
    bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Checks the client token; the auth subject (TURN user id) when auth is on.
fn authenticate(hub: &Hub, headers: &HeaderMap) -> Result<Option<String>, AppError> {
    hub.live()
        .auth
        .authenticate(token(headers))
        .map(|s| s.user_id)
        .map_err(|e| {
            hub.metrics.auth_failures.inc();
            AppError::unauthorized(format!("{e}: send `Authorization: Bearer TOKEN`"))
        })
}

/// `GET /health`: the process is alive.
pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /ready`: 503 once shutdown has begun, and in multi-instance mode while Redis is
/// unreachable (or this instance is not registered).
pub async fn ready(State(hub): State<Arc<Hub>>) -> Response {
    match hub.readiness() {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": if hub.is_ready() { "not-ready" } else { "stopping" },
                "reason": why,
            })),
        )
            .into_response(),
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(hub): State<Arc<Hub>>) -> Response {
    hub.refresh_gauges().await;
    let mut res = hub.metrics.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

/// `GET /stats`: a small JSON summary. `rooms` and `peersInRooms` are the cluster's in
/// multi-instance mode; `connections` are this instance's.
pub async fn stats(State(hub): State<Arc<Hub>>) -> Json<Value> {
    let (rooms, peers) = hub.refresh_gauges().await;
    let mut v = json!({
        "connections": hub.connected_peers(),
        "rooms": rooms,
        "peersInRooms": peers,
        "uptimeSeconds": hub.uptime().as_secs(),
        "version": env!("CARGO_PKG_VERSION"),
    });
    if let (Some(c), Some(map)) = (hub.cluster(), v.as_object_mut()) {
        map.insert(
            "cluster".into(),
            json!({
                "instance": &*c.instance(),
                "redisUp": c.is_up(),
                "instances": hub.metrics.instances.get(),
            }),
        );
    }
    Json(v)
}

#[derive(Debug, Deserialize)]
pub struct IceQuery {
    service: Option<String>,
    username: Option<String>,
}

/// `GET /api/ice-servers[?service=turn&username=U]`.
pub async fn ice_servers(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Query(q): Query<IceQuery>,
) -> Result<Response, AppError> {
    let subject = authenticate(&hub, &headers)?;
    if q.service.as_deref().is_some_and(|s| s != "turn") {
        return Err(AppError::bad_request("`service` must be \"turn\""));
    }
    let user_id = match resolve_user_id(subject.as_deref(), q.username.as_deref(), "username")
        .map_err(|r| AppError::bad_request(r.message))?
    {
        UserId::Subject(sub) => sub.to_string(),
        // Auth off: the server chooses; the client's word may only prefix it (SPEC 2).
        UserId::Asked(u) => server_chosen_user_id(Some(u)),
        UserId::Unspecified => server_chosen_user_id(None),
    };
    let mut res = Json(hub.ice_servers(&user_id)).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// What REST shows of a room: members' peer ids, user ids and metadata only to the admin
/// token (SPEC section 4, REST privacy); everyone else sees `peerCount`.
fn room_view(info: RoomInfo, admin: bool) -> Value {
    let count = info.peers.len();
    let mut v = serde_json::to_value(info).unwrap_or(Value::Null);
    if let Some(map) = v.as_object_mut() {
        if !admin {
            map.remove("peers");
        }
        map.insert("peerCount".into(), json!(count));
    }
    v
}

/// 503 `unavailable`: the shared state (Redis) could not be reached.
fn rooms_error(_: RoomsError) -> AppError {
    AppError::unavailable()
}

/// Whether the request carries the admin token.
fn is_admin(hub: &Hub, headers: &HeaderMap) -> bool {
    hub.live().auth.check_admin(token(headers)) == Some(true)
}

/// `GET /api/rooms`.
pub async fn list_rooms(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
) -> Result<Json<Value>, AppError> {
    let admin = is_admin(&hub, &headers);
    if !admin {
        authenticate(&hub, &headers)?;
    }
    let rooms: Vec<Value> = hub
        .list_rooms()
        .await
        .map_err(rooms_error)?
        .into_iter()
        .map(|r| room_view(r, admin))
        .collect();
    Ok(Json(json!({"rooms": rooms})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateRoom {
    name: Option<String>,
    max_peers: Option<usize>,
    password: Option<String>,
}

/// `POST /api/rooms {name?, maxPeers?, password?}` → 201 with the room.
pub async fn create_room(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    extensions: Extensions,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    authenticate(&hub, &headers)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                format!(
                    "the body exceeds {} bytes",
                    hub.cfg.signaling.max_payload_bytes
                ),
            )
        } else {
            AppError::bad_request("could not read the body")
        }
    })?;
    let body: CreateRoom = if body.iter().all(u8::is_ascii_whitespace) {
        CreateRoom::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| AppError::bad_request(format!("invalid room: {e}")))?
    };
    if body
        .name
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_DISPLAY_NAME_LEN)
    {
        return Err(AppError::bad_request("`name` is too long"));
    }
    if body.max_peers == Some(0) {
        return Err(AppError::bad_request("`maxPeers` must be at least 1"));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let password = match body.password.filter(|p| !p.is_empty()) {
        Some(p) => {
            // Set by `serve`; router-only tests have no address and share one budget.
            let ip = extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
            if !hub.passwords.admit_hash(ip) {
                return Err(AppError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate-limited",
                    "too many room passwords from this address; try again later",
                ));
            }
            Some(
                hub.passwords
                    .hash(p)
                    .await
                    .ok_or_else(|| AppError::bad_request("the password could not be hashed"))?,
            )
        }
        None => None,
    };
    let info = hub
        .create_room(id, body.name, body.max_peers, password, clock::unix_ms())
        .await
        .map_err(|e| match e {
            RoomsError::TooMany(e) => {
                hub.metrics.error("rate-limited");
                hub.metrics.rooms_refused.inc();
                AppError::new(StatusCode::TOO_MANY_REQUESTS, "rate-limited", e.to_string())
            }
            RoomsError::Unavailable => rooms_error(e),
        })?;
    hub.metrics.rooms_created.inc();
    tracing::debug!(room = %info.id, max_peers = info.max_peers, "Room created");
    Ok((StatusCode::CREATED, Json(room_view(info, false))).into_response())
}

/// `GET /api/rooms/{id}`.
pub async fn get_room(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    let admin = is_admin(&hub, &headers);
    if !admin {
        authenticate(&hub, &headers)?;
    }
    let info = hub
        .get_room(&id)
        .await
        .map_err(rooms_error)?
        .ok_or_else(|| AppError::not_found("no such room"))?;
    Ok(Json(room_view(info, admin)))
}

/// `DELETE /api/rooms/{id}` (admin token): members get `user-left` and are removed.
pub async fn delete_room(
    State(hub): State<Arc<Hub>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    match hub.live().auth.check_admin(token(&headers)) {
        None => {
            return Err(AppError::forbidden(
                "no admin token is configured: room deletion is disabled",
            ));
        }
        Some(false) => {
            hub.metrics.auth_failures.inc();
            return Err(AppError::unauthorized("admin token required"));
        }
        Some(true) => {}
    }
    let deliveries = hub
        .delete_room(&id)
        .await
        .map_err(rooms_error)?
        .ok_or_else(|| AppError::not_found("no such room"))?;
    let removed = deliveries
        .iter()
        .filter(|d| matches!(&*d.event, crate::core::ServerEvent::UserLeft { peer_id, .. } if *peer_id == d.to))
        .count();
    // Presence only: nothing to answer.
    let _ = hub.deliver(deliveries).await;
    tracing::info!(room = %id, removed, "Room deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests;
