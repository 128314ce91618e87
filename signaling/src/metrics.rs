//! Prometheus metrics, one `Registry` per app (so tests can run several servers in a process).
//! No per-user or per-room labels: label values are event names and error codes only.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, &'static str)>;

/// The service's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub connections: Gauge,
    pub connections_total: Counter,
    pub rooms: Gauge,
    pub peers: Gauge,
    events_relayed: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    pub rate_limited: Counter,
    pub auth_failures: Counter<u64, AtomicU64>,
    pub disconnections: Counter,
    pub rooms_created: Counter,
    pub rooms_refused: Counter,
    pub rooms_expired: Counter,
    pub connections_refused: Counter,
    pub slow_readers_closed: Counter,
    pub credential_refreshes: Counter,
    /// Multi-instance mode: 1 while Redis answers and the registration is valid.
    pub redis_up: Gauge,
    /// Multi-instance mode: live instances registered in Redis.
    pub instances: Gauge,
    pub cluster_events_in: Counter,
    pub cluster_events_out: Counter,
    pub fenced: Counter,
    pub instances_reaped: Counter,
    pub peerjs_connections: Gauge,
    peerjs_messages: Family<Labels, Counter>,
    peerjs_dropped: Family<Labels, Counter>,
    peerjs_refused: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchboard_signaling");
        let m = Self {
            connections: Gauge::default(),
            connections_total: Counter::default(),
            rooms: Gauge::default(),
            peers: Gauge::default(),
            events_relayed: Family::default(),
            errors: Family::default(),
            rate_limited: Counter::default(),
            auth_failures: Counter::default(),
            disconnections: Counter::default(),
            rooms_created: Counter::default(),
            rooms_refused: Counter::default(),
            rooms_expired: Counter::default(),
            connections_refused: Counter::default(),
            slow_readers_closed: Counter::default(),
            credential_refreshes: Counter::default(),
            redis_up: Gauge::default(),
            instances: Gauge::default(),
            cluster_events_in: Counter::default(),
            cluster_events_out: Counter::default(),
            fenced: Counter::default(),
            instances_reaped: Counter::default(),
            peerjs_connections: Gauge::default(),
            peerjs_messages: Family::default(),
            peerjs_dropped: Family::default(),
            peerjs_refused: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Open Socket.IO connections",
            m.connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "Socket.IO connections accepted",
            m.connections_total.clone(),
        );
        registry.register("rooms", "Rooms that exist", m.rooms.clone());
        registry.register("peers", "Peers in at least one room", m.peers.clone());
        registry.register(
            "events_relayed",
            "Events delivered to peers, by event name",
            m.events_relayed.clone(),
        );
        registry.register(
            "errors",
            "Errors answered to clients, by code",
            m.errors.clone(),
        );
        registry.register(
            "rate_limited",
            "Events refused by the per-socket rate limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "auth_failures",
            "Refused handshakes and REST requests",
            m.auth_failures.clone(),
        );
        registry.register(
            "disconnections",
            "Socket.IO connections that ended",
            m.disconnections.clone(),
        );
        registry.register(
            "rooms_created",
            "Persistent rooms created over REST",
            m.rooms_created.clone(),
        );
        registry.register(
            "rooms_refused",
            "REST room creations refused by signaling.max_persistent_rooms",
            m.rooms_refused.clone(),
        );
        registry.register(
            "rooms_expired",
            "Persistent rooms removed after signaling.persistent_room_idle without a member",
            m.rooms_expired.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused by signaling.max_connections_per_ip",
            m.connections_refused.clone(),
        );
        registry.register(
            "slow_readers_closed",
            "Sockets closed because their outbound queue passed its byte cap",
            m.slow_readers_closed.clone(),
        );
        registry.register(
            "credential_refreshes",
            "ice-servers events sent with fresh TURN credentials",
            m.credential_refreshes.clone(),
        );
        registry.register(
            "redis_up",
            "Multi-instance mode: 1 while Redis answers and this instance is registered",
            m.redis_up.clone(),
        );
        registry.register(
            "cluster_instances",
            "Multi-instance mode: signaling instances registered in Redis",
            m.instances.clone(),
        );
        registry.register(
            "cluster_events_in",
            "Multi-instance mode: events read from this instance's inbox (from other instances)",
            m.cluster_events_in.clone(),
        );
        registry.register(
            "cluster_events_out",
            "Multi-instance mode: events queued for peers on other instances",
            m.cluster_events_out.clone(),
        );
        registry.register(
            "cluster_fenced",
            "Multi-instance mode: times this instance found its registration expired and disconnected its sockets",
            m.fenced.clone(),
        );
        registry.register(
            "cluster_instances_reaped",
            "Multi-instance mode: dead instances whose peers this instance removed",
            m.instances_reaped.clone(),
        );
        registry.register(
            "peerjs_connections",
            "PeerJS clients connected to this instance",
            m.peerjs_connections.clone(),
        );
        registry.register(
            "peerjs_messages",
            "PeerJS messages forwarded or queued, by type",
            m.peerjs_messages.clone(),
        );
        registry.register(
            "peerjs_dropped",
            "PeerJS messages dropped, by reason (bad-json, unknown-type, rate-limited, queue-full, expired, unreachable, slow-reader)",
            m.peerjs_dropped.clone(),
        );
        registry.register(
            "peerjs_refused",
            "PeerJS connections refused, by reason (params, key, id, id-taken, limit, origin, per-ip, unavailable)",
            m.peerjs_refused.clone(),
        );
        Self { registry, ..m }
    }

    pub fn relayed(&self, event: &'static str) {
        self.events_relayed
            .get_or_create(&vec![("event", event)])
            .inc();
    }

    pub fn peerjs_message(&self, kind: &'static str) {
        self.peerjs_messages
            .get_or_create(&vec![("type", kind)])
            .inc();
    }

    pub fn peerjs_dropped(&self, reason: &'static str) {
        self.peerjs_dropped
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    pub fn peerjs_refused(&self, reason: &'static str) {
        self.peerjs_refused
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    pub fn error(&self, code: &'static str) {
        self.errors.get_or_create(&vec![("code", code)]).inc();
    }

    /// The Prometheus text exposition.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_metrics_carry_counts_by_event_and_code_without_other_labels() {
        let m = Metrics::new();
        m.connections.inc();
        m.relayed("offer");
        m.relayed("offer");
        m.error("room-full");
        m.rate_limited.inc();
        let text = m.render();
        assert!(
            text.contains("switchboard_signaling_connections 1"),
            "{text}"
        );
        assert!(
            text.contains("switchboard_signaling_events_relayed_total{event=\"offer\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("switchboard_signaling_errors_total{code=\"room-full\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("switchboard_signaling_rate_limited_total 1"),
            "{text}"
        );
    }
}
