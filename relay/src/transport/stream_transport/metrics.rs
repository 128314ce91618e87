//! Metrics of the TCP/TLS listeners: connections open, accepted and closed (by reason) per
//! transport, counted by the listener's transport as it reads their events; refusals over
//! the cap and failed TLS handshakes read from the stream server on each scrape.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::transport::stream::{CloseReason, StreamServer, Transport};

type ByTransport = [(&'static str, &'static str); 1];
type ByReason = [(&'static str, &'static str); 2];

fn label(t: Transport) -> &'static str {
    match t {
        Transport::Tcp => "tcp",
        Transport::Tls => "tls",
    }
}

fn reason(r: &CloseReason) -> &'static str {
    match r {
        CloseReason::PeerClosed => "peer_closed",
        CloseReason::Idle => "idle",
        CloseReason::NoAllocation => "no_allocation",
        CloseReason::Framing(_) => "framing",
        CloseReason::Io(_) => "io",
        CloseReason::ServerClosed => "server_closed",
    }
}

/// Registered with the relay's registry as a collector (prefix `switchboard_relay_`).
#[derive(Debug)]
pub struct StreamMetrics {
    server: StreamServer,
    open: Family<ByTransport, Gauge>,
    accepted: Family<ByTransport, Counter>,
    closed: Family<ByReason, Counter>,
}

impl StreamMetrics {
    #[must_use]
    pub fn new(server: StreamServer) -> Self {
        let m = Self {
            server,
            open: Family::default(),
            accepted: Family::default(),
            closed: Family::default(),
        };
        for t in [Transport::Tcp, Transport::Tls] {
            let _ = m.open.get_or_create(&[("transport", label(t))]);
            let _ = m.accepted.get_or_create(&[("transport", label(t))]);
        }
        m
    }

    /// A connection (a TLS one after its handshake) was handed to the core.
    pub fn opened(&self, t: Transport) {
        self.open.get_or_create(&[("transport", label(t))]).inc();
        self.accepted
            .get_or_create(&[("transport", label(t))])
            .inc();
    }

    /// A connection handed to the core ended.
    pub fn closed(&self, t: Transport, why: &CloseReason) {
        self.open.get_or_create(&[("transport", label(t))]).dec();
        self.closed
            .get_or_create(&[("transport", label(t)), ("reason", reason(why))])
            .inc();
    }
}

impl Collector for StreamMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = encoder.encode_descriptor(
            "stream_connections_open",
            "Open TCP/TLS client connections, by transport",
            None,
            self.open.metric_type(),
        )?;
        self.open.encode(e)?;
        let e = encoder.encode_descriptor(
            "stream_connections_accepted",
            "TCP/TLS client connections accepted (TLS: handshake done), by transport",
            None,
            self.accepted.metric_type(),
        )?;
        self.accepted.encode(e)?;
        let e = encoder.encode_descriptor(
            "stream_connections_closed",
            "TCP/TLS client connections closed, by transport and reason",
            None,
            self.closed.metric_type(),
        )?;
        self.closed.encode(e)?;
        let stats = self.server.stats();
        for (name, help, value) in [
            (
                "stream_connections_rejected_over_cap",
                "TCP/TLS connections refused at max_stream_connections",
                stats.rejected_over_cap,
            ),
            (
                "stream_connections_rejected_per_ip",
                "TCP/TLS connections refused at max_stream_connections_per_ip",
                stats.rejected_per_ip,
            ),
            (
                "stream_tls_handshakes_failed",
                "TLS handshakes that failed or timed out",
                stats.handshake_failed,
            ),
        ] {
            let c = ConstCounter::new(value);
            let e = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            c.encode(e)?;
        }
        Ok(())
    }
}
