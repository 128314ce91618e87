//! Finding, parsing and validating the configuration file.

use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};

use crate::error::{ConfigError, location_of};
use crate::model::*;
use crate::raw::*;

/// The environment, as a function, so tests do not touch the process environment.
pub type EnvFn<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads the real process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `SWITCHBOARD_CONFIG`: the config file when `--config` is not given.
pub const ENV_CONFIG: &str = "SWITCHBOARD_CONFIG";
/// `SWITCHBOARD_TURN_SECRETS`: TURN secrets (comma- or newline-separated), used when the
/// file sets neither `turn.secrets` nor `turn.secrets_file`.
pub const ENV_TURN_SECRETS: &str = "SWITCHBOARD_TURN_SECRETS";
/// `SWITCHBOARD_TOKENS`: bearer tokens for `auth = "token"` (comma- or newline-separated).
pub const ENV_TOKENS: &str = "SWITCHBOARD_TOKENS";
/// `SWITCHBOARD_JWT_SECRET`: HS256 secret for `auth = "jwt"`.
pub const ENV_JWT_SECRET: &str = "SWITCHBOARD_JWT_SECRET";
/// `SWITCHBOARD_ADMIN_TOKEN`: token for `DELETE /api/rooms/{id}` and the members' ids in
/// `/api/rooms`.
pub const ENV_ADMIN_TOKEN: &str = "SWITCHBOARD_ADMIN_TOKEN";
/// `SWITCHBOARD_REDIS_URL`: `signaling.redis_url` (it may carry a password).
pub const ENV_REDIS_URL: &str = "SWITCHBOARD_REDIS_URL";
/// `SWITCHBOARD_RELAY_ADMIN_TOKEN`: bearer token of the relay's admin API.
pub const ENV_RELAY_ADMIN_TOKEN: &str = "SWITCHBOARD_RELAY_ADMIN_TOKEN";

/// The file used when neither `--config` nor `$SWITCHBOARD_CONFIG` names one.
pub const DEFAULT_FILE: &str = "switchboard.toml";

/// The built-in development configuration (loopback only, public secret).
pub const DEVELOPMENT_TOML: &str = include_str!("../switchboard.dev.toml");

/// Picks the file: `--config`, then `$SWITCHBOARD_CONFIG`, then `./switchboard.toml` if it
/// exists. `None` means "no file at all": run on development defaults.
#[must_use]
pub fn config_path(cli: Option<&Path>, env: EnvFn<'_>) -> Option<PathBuf> {
    if let Some(p) = cli {
        return Some(p.to_path_buf());
    }
    if let Some(p) = env(ENV_CONFIG) {
        return Some(PathBuf::from(p));
    }
    let local = PathBuf::from(DEFAULT_FILE);
    local.is_file().then_some(local)
}

/// Loads the configuration the way both binaries do at start-up.
pub fn load(cli: Option<&Path>, component: Component) -> Result<Config, ConfigError> {
    match config_path(cli, &process_env) {
        Some(path) => load_file(&path, component, &process_env),
        None => load_development(component),
    }
}

/// The built-in development defaults. Callers must warn loudly when they use them.
pub fn load_development(component: Component) -> Result<Config, ConfigError> {
    let mut cfg = parse(DEVELOPMENT_TOML, None, component, &|_| None)?;
    cfg.origin = Origin::DevelopmentDefaults;
    Ok(cfg)
}

/// Loads and validates one file.
pub fn load_file(path: &Path, component: Component, env: EnvFn<'_>) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: Some(path.to_path_buf()),
        key: String::new(),
        location: None,
        message: format!("cannot read the configuration file: {e}"),
    })?;
    parse(&text, Some(path), component, env)
}

/// Parses and validates configuration text. `file` names it in errors and anchors relative
/// `*_file` paths.
pub fn parse(
    text: &str,
    file: Option<&Path>,
    component: Component,
    env: EnvFn<'_>,
) -> Result<Config, ConfigError> {
    let at_file = |mut e: ConfigError| {
        e.file = file.map(Path::to_path_buf);
        e
    };
    let raw = deserialize(text).map_err(at_file)?;
    let base = file.and_then(Path::parent).map(Path::to_path_buf);
    let ctx = Ctx {
        base: base.as_deref(),
        component,
        env,
    };
    validate(raw, &ctx, file).map_err(|e| at_file(locate(e, text)))
}

fn deserialize(text: &str) -> Result<RawConfig, ConfigError> {
    let syntax = |e: toml::de::Error| ConfigError {
        file: None,
        key: String::new(),
        location: e.span().map(|s| location_of(text, s.start)),
        message: e.message().trim().to_string(),
    };
    let de = toml::Deserializer::parse(text).map_err(syntax)?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        ConfigError {
            file: None,
            key: if key == "." { String::new() } else { key },
            location: inner.span().map(|s| location_of(text, s.start)),
            message: inner.message().trim().to_string(),
        }
    })
}

/// Fills in the line and column of a validation error from its key path: the key itself
/// if present, else the nearest enclosing table that is.
fn locate(mut err: ConfigError, text: &str) -> ConfigError {
    if err.location.is_some() || err.key.is_empty() {
        return err;
    }
    let Ok(doc) = toml::de::DeTable::parse(text) else {
        return err;
    };
    let mut table = doc.get_ref();
    let mut found = None;
    for segment in err.key.split('.') {
        let Some((k, v)) = table.get_key_value(segment) else {
            break;
        };
        found = Some(k.span().start);
        match v.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    err.location = found.map(|o| location_of(text, o));
    err
}

struct Ctx<'a> {
    base: Option<&'a Path>,
    component: Component,
    env: EnvFn<'a>,
}

impl Ctx<'_> {
    /// Resolves a `*_file` path: `$CREDENTIALS_DIRECTORY/...` is expanded (systemd
    /// `LoadCredential=`), relative paths are taken from the config file's folder.
    fn path(&self, p: &Path) -> PathBuf {
        let s = p.to_string_lossy();
        for prefix in ["$CREDENTIALS_DIRECTORY/", "${CREDENTIALS_DIRECTORY}/"] {
            if let (Some(rest), Some(dir)) =
                (s.strip_prefix(prefix), (self.env)("CREDENTIALS_DIRECTORY"))
            {
                return Path::new(&dir).join(rest);
            }
        }
        match self.base {
            Some(base) if p.is_relative() => base.join(p),
            _ => p.to_path_buf(),
        }
    }

    fn read_list(&self, key: &str, p: &Path) -> Result<Vec<SecretString>, ConfigError> {
        let path = self.path(p);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::new(
                key,
                format!("cannot read secret file {}: {e}", path.display()),
            )
        })?;
        let list = split_secrets(&text);
        if list.is_empty() {
            return Err(ConfigError::new(
                key,
                format!(
                    "secret file {} holds no secret (one per line)",
                    path.display()
                ),
            ));
        }
        Ok(list)
    }

    fn read_one(&self, key: &str, p: &Path) -> Result<SecretString, ConfigError> {
        let mut list = self.read_list(key, p)?;
        if list.len() > 1 {
            return Err(ConfigError::new(
                key,
                "secret file must hold exactly one line",
            ));
        }
        Ok(list.remove(0))
    }
}

/// One secret per line in files; blank lines and `#` comments skipped.
fn split_secrets(text: &str) -> Vec<SecretString> {
    split_on(text, &['\n'])
}

/// Env vars also take comma-separated lists.
fn split_env_secrets(text: &str) -> Vec<SecretString> {
    split_on(text, &['\n', ','])
}

fn split_on(text: &str, separators: &[char]) -> Vec<SecretString> {
    text.split(separators)
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| SecretString::from(l.to_string()))
        .collect()
}

/// Resolves a list secret from inline value, `*_file`, or an env var (in that order; setting
/// both the inline key and the `*_file` key is an error).
fn secret_list(
    ctx: &Ctx<'_>,
    key: &str,
    inline: Option<Vec<SecretString>>,
    file: Option<&Path>,
    env_var: &str,
) -> Result<Vec<SecretString>, ConfigError> {
    let list = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                key,
                format!("set either `{key}` or `{key}_file`, not both"),
            ));
        }
        (Some(list), None) => list,
        (None, Some(p)) => ctx.read_list(&format!("{key}_file"), p)?,
        (None, None) => (ctx.env)(env_var)
            .map(|v| split_env_secrets(&v))
            .unwrap_or_default(),
    };
    if list.iter().any(|s| s.expose_secret().trim().is_empty()) {
        return Err(ConfigError::new(key, "a secret must not be empty"));
    }
    Ok(list)
}

fn secret_one(
    ctx: &Ctx<'_>,
    key: &str,
    inline: Option<SecretString>,
    file: Option<&Path>,
    env_var: &str,
) -> Result<Option<SecretString>, ConfigError> {
    let value = match (inline, file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::new(
                key,
                format!("set either `{key}` or `{key}_file`, not both"),
            ));
        }
        (Some(v), None) => Some(v),
        (None, Some(p)) => Some(ctx.read_one(&format!("{key}_file"), p)?),
        (None, None) => (ctx.env)(env_var).map(SecretString::from),
    };
    if value
        .as_ref()
        .is_some_and(|s| s.expose_secret().trim().is_empty())
    {
        return Err(ConfigError::new(key, "must not be empty"));
    }
    Ok(value)
}

fn validate(raw: RawConfig, ctx: &Ctx<'_>, file: Option<&Path>) -> Result<Config, ConfigError> {
    let Some(turn) = raw.turn else {
        return Err(ConfigError::new(
            "turn",
            "missing table [turn] (it holds the shared TURN secrets and public_host)",
        ));
    };
    let turn = validate_turn(turn, ctx)?;
    let signaling = validate_signaling(raw.signaling, ctx)?;
    let relay = validate_relay(raw.relay, ctx)?;
    if raw.log_level.as_ref().is_some_and(|l| l.trim().is_empty()) {
        return Err(ConfigError::new("log_level", "must not be empty"));
    }
    Ok(Config {
        origin: file.map_or(Origin::DevelopmentDefaults, |p| {
            Origin::File(p.to_path_buf())
        }),
        log_level: raw.log_level,
        log_format: raw.log_format.unwrap_or_default(),
        turn,
        signaling,
        relay,
    })
}

fn validate_turn(raw: RawTurn, ctx: &Ctx<'_>) -> Result<TurnConfig, ConfigError> {
    if raw.realm.is_empty() || !raw.realm.chars().all(|c| c.is_ascii_graphic()) {
        return Err(ConfigError::new(
            "turn.realm",
            "must be a non-empty string of printable ASCII without spaces",
        ));
    }
    let list = secret_list(
        ctx,
        "turn.secrets",
        raw.secrets,
        raw.secrets_file.as_deref(),
        ENV_TURN_SECRETS,
    )?;
    let secrets = Secrets::new(list).ok_or_else(|| {
        ConfigError::new(
            "turn.secrets",
            format!(
                "no TURN secret: set `turn.secrets`, `turn.secrets_file` or ${ENV_TURN_SECRETS}"
            ),
        )
    })?;
    let ttl = raw.credential_ttl;
    if ttl < crate::MIN_CREDENTIAL_TTL || ttl > crate::MAX_CREDENTIAL_TTL {
        return Err(ConfigError::new(
            "turn.credential_ttl",
            "must be between 10 seconds and 30 days",
        ));
    }
    let public_host = raw.public_host.ok_or_else(|| {
        ConfigError::new(
            "turn.public_host",
            "missing: the host name or IP clients use to reach the relay",
        )
    })?;
    validate_host(&public_host).map_err(|m| ConfigError::new("turn.public_host", m))?;
    for uri in &raw.extra_uris {
        validate_uri("turn.extra_uris", uri)?;
    }
    let mut relays = Vec::with_capacity(raw.relays.len());
    for entry in raw.relays {
        if entry.uris.is_empty() {
            return Err(ConfigError::new(
                "turn.relays.uris",
                "a [[turn.relays]] entry needs at least one URI",
            ));
        }
        for uri in &entry.uris {
            validate_uri("turn.relays.uris", uri)?;
        }
        if let Some(h) = &entry.health
            && !(h.starts_with("http://") || h.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "turn.relays.health",
                format!(
                    "`{h}` is not an http:// or https:// URL (e.g. \"http://10.0.0.2:9641/ready\")"
                ),
            ));
        }
        relays.push(RelayEntry {
            uris: entry.uris,
            health: entry.health,
        });
    }
    let mut advertise = raw.advertise;
    advertise.dedup();
    Ok(TurnConfig {
        realm: raw.realm,
        secrets,
        credential_ttl: ttl,
        public_host,
        advertise,
        extra_uris: raw.extra_uris,
        relays,
    })
}

fn validate_uri(key: &str, uri: &str) -> Result<(), ConfigError> {
    let ok = ["stun:", "turn:", "turns:"]
        .iter()
        .any(|s| uri.strip_prefix(s).is_some_and(|rest| !rest.is_empty()))
        && !uri.contains(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("`{uri}` is not a stun:, turn: or turns: URI"),
        ))
    }
}

fn validate_host(host: &str) -> Result<(), String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{host}` is not a host name or IP address (no scheme, port or path)"
        ))
    }
}

fn validate_origin(origin: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !rest.contains('/')
        && !rest.contains(char::is_whitespace)
}

fn validate_path(key: &str, path: &str) -> Result<(), ConfigError> {
    let ok = path.len() > 1
        && path.starts_with('/')
        && !path.ends_with('/')
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c));
    if ok && !matches!(path, "/api" | "/health" | "/ready" | "/metrics" | "/stats") {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("`{path}` must be an absolute URL path like \"/socket.io\", not a REST route"),
        ))
    }
}

fn validate_signaling(raw: RawSignaling, ctx: &Ctx<'_>) -> Result<SignalingConfig, ConfigError> {
    let cors_origins = if raw.cors_origins.iter().any(|o| o == "*") {
        if raw.cors_origins.len() > 1 {
            return Err(ConfigError::new(
                "signaling.cors_origins",
                "\"*\" allows every origin and cannot be combined with others",
            ));
        }
        CorsOrigins::Any
    } else {
        if let Some(bad) = raw.cors_origins.iter().find(|o| !validate_origin(o)) {
            return Err(ConfigError::new(
                "signaling.cors_origins",
                format!(
                    "`{bad}` is not an origin like \"https://app.example.com\" (scheme://host[:port], no path)"
                ),
            ));
        }
        CorsOrigins::List(raw.cors_origins)
    };
    if !(2..=1000).contains(&raw.max_peers_per_room) {
        return Err(ConfigError::new(
            "signaling.max_peers_per_room",
            "must be between 2 and 1000",
        ));
    }
    if !(1024..=16 * 1024 * 1024).contains(&raw.max_payload_bytes) {
        return Err(ConfigError::new(
            "signaling.max_payload_bytes",
            "must be between 1024 and 16777216",
        ));
    }
    if !(1..=1000).contains(&raw.max_rooms_per_socket) {
        return Err(ConfigError::new(
            "signaling.max_rooms_per_socket",
            "must be between 1 and 1000",
        ));
    }
    if raw.rate_limit_per_second == 0 {
        return Err(ConfigError::new(
            "signaling.rate_limit_per_second",
            "must be at least 1",
        ));
    }
    if raw.rate_limit_burst < raw.rate_limit_per_second {
        return Err(ConfigError::new(
            "signaling.rate_limit_burst",
            "must be at least rate_limit_per_second",
        ));
    }
    validate_path("signaling.socketio_path", &raw.socketio_path)?;
    validate_path("signaling.peerjs.path", &raw.peerjs.path)?;
    if raw.peerjs.key.is_empty() {
        return Err(ConfigError::new(
            "signaling.peerjs.key",
            "must not be empty",
        ));
    }
    if raw.redis_prefix.is_empty()
        || raw.redis_prefix.len() > 64
        || !raw
            .redis_prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
    {
        return Err(ConfigError::new(
            "signaling.redis_prefix",
            "must be 1-64 characters of A-Z, a-z, 0-9, -, _, . and :",
        ));
    }
    if raw.max_connections_per_ip == 0 {
        return Err(ConfigError::new(
            "signaling.max_connections_per_ip",
            "must be at least 1",
        ));
    }
    if raw.max_persistent_rooms > 1_000_000 {
        return Err(ConfigError::new(
            "signaling.max_persistent_rooms",
            "must be at most 1000000 (0 disables REST room creation)",
        ));
    }
    if raw.persistent_room_idle.as_secs() < 1 {
        return Err(ConfigError::new(
            "signaling.persistent_room_idle",
            "must be at least 1s",
        ));
    }
    for (key, v) in [
        ("signaling.jwt_audience", &raw.jwt_audience),
        ("signaling.jwt_issuer", &raw.jwt_issuer),
    ] {
        if v.as_ref().is_some_and(|v| v.trim().is_empty()) {
            return Err(ConfigError::new(key, "must not be empty when set"));
        }
    }
    if (raw.jwt_audience.is_some() || raw.jwt_issuer.is_some()) && raw.auth != AuthMode::Jwt {
        return Err(ConfigError::new(
            if raw.jwt_audience.is_some() {
                "signaling.jwt_audience"
            } else {
                "signaling.jwt_issuer"
            },
            "only meaningful with auth = \"jwt\"",
        ));
    }
    let pj = &raw.peerjs;
    if pj.alive_timeout.as_secs() < 1 {
        return Err(ConfigError::new(
            "signaling.peerjs.alive_timeout",
            "must be at least 1s",
        ));
    }
    if pj.expire_timeout.as_millis() < 100 {
        return Err(ConfigError::new(
            "signaling.peerjs.expire_timeout",
            "must be at least 100ms",
        ));
    }
    if pj.concurrent_limit == 0 {
        return Err(ConfigError::new(
            "signaling.peerjs.concurrent_limit",
            "must be at least 1",
        ));
    }
    if pj.enabled && (pj.path == raw.socketio_path) {
        return Err(ConfigError::new(
            "signaling.peerjs.path",
            "must differ from signaling.socketio_path",
        ));
    }

    let mut auth = Auth::None;
    let mut admin_token = None;
    let mut redis_url = None;
    // Secret files of the signaling service are read only by it: the relay's unit does not
    // get (and must not need) those credentials.
    if ctx.component == Component::Signaling {
        let tokens = secret_list(
            ctx,
            "signaling.tokens",
            raw.tokens,
            raw.tokens_file.as_deref(),
            ENV_TOKENS,
        )?;
        let jwt = secret_one(
            ctx,
            "signaling.jwt_secret",
            raw.jwt_secret,
            raw.jwt_secret_file.as_deref(),
            ENV_JWT_SECRET,
        )?;
        admin_token = secret_one(
            ctx,
            "signaling.admin_token",
            raw.admin_token,
            raw.admin_token_file.as_deref(),
            ENV_ADMIN_TOKEN,
        )?;
        redis_url = secret_one(
            ctx,
            "signaling.redis_url",
            raw.redis_url,
            raw.redis_url_file.as_deref(),
            ENV_REDIS_URL,
        )?;
        if let Some(url) = &redis_url {
            let url = url.expose_secret();
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(ConfigError::new(
                    "signaling.redis_url",
                    "must start with redis:// or rediss://",
                ));
            }
        }
        if let Some(p) = &raw.redis_ca_file {
            const KEY: &str = "signaling.redis_ca_file";
            if !redis_url
                .as_ref()
                .is_some_and(|u| u.expose_secret().starts_with("rediss://"))
            {
                return Err(ConfigError::new(
                    KEY,
                    "is only used with a rediss:// (TLS) signaling.redis_url",
                ));
            }
            let pem = std::fs::read_to_string(p)
                .map_err(|e| ConfigError::new(KEY, format!("cannot read {}: {e}", p.display())))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(ConfigError::new(
                    KEY,
                    format!("{} holds no PEM certificate", p.display()),
                ));
            }
        }
        auth = match raw.auth {
            AuthMode::None => {
                if !tokens.is_empty() || jwt.is_some() {
                    return Err(ConfigError::new(
                        "signaling.auth",
                        "tokens or a JWT secret are configured but auth = \"none\": set auth = \"token\" or \"jwt\"",
                    ));
                }
                Auth::None
            }
            AuthMode::Token => {
                if tokens.is_empty() {
                    return Err(ConfigError::new(
                        "signaling.auth",
                        format!(
                            "auth = \"token\" needs `signaling.tokens`, `signaling.tokens_file` or ${ENV_TOKENS}"
                        ),
                    ));
                }
                Auth::Token(tokens)
            }
            AuthMode::Jwt => match jwt {
                Some(secret) => Auth::Jwt(secret),
                None => {
                    return Err(ConfigError::new(
                        "signaling.auth",
                        format!(
                            "auth = \"jwt\" needs `signaling.jwt_secret_file` or ${ENV_JWT_SECRET}"
                        ),
                    ));
                }
            },
        };
    }

    Ok(SignalingConfig {
        listen: raw.listen,
        cors_origins,
        max_peers_per_room: raw.max_peers_per_room,
        max_payload_bytes: raw.max_payload_bytes,
        max_rooms_per_socket: raw.max_rooms_per_socket,
        rate_limit_per_second: raw.rate_limit_per_second,
        rate_limit_burst: raw.rate_limit_burst,
        auth,
        admin_token,
        jwt_audience: raw.jwt_audience,
        jwt_issuer: raw.jwt_issuer,
        redis_url,
        redis_prefix: raw.redis_prefix,
        redis_ca_file: raw.redis_ca_file,
        metrics_listen: raw.metrics_listen,
        max_connections_per_ip: raw.max_connections_per_ip,
        max_persistent_rooms: raw.max_persistent_rooms,
        persistent_room_idle: raw.persistent_room_idle,
        socketio_path: raw.socketio_path,
        demo: raw.demo,
        peerjs: PeerJsConfig {
            enabled: raw.peerjs.enabled,
            path: raw.peerjs.path,
            key: raw.peerjs.key,
            alive_timeout: raw.peerjs.alive_timeout,
            expire_timeout: raw.peerjs.expire_timeout,
            concurrent_limit: raw.peerjs.concurrent_limit,
            allow_discovery: raw.peerjs.allow_discovery,
        },
    })
}

fn validate_relay(raw: RawRelay, ctx: &Ctx<'_>) -> Result<RelayConfig, ConfigError> {
    if raw.listen_udp.is_empty() && raw.listen_tcp.is_empty() && raw.listen_tls.is_empty() {
        return Err(ConfigError::new(
            "relay.listen_udp",
            "the relay needs at least one of listen_udp, listen_tcp, listen_tls",
        ));
    }
    let tls = match (&raw.tls_cert, &raw.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: ctx.path(cert),
            key: ctx.path(key),
        }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::new(
                "relay.tls_key",
                "tls_cert is set but tls_key is not",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::new(
                "relay.tls_cert",
                "tls_key is set but tls_cert is not",
            ));
        }
    };
    let tls = if raw.listen_tls.is_empty() {
        None
    } else {
        let Some(tls) = tls else {
            return Err(ConfigError::new(
                "relay.listen_tls",
                "TLS listeners need `relay.tls_cert` and `relay.tls_key`",
            ));
        };
        if ctx.component == Component::Relay {
            for (key, path) in [("relay.tls_cert", &tls.cert), ("relay.tls_key", &tls.key)] {
                if let Err(e) = std::fs::metadata(path) {
                    return Err(ConfigError::new(
                        key,
                        format!("cannot read {}: {e}", path.display()),
                    ));
                }
            }
        }
        Some(tls)
    };
    if raw.external_ip.is_some_and(|ip| ip.is_unspecified()) {
        return Err(ConfigError::new(
            "relay.external_ip",
            "must be a concrete address clients can reach, not 0.0.0.0 or ::",
        ));
    }
    let external_ip = match raw.external_ip {
        Some(ip) => ip,
        None if !raw.relay_ip.is_unspecified() => raw.relay_ip,
        None => {
            if ctx.component == Component::Relay {
                return Err(ConfigError::new(
                    "relay.external_ip",
                    "relay_ip is a wildcard, so set external_ip to the public address clients reach the relay at",
                ));
            }
            raw.relay_ip
        }
    };
    if raw.max_allocations == 0 {
        return Err(ConfigError::new(
            "relay.max_allocations",
            "must be at least 1",
        ));
    }
    if raw.max_allocations_per_user == 0 || raw.max_allocations_per_user > raw.max_allocations {
        return Err(ConfigError::new(
            "relay.max_allocations_per_user",
            "must be between 1 and max_allocations",
        ));
    }
    if raw.max_stream_connections == 0 {
        return Err(ConfigError::new(
            "relay.max_stream_connections",
            "must be at least 1",
        ));
    }
    if raw.stream_idle_timeout.as_secs() == 0 {
        return Err(ConfigError::new(
            "relay.stream_idle_timeout",
            "must be at least 1s",
        ));
    }
    if raw.unauth_requests_per_second == 0 {
        return Err(ConfigError::new(
            "relay.unauth_requests_per_second",
            "must be at least 1",
        ));
    }
    let (relay_ip6, external_ip6) = validate_ip6(&raw, ctx)?;
    if raw.relay_ip.is_ipv6() && relay_ip6.is_some() {
        return Err(ConfigError::new(
            "relay.relay_ip6",
            "relay_ip is already IPv6: give relay_ip an IPv4 address for dual stack",
        ));
    }
    if !(1..=10_000).contains(&raw.max_permissions_per_allocation) {
        return Err(ConfigError::new(
            "relay.max_permissions_per_allocation",
            "must be between 1 and 10000",
        ));
    }
    // Above max_stream_connections it simply never binds (the global cap comes first).
    if raw.max_stream_connections_per_ip == 0 {
        return Err(ConfigError::new(
            "relay.max_stream_connections_per_ip",
            "must be at least 1",
        ));
    }
    if raw.drain_timeout.as_secs() == 0 {
        return Err(ConfigError::new(
            "relay.drain_timeout",
            "must be at least 1s",
        ));
    }
    if raw
        .alternate_server
        .is_some_and(|a| a.ip().is_unspecified() || a.port() == 0)
    {
        return Err(ConfigError::new(
            "relay.alternate_server",
            "must be a concrete ip:port clients can reach",
        ));
    }
    if raw.workers > 1024 {
        return Err(ConfigError::new(
            "relay.workers",
            "must be between 0 (one per CPU core) and 1024",
        ));
    }
    let admin_token = if ctx.component == Component::Relay {
        secret_one(
            ctx,
            "relay.admin_token",
            raw.admin_token,
            raw.admin_token_file.as_deref(),
            ENV_RELAY_ADMIN_TOKEN,
        )?
    } else {
        None
    };
    Ok(RelayConfig {
        listen_udp: raw.listen_udp,
        listen_tcp: raw.listen_tcp,
        listen_tls: raw.listen_tls,
        tls,
        relay_ip: raw.relay_ip,
        external_ip,
        port_range: raw.port_range,
        allowed_peers: raw.allowed_peers,
        denied_peers: raw.denied_peers,
        max_allocations: raw.max_allocations,
        max_allocations_per_user: raw.max_allocations_per_user,
        max_bitrate_per_allocation: raw.max_bitrate_per_allocation,
        metrics_listen: raw.metrics_listen,
        max_stream_connections: raw.max_stream_connections,
        stream_idle_timeout: raw.stream_idle_timeout,
        unauth_requests_per_second: raw.unauth_requests_per_second,
        relay_ip6,
        external_ip6,
        max_permissions_per_allocation: raw.max_permissions_per_allocation,
        max_stream_connections_per_ip: raw.max_stream_connections_per_ip,
        strict_expiry: raw.strict_expiry,
        alternate_server: raw.alternate_server,
        drain_timeout: raw.drain_timeout,
        admin_token,
        proxy_protocol_from: raw.proxy_protocol_from,
        workers: raw.workers,
    })
}

/// `relay_ip6` / `external_ip6`: IPv6 only; the advertised one is required when the bound
/// one is a wildcard.
fn validate_ip6(
    raw: &RawRelay,
    ctx: &Ctx<'_>,
) -> Result<(Option<std::net::IpAddr>, Option<std::net::IpAddr>), ConfigError> {
    for (key, ip) in [
        ("relay.relay_ip6", raw.relay_ip6),
        ("relay.external_ip6", raw.external_ip6),
    ] {
        if ip.is_some_and(|ip| !ip.is_ipv6()) {
            return Err(ConfigError::new(key, "must be an IPv6 address"));
        }
    }
    if raw.external_ip6.is_some_and(|ip| ip.is_unspecified()) {
        return Err(ConfigError::new(
            "relay.external_ip6",
            "must be a concrete address clients can reach, not ::",
        ));
    }
    match (raw.relay_ip6, raw.external_ip6) {
        (None, None) => Ok((None, None)),
        (None, Some(_)) => Err(ConfigError::new(
            "relay.external_ip6",
            "set relay_ip6 (where IPv6 relayed sockets bind) too",
        )),
        (Some(r), Some(e)) => Ok((Some(r), Some(e))),
        (Some(r), None) if !r.is_unspecified() => Ok((Some(r), Some(r))),
        (Some(r), None) => {
            if ctx.component == Component::Relay {
                return Err(ConfigError::new(
                    "relay.external_ip6",
                    "relay_ip6 is a wildcard, so set external_ip6 to the public IPv6 address",
                ));
            }
            Ok((Some(r), Some(r)))
        }
    }
}
