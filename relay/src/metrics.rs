//! Prometheus metrics of one relay instance (SPEC section 3). No per-username labels: the
//! only labels are small fixed sets (direction, reason, request, scope, worker). The data
//! path's counters are per worker and summed on each scrape (`dataplane::counters`).

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];

/// Every metric name is prefixed `switchboard_relay_`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub allocations: Gauge,
    pub allocations_created: Counter,
    pub permissions_created: Counter,
    pub channels_bound: Counter,
    auth_failures: Family<Labels, Counter>,
    denied_peers: Family<Labels, Counter>,
    quota_rejections: Family<Labels, Counter>,
    pub rate_limited: Counter,
    refused: Family<Labels, Counter>,
    /// Requests handed to the crate and awaiting its answer.
    pub pending: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard_relay");
        let allocations = Gauge::default();
        let allocations_created = Counter::default();
        let permissions_created = Counter::default();
        let channels_bound = Counter::default();
        let auth_failures = Family::<Labels, Counter>::default();
        let denied_peers = Family::<Labels, Counter>::default();
        let quota_rejections = Family::<Labels, Counter>::default();
        let rate_limited = Counter::default();
        let refused = Family::<Labels, Counter>::default();
        let pending = Gauge::default();
        registry.register("allocations", "Live TURN allocations", allocations.clone());
        registry.register(
            "allocations_created",
            "TURN allocations created",
            allocations_created.clone(),
        );
        registry.register(
            "permissions_created",
            "Permissions installed or refreshed by CreatePermission",
            permissions_created.clone(),
        );
        registry.register(
            "channels_bound",
            "Channels bound or refreshed by ChannelBind",
            channels_bound.clone(),
        );
        registry.register(
            "auth_failures",
            "Requests refused for credentials, by reason",
            auth_failures.clone(),
        );
        registry.register(
            "denied_peers",
            "Requests naming a peer the policy denies, by request",
            denied_peers.clone(),
        );
        registry.register(
            "quota_rejections",
            "Allocate requests refused with 486, by quota",
            quota_rejections.clone(),
        );
        registry.register(
            "rate_limited",
            "Unauthenticated requests dropped by the per-source limit",
            rate_limited.clone(),
        );
        registry.register(
            "requests_refused",
            "Authenticated requests refused by a limit, by reason (oversized, bad_channel: 400; \
             permission_cap, pending_full: 508)",
            refused.clone(),
        );
        registry.register(
            "pending_requests",
            "Requests handed to the TURN engine and awaiting its answer",
            pending.clone(),
        );
        for reason in ["oversized", "bad_channel", "permission_cap", "pending_full"] {
            let _ = refused.get_or_create(&[("reason", reason)]);
        }
        Self {
            registry,
            allocations,
            allocations_created,
            permissions_created,
            channels_bound,
            auth_failures,
            denied_peers,
            quota_rejections,
            rate_limited,
            refused,
            pending,
        }
    }

    /// `reason`: missing, malformed, expired, bad_password, wrong_realm, bad_nonce,
    /// stale_nonce, wrong_credentials (441).
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    /// `reason`: oversized, bad_channel (400), permission_cap, pending_full (508).
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&[("reason", reason)]).inc();
    }

    /// `request`: create_permission, channel_bind, send.
    pub fn denied_peer(&self, request: &'static str) {
        self.denied_peers
            .get_or_create(&[("request", request)])
            .inc();
    }

    /// `scope`: user, total.
    pub fn quota_rejected(&self, scope: &'static str) {
        self.quota_rejections
            .get_or_create(&[("scope", scope)])
            .inc();
    }

    /// Adds metrics computed on each scrape (e.g. the TCP/TLS listeners').
    pub fn register_collector(&mut self, collector: Box<dyn Collector>) {
        self.registry.register_collector(collector);
    }

    /// The text exposition format.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_prefix_and_fixed_labels() {
        let m = Metrics::new();
        m.auth_failure("expired");
        m.denied_peer("create_permission");
        let text = m.encode();
        assert!(text.contains("switchboard_relay_auth_failures_total{reason=\"expired\"} 1"));
        assert!(
            text.contains("switchboard_relay_denied_peers_total{request=\"create_permission\"} 1")
        );
        assert!(text.contains("switchboard_relay_allocations 0"));
    }
}
