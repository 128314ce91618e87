//! The validated, typed configuration that both binaries run on.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::SecretString;
use serde::Deserialize;

use crate::units::{Bitrate, PortRange};

/// Which binary is loading the file: each reads only the secret files it needs, so a
/// systemd unit can be given only its own credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Signaling,
    Relay,
}

/// Where the configuration came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    /// No file was found: loopback-only development defaults with a public dev secret.
    DevelopmentDefaults,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// A URI kind that `/api/ice-servers` may list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Advertise {
    #[serde(rename = "stun")]
    Stun,
    #[serde(rename = "turn-udp")]
    TurnUdp,
    #[serde(rename = "turn-tcp")]
    TurnTcp,
    #[serde(rename = "turns")]
    Turns,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    #[default]
    None,
    Token,
    Jwt,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub origin: Origin,
    /// `log_level`; `RUST_LOG` wins when set.
    pub log_level: Option<String>,
    pub log_format: LogFormat,
    pub turn: TurnConfig,
    pub signaling: SignalingConfig,
    pub relay: RelayConfig,
}

/// The HMAC secrets: the first signs, all verify (rotation). Never empty.
#[derive(Debug, Clone)]
pub struct Secrets(Vec<SecretString>);

impl Secrets {
    /// `None` when `list` is empty.
    #[must_use]
    pub fn new(list: Vec<SecretString>) -> Option<Self> {
        (!list.is_empty()).then_some(Self(list))
    }

    /// The secret new credentials are signed with.
    #[must_use]
    pub fn signing(&self) -> &SecretString {
        &self.0[0]
    }

    /// Every secret that verifies.
    #[must_use]
    pub fn all(&self) -> &[SecretString] {
        &self.0
    }

    #[must_use]
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// The shortest `turn.credential_ttl` accepted. Credentials expire on a whole second (SPEC
/// section 2), so they can live up to 1 s less than the ttl; signaling refreshes them after
/// 90 % of it (`ice-servers`, SPEC section 4), and at 10 s that 10 % margin still covers the
/// lost second. Short ttls are for tests; production keeps hours.
pub const MIN_CREDENTIAL_TTL: Duration = Duration::from_secs(10);

/// The longest `turn.credential_ttl` accepted (30 days).
pub const MAX_CREDENTIAL_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone)]
pub struct TurnConfig {
    pub realm: String,
    pub secrets: Secrets,
    pub credential_ttl: Duration,
    pub public_host: String,
    pub advertise: Vec<Advertise>,
    pub extra_uris: Vec<String>,
    /// `[[turn.relays]]`: more relays, each listed only while its `health` URL says ready.
    pub relays: Vec<RelayEntry>,
}

/// One `[[turn.relays]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayEntry {
    /// `stun:`/`turn:`/`turns:` URIs of this relay, listed as they are.
    pub uris: Vec<String>,
    /// `http://host:port/ready` of the relay's metrics listener; polled by signaling.
    /// `None`: always listed.
    pub health: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// `"*"`, only when written explicitly.
    Any,
    List(Vec<String>),
}

#[derive(Debug, Clone)]
pub enum Auth {
    None,
    /// Bearer tokens; the token's position is not a user id, so the TURN user id is a
    /// stable digest of the token (see the signaling crate).
    Token(Vec<SecretString>),
    /// HS256 JWTs; claim `sub` is the user id.
    Jwt(SecretString),
}

impl Auth {
    #[must_use]
    pub fn mode(&self) -> AuthMode {
        match self {
            Auth::None => AuthMode::None,
            Auth::Token(_) => AuthMode::Token,
            Auth::Jwt(_) => AuthMode::Jwt,
        }
    }
}

#[derive(Debug, Clone)]
pub struct PeerJsConfig {
    pub enabled: bool,
    pub path: String,
    pub key: String,
    /// A client silent (no frame, no HEARTBEAT) for this long is closed and removed.
    pub alive_timeout: Duration,
    /// A queued message unread for this long is dropped; its sender gets EXPIRE.
    pub expire_timeout: Duration,
    /// Most PeerJS clients connected at once (on this instance).
    pub concurrent_limit: usize,
    /// `GET {path}/{key}/peers` lists ids (else 401).
    pub allow_discovery: bool,
}

#[derive(Debug, Clone)]
pub struct SignalingConfig {
    pub listen: SocketAddr,
    pub cors_origins: CorsOrigins,
    pub max_peers_per_room: usize,
    pub max_payload_bytes: usize,
    pub max_rooms_per_socket: usize,
    /// Token bucket per socket: sustained events per second.
    pub rate_limit_per_second: u32,
    /// Token bucket per socket: burst size (fits a trickle-ICE burst).
    pub rate_limit_burst: u32,
    /// Resolved only when loaded for [`Component::Signaling`]; `Auth::None` otherwise.
    pub auth: Auth,
    pub admin_token: Option<SecretString>,
    /// JWT `aud` that must match, when set.
    pub jwt_audience: Option<String>,
    /// JWT `iss` that must match, when set.
    pub jwt_issuer: Option<String>,
    /// `redis_url` / `redis_url_file` / `SWITCHBOARD_REDIS_URL` (may hold a password).
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key and channel (several deployments may share one Redis).
    pub redis_prefix: String,
    /// `redis_ca_file`: PEM CA certificate(s) a `rediss://` server is verified with (else
    /// the system roots).
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// `/metrics` and `/stats` listen here, not on the public listener.
    pub metrics_listen: SocketAddr,
    /// Most concurrent connections (Socket.IO and PeerJS) from one source IP.
    pub max_connections_per_ip: usize,
    /// Most REST-created rooms at once (beyond: 429 `rate-limited`).
    pub max_persistent_rooms: usize,
    /// A REST-created room with no member for this long is removed.
    pub persistent_room_idle: Duration,
    pub socketio_path: String,
    /// Serve the demo/diagnostics page at `/`.
    pub demo: bool,
    pub peerjs: PeerJsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    pub listen_udp: Vec<SocketAddr>,
    pub listen_tcp: Vec<SocketAddr>,
    pub listen_tls: Vec<SocketAddr>,
    /// Set exactly when `listen_tls` is not empty.
    pub tls: Option<TlsFiles>,
    pub relay_ip: IpAddr,
    /// The address clients see in XOR-RELAYED-ADDRESS (`external_ip`, else `relay_ip`).
    pub external_ip: IpAddr,
    /// IPv6 relayed addresses (dual stack): where they bind and what clients see.
    /// Both set or both `None`; `external_ip6` defaults to `relay_ip6` when concrete.
    pub relay_ip6: Option<IpAddr>,
    pub external_ip6: Option<IpAddr>,
    pub port_range: PortRange,
    pub allowed_peers: Vec<IpNet>,
    pub denied_peers: Vec<IpNet>,
    pub max_allocations: usize,
    pub max_allocations_per_user: usize,
    pub max_bitrate_per_allocation: Bitrate,
    pub metrics_listen: SocketAddr,
    /// Cap on concurrent TCP + TLS client connections.
    pub max_stream_connections: usize,
    /// A TCP/TLS connection with no complete message for this long is closed.
    pub stream_idle_timeout: Duration,
    /// Unauthenticated requests accepted per source IP per second.
    pub unauth_requests_per_second: u32,
    /// Most peers (permissions) per allocation; beyond: 508.
    pub max_permissions_per_allocation: usize,
    /// Most TCP + TLS connections from one source IP.
    pub max_stream_connections_per_ip: usize,
    /// `true`: every request is checked against the credential's expiry; `false`: an
    /// allocation keeps working with its credential after expiry (long calls).
    pub strict_expiry: bool,
    /// Sent as ALTERNATE-SERVER with 300 while draining; `None`: 508 instead.
    pub alternate_server: Option<SocketAddr>,
    /// Longest a drain waits for allocations to end before exiting.
    pub drain_timeout: Duration,
    /// Bearer token of the relay's admin API (`None`: the admin API answers 403).
    /// Resolved only when loaded for [`Component::Relay`].
    pub admin_token: Option<SecretString>,
    /// TCP/TLS sources that must (and alone may) send a PROXY protocol header.
    pub proxy_protocol_from: Vec<IpNet>,
    /// Data-plane worker threads; 0 = one per CPU core.
    pub workers: usize,
}

impl Config {
    /// One line for `--check-config` and the start-up log.
    #[must_use]
    pub fn summary(&self, component: Component) -> String {
        let origin = match &self.origin {
            Origin::File(p) => p.display().to_string(),
            Origin::DevelopmentDefaults => "built-in development defaults".into(),
        };
        match component {
            Component::Signaling => format!(
                "{origin}: ok; signaling on {}, auth {:?}, {} TURN secret(s), realm {:?}, public host {}",
                self.signaling.listen,
                self.signaling.auth.mode(),
                self.turn.secrets.len(),
                self.turn.realm,
                self.turn.public_host,
            ),
            Component::Relay => format!(
                "{origin}: ok; relay udp {:?} tcp {:?} tls {:?}, relay ip {} advertised as {}, ports {}-{}, {} TURN secret(s), realm {:?}",
                self.relay.listen_udp,
                self.relay.listen_tcp,
                self.relay.listen_tls,
                self.relay.relay_ip,
                self.relay.external_ip,
                self.relay.port_range.start,
                self.relay.port_range.end,
                self.turn.secrets.len(),
                self.turn.realm,
            ),
        }
    }
}

/// Secrets that ship in this repository and must never guard a real deployment.
pub const KNOWN_PLACEHOLDER_SECRETS: &[&str] = &[
    "example-placeholder-secret-replace-me",
    "switchboard-development-secret-do-not-use-in-production",
    "change-me",
];

impl Config {
    /// Things that are valid but probably wrong in production; binaries log each as a warning.
    #[must_use]
    pub fn warnings(&self, component: Component) -> Vec<String> {
        use secrecy::ExposeSecret;
        let mut out = Vec::new();
        if self.origin == Origin::DevelopmentDefaults {
            out.push(
                "no configuration file found: running on built-in DEVELOPMENT defaults (loopback only, public TURN secret); pass --config FILE for production".into(),
            );
        }
        for s in self.turn.secrets.all() {
            let v = s.expose_secret();
            if KNOWN_PLACEHOLDER_SECRETS.contains(&v) {
                out.push("turn.secrets holds a well-known placeholder secret: anyone can mint credentials; replace it".into());
            } else if v.len() < 16 {
                out.push(
                    "a TURN secret is shorter than 16 characters: use `openssl rand -base64 32`"
                        .into(),
                );
            }
        }
        if component == Component::Signaling {
            if self.signaling.cors_origins == CorsOrigins::Any {
                out.push(
                    "signaling.cors_origins = [\"*\"]: any web site may call this server".into(),
                );
            }
            if matches!(self.signaling.auth, Auth::None)
                && !self.signaling.listen.ip().is_loopback()
            {
                out.push("signaling.auth = \"none\" on a non-loopback address: anyone who reaches it gets TURN credentials".into());
            }
        }
        out
    }
}
