//! Raw serde types: the TOML file as written, before validation. Unknown keys are errors.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;
use serde::Deserialize;

use crate::model::{Advertise, AuthMode, LogFormat};
use crate::units::{Bitrate, PortRange};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
    pub turn: Option<RawTurn>,
    #[serde(default)]
    pub signaling: RawSignaling,
    #[serde(default)]
    pub relay: RawRelay,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTurn {
    #[serde(default = "defaults::realm")]
    pub realm: String,
    pub secrets: Option<Vec<SecretString>>,
    pub secrets_file: Option<PathBuf>,
    #[serde(default = "defaults::credential_ttl", with = "humantime_serde")]
    pub credential_ttl: Duration,
    pub public_host: Option<String>,
    #[serde(default = "defaults::advertise")]
    pub advertise: Vec<Advertise>,
    #[serde(default)]
    pub extra_uris: Vec<String>,
    #[serde(default)]
    pub relays: Vec<RawRelayEntry>,
}

/// One `[[turn.relays]]` entry: a relay's URIs and, optionally, its readiness URL.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRelayEntry {
    pub uris: Vec<String>,
    pub health: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSignaling {
    #[serde(default = "defaults::signaling_listen")]
    pub listen: SocketAddr,
    #[serde(default = "defaults::cors_origins")]
    pub cors_origins: Vec<String>,
    #[serde(default = "defaults::max_peers_per_room")]
    pub max_peers_per_room: usize,
    #[serde(default = "defaults::max_payload_bytes")]
    pub max_payload_bytes: usize,
    #[serde(default = "defaults::max_rooms_per_socket")]
    pub max_rooms_per_socket: usize,
    #[serde(default = "defaults::rate_limit_per_second")]
    pub rate_limit_per_second: u32,
    #[serde(default = "defaults::rate_limit_burst")]
    pub rate_limit_burst: u32,
    #[serde(default)]
    pub auth: AuthMode,
    pub tokens: Option<Vec<SecretString>>,
    pub tokens_file: Option<PathBuf>,
    pub jwt_secret: Option<SecretString>,
    pub jwt_secret_file: Option<PathBuf>,
    pub admin_token: Option<SecretString>,
    pub admin_token_file: Option<PathBuf>,
    pub jwt_audience: Option<String>,
    pub jwt_issuer: Option<String>,
    pub redis_url: Option<SecretString>,
    pub redis_url_file: Option<PathBuf>,
    /// PEM CA certificate(s) to verify a `rediss://` server with, instead of the system roots.
    pub redis_ca_file: Option<PathBuf>,
    #[serde(default = "defaults::redis_prefix")]
    pub redis_prefix: String,
    #[serde(default = "defaults::signaling_metrics_listen")]
    pub metrics_listen: SocketAddr,
    #[serde(default = "defaults::max_connections_per_ip")]
    pub max_connections_per_ip: usize,
    #[serde(default = "defaults::max_persistent_rooms")]
    pub max_persistent_rooms: usize,
    #[serde(default = "defaults::persistent_room_idle", with = "humantime_serde")]
    pub persistent_room_idle: Duration,
    #[serde(default = "defaults::socketio_path")]
    pub socketio_path: String,
    #[serde(default = "defaults::yes")]
    pub demo: bool,
    #[serde(default)]
    pub peerjs: RawPeerJs,
}

impl Default for RawSignaling {
    fn default() -> Self {
        Self {
            listen: defaults::signaling_listen(),
            cors_origins: defaults::cors_origins(),
            max_peers_per_room: defaults::max_peers_per_room(),
            max_payload_bytes: defaults::max_payload_bytes(),
            max_rooms_per_socket: defaults::max_rooms_per_socket(),
            rate_limit_per_second: defaults::rate_limit_per_second(),
            rate_limit_burst: defaults::rate_limit_burst(),
            auth: AuthMode::default(),
            tokens: None,
            tokens_file: None,
            jwt_secret: None,
            jwt_secret_file: None,
            admin_token: None,
            admin_token_file: None,
            jwt_audience: None,
            jwt_issuer: None,
            redis_url: None,
            redis_url_file: None,
            redis_ca_file: None,
            redis_prefix: defaults::redis_prefix(),
            metrics_listen: defaults::signaling_metrics_listen(),
            max_connections_per_ip: defaults::max_connections_per_ip(),
            max_persistent_rooms: defaults::max_persistent_rooms(),
            persistent_room_idle: defaults::persistent_room_idle(),
            socketio_path: defaults::socketio_path(),
            demo: true,
            peerjs: RawPeerJs::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPeerJs {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "defaults::peerjs_path")]
    pub path: String,
    #[serde(default = "defaults::peerjs_key")]
    pub key: String,
    #[serde(default = "defaults::peerjs_alive_timeout", with = "humantime_serde")]
    pub alive_timeout: Duration,
    #[serde(default = "defaults::peerjs_expire_timeout", with = "humantime_serde")]
    pub expire_timeout: Duration,
    #[serde(default = "defaults::peerjs_concurrent_limit")]
    pub concurrent_limit: usize,
    #[serde(default)]
    pub allow_discovery: bool,
}

impl Default for RawPeerJs {
    fn default() -> Self {
        Self {
            enabled: false,
            path: defaults::peerjs_path(),
            key: defaults::peerjs_key(),
            alive_timeout: defaults::peerjs_alive_timeout(),
            expire_timeout: defaults::peerjs_expire_timeout(),
            concurrent_limit: defaults::peerjs_concurrent_limit(),
            allow_discovery: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRelay {
    #[serde(default = "defaults::relay_listen")]
    pub listen_udp: Vec<SocketAddr>,
    #[serde(default = "defaults::relay_listen")]
    pub listen_tcp: Vec<SocketAddr>,
    #[serde(default)]
    pub listen_tls: Vec<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    #[serde(default = "defaults::relay_ip")]
    pub relay_ip: IpAddr,
    pub external_ip: Option<IpAddr>,
    pub relay_ip6: Option<IpAddr>,
    pub external_ip6: Option<IpAddr>,
    #[serde(default = "defaults::port_range")]
    pub port_range: PortRange,
    #[serde(default)]
    pub allowed_peers: Vec<IpNet>,
    #[serde(default)]
    pub denied_peers: Vec<IpNet>,
    #[serde(default = "defaults::max_allocations")]
    pub max_allocations: usize,
    #[serde(default = "defaults::max_allocations_per_user")]
    pub max_allocations_per_user: usize,
    #[serde(default)]
    pub max_bitrate_per_allocation: Bitrate,
    #[serde(default = "defaults::metrics_listen")]
    pub metrics_listen: SocketAddr,
    #[serde(default = "defaults::max_stream_connections")]
    pub max_stream_connections: usize,
    #[serde(default = "defaults::stream_idle_timeout", with = "humantime_serde")]
    pub stream_idle_timeout: Duration,
    #[serde(default = "defaults::unauth_requests_per_second")]
    pub unauth_requests_per_second: u32,
    #[serde(default = "defaults::max_permissions_per_allocation")]
    pub max_permissions_per_allocation: usize,
    #[serde(default = "defaults::max_stream_connections_per_ip")]
    pub max_stream_connections_per_ip: usize,
    #[serde(default)]
    pub strict_expiry: bool,
    pub alternate_server: Option<SocketAddr>,
    #[serde(default = "defaults::drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    pub admin_token: Option<SecretString>,
    pub admin_token_file: Option<PathBuf>,
    #[serde(default)]
    pub proxy_protocol_from: Vec<IpNet>,
    #[serde(default)]
    pub workers: usize,
}

impl Default for RawRelay {
    fn default() -> Self {
        Self {
            listen_udp: defaults::relay_listen(),
            listen_tcp: defaults::relay_listen(),
            listen_tls: Vec::new(),
            tls_cert: None,
            tls_key: None,
            relay_ip: defaults::relay_ip(),
            external_ip: None,
            relay_ip6: None,
            external_ip6: None,
            port_range: defaults::port_range(),
            allowed_peers: Vec::new(),
            denied_peers: Vec::new(),
            max_allocations: defaults::max_allocations(),
            max_allocations_per_user: defaults::max_allocations_per_user(),
            max_bitrate_per_allocation: Bitrate::default(),
            metrics_listen: defaults::metrics_listen(),
            max_stream_connections: defaults::max_stream_connections(),
            stream_idle_timeout: defaults::stream_idle_timeout(),
            unauth_requests_per_second: defaults::unauth_requests_per_second(),
            max_permissions_per_allocation: defaults::max_permissions_per_allocation(),
            max_stream_connections_per_ip: defaults::max_stream_connections_per_ip(),
            strict_expiry: false,
            alternate_server: None,
            drain_timeout: defaults::drain_timeout(),
            admin_token: None,
            admin_token_file: None,
            proxy_protocol_from: Vec::new(),
            workers: 0,
        }
    }
}

/// Defaults for keys the file leaves out; the example file documents each one.
pub(crate) mod defaults {
    use super::*;

    pub fn realm() -> String {
        "switchboard".into()
    }
    pub fn credential_ttl() -> Duration {
        Duration::from_secs(24 * 3600)
    }
    pub fn advertise() -> Vec<Advertise> {
        vec![
            Advertise::Stun,
            Advertise::TurnUdp,
            Advertise::TurnTcp,
            Advertise::Turns,
        ]
    }
    pub fn signaling_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8080))
    }
    pub fn cors_origins() -> Vec<String> {
        vec![
            "http://localhost:8080".into(),
            "http://127.0.0.1:8080".into(),
        ]
    }
    pub fn max_peers_per_room() -> usize {
        6
    }
    pub fn max_payload_bytes() -> usize {
        65536
    }
    pub fn max_rooms_per_socket() -> usize {
        4
    }
    pub fn rate_limit_per_second() -> u32 {
        50
    }
    pub fn rate_limit_burst() -> u32 {
        200
    }
    pub fn socketio_path() -> String {
        "/socket.io".into()
    }
    pub fn yes() -> bool {
        true
    }
    pub fn peerjs_path() -> String {
        "/peerjs".into()
    }
    pub fn peerjs_key() -> String {
        "peerjs".into()
    }
    pub fn peerjs_alive_timeout() -> Duration {
        Duration::from_secs(60)
    }
    pub fn peerjs_expire_timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn peerjs_concurrent_limit() -> usize {
        5000
    }
    pub fn redis_prefix() -> String {
        "switchboard".into()
    }
    pub fn signaling_metrics_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9642))
    }
    pub fn max_connections_per_ip() -> usize {
        256
    }
    pub fn max_persistent_rooms() -> usize {
        1000
    }
    pub fn persistent_room_idle() -> Duration {
        Duration::from_secs(24 * 3600)
    }
    pub fn max_permissions_per_allocation() -> usize {
        64
    }
    pub fn max_stream_connections_per_ip() -> usize {
        64
    }
    pub fn drain_timeout() -> Duration {
        Duration::from_secs(2 * 3600)
    }
    pub fn relay_listen() -> Vec<SocketAddr> {
        vec![SocketAddr::from(([0, 0, 0, 0], 3478))]
    }
    pub fn relay_ip() -> IpAddr {
        IpAddr::from([0, 0, 0, 0])
    }
    pub fn port_range() -> PortRange {
        PortRange {
            start: 49152,
            end: 65535,
        }
    }
    pub fn max_allocations() -> usize {
        10_000
    }
    pub fn max_allocations_per_user() -> usize {
        10
    }
    pub fn metrics_listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9641))
    }
    pub fn max_stream_connections() -> usize {
        4096
    }
    pub fn stream_idle_timeout() -> Duration {
        Duration::from_secs(60)
    }
    /// Generous enough for many users behind one NAT (each UDP allocation costs two
    /// requests before it exists); a spoofed source still draws at most this many 401s a second.
    pub fn unauth_requests_per_second() -> u32 {
        200
    }
}
