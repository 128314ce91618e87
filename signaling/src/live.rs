//! The settings SIGHUP can change without a restart (SPEC section 4): TURN secrets, client
//! tokens / JWT secret and rules, the admin token and CORS origins. They sit behind one
//! `RwLock<Arc<Live>>` in the hub: readers take a cheap `Arc` clone, a reload swaps it whole.
//! Every other key is fixed at start-up; a reload that changes one logs it as needing a
//! restart.

use switchboard_config::{Config, CorsOrigins, Secrets};

use crate::auth::Authenticator;

/// The hot-reloadable settings.
#[derive(Debug)]
pub struct Live {
    pub auth: Authenticator,
    /// The first signs new TURN credentials.
    pub secrets: Secrets,
    pub cors_origins: CorsOrigins,
}

impl Live {
    #[must_use]
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            auth: Authenticator::from_config(&cfg.signaling),
            secrets: cfg.turn.secrets.clone(),
            cors_origins: cfg.signaling.cors_origins.clone(),
        }
    }
}

/// Keys that differ between `old` and `new` and that only a restart applies. Compared by
/// their `Debug` form (secrets print redacted, so none is ever logged).
#[must_use]
pub fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.signaling, &new.signaling);
    let d = |v: &dyn std::fmt::Debug| format!("{v:?}");
    let keys: [(&'static str, String, String); 21] = [
        ("log_level", d(&old.log_level), d(&new.log_level)),
        ("log_format", d(&old.log_format), d(&new.log_format)),
        ("turn.realm", d(&old.turn.realm), d(&new.turn.realm)),
        (
            "turn.credential_ttl",
            d(&old.turn.credential_ttl),
            d(&new.turn.credential_ttl),
        ),
        (
            "turn.public_host",
            d(&old.turn.public_host),
            d(&new.turn.public_host),
        ),
        (
            "turn.advertise",
            d(&old.turn.advertise),
            d(&new.turn.advertise),
        ),
        (
            "turn.extra_uris",
            d(&old.turn.extra_uris),
            d(&new.turn.extra_uris),
        ),
        ("turn.relays", d(&old.turn.relays), d(&new.turn.relays)),
        ("signaling.listen", d(&o.listen), d(&n.listen)),
        (
            "signaling.max_peers_per_room",
            d(&o.max_peers_per_room),
            d(&n.max_peers_per_room),
        ),
        (
            "signaling.max_payload_bytes",
            d(&o.max_payload_bytes),
            d(&n.max_payload_bytes),
        ),
        (
            "signaling.max_rooms_per_socket",
            d(&o.max_rooms_per_socket),
            d(&n.max_rooms_per_socket),
        ),
        (
            "signaling.rate_limit_per_second",
            d(&o.rate_limit_per_second),
            d(&n.rate_limit_per_second),
        ),
        (
            "signaling.rate_limit_burst",
            d(&o.rate_limit_burst),
            d(&n.rate_limit_burst),
        ),
        (
            "signaling.redis_url",
            d(&o.redis_url.is_some()),
            d(&n.redis_url.is_some()),
        ),
        (
            "signaling.metrics_listen",
            d(&o.metrics_listen),
            d(&n.metrics_listen),
        ),
        (
            "signaling.max_connections_per_ip",
            d(&o.max_connections_per_ip),
            d(&n.max_connections_per_ip),
        ),
        (
            "signaling.max_persistent_rooms",
            d(&o.max_persistent_rooms),
            d(&n.max_persistent_rooms),
        ),
        (
            "signaling.persistent_room_idle",
            d(&o.persistent_room_idle),
            d(&n.persistent_room_idle),
        ),
        (
            "signaling.socketio_path",
            d(&o.socketio_path),
            d(&n.socketio_path),
        ),
        ("signaling.demo", d(&o.demo), d(&n.demo)),
    ];
    let mut out: Vec<&'static str> = keys
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(k, _, _)| k)
        .collect();
    if format!("{:?}", o.peerjs) != format!("{:?}", n.peerjs) {
        out.push("signaling.peerjs");
    }
    // The relay's listeners make the URIs signaling hands out.
    if format!("{:?}", old.relay) != format!("{:?}", new.relay) {
        out.push("relay");
    }
    out
}

#[cfg(test)]
mod tests {
    use switchboard_config::{Component, parse};

    use super::*;

    fn cfg(extra: &str) -> Config {
        let text = format!(
            "[turn]\nsecrets = [\"s-0123456789abcdef0123\"]\npublic_host = \"127.0.0.1\"\n[signaling]\n{extra}\n"
        );
        parse(&text, None, Component::Signaling, &|_| None).expect("valid config")
    }

    #[test]
    fn only_keys_that_need_a_restart_are_reported_and_hot_ones_are_not() {
        let old = cfg("listen = \"127.0.0.1:8080\"\nauth = \"token\"\ntokens = [\"a\"]");
        let hot = cfg(
            "listen = \"127.0.0.1:8080\"\nauth = \"token\"\ntokens = [\"b\"]\ncors_origins = [\"https://x.example\"]",
        );
        assert!(needs_restart(&old, &hot).is_empty());
        let cold = cfg(
            "listen = \"127.0.0.1:9090\"\nauth = \"token\"\ntokens = [\"a\"]\nmax_peers_per_room = 3",
        );
        assert_eq!(
            needs_restart(&old, &cold),
            ["signaling.listen", "signaling.max_peers_per_room"]
        );
    }
}
