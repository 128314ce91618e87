//! Per-worker counters of the data path: each written by its worker's thread only (a load
//! and a store, no locked instruction, no cache line shared with another worker), summed
//! over the workers when `/metrics` is scraped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::Gauge;

use super::WorkerShared;

/// One worker's counters. Only the worker's own thread writes them.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Counters {
    pub bytes_to_peer: AtomicU64,
    pub packets_to_peer: AtomicU64,
    pub bytes_to_client: AtomicU64,
    pub packets_to_client: AtomicU64,
    /// Datagrams the kernel would not take (send buffer full): dropped, as UDP does.
    pub send_failed: AtomicU64,
    /// Requests dropped because the engine's queue was full.
    pub engine_busy: AtomicU64,
    /// Datagrams over the allocation's bitrate budget.
    pub bitrate_dropped: AtomicU64,
    /// Peer datagrams no ChannelData or Data indication can carry.
    pub oversized_dropped: AtomicU64,
}

/// Adds `n` to a counter. A UDP worker's counters have one writer (its thread), the stream
/// worker's several (the control runtime's threads): an atomic add serves both, and its
/// cache line is this worker's alone.
#[inline]
pub fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn sum(workers: &[Arc<WorkerShared>], f: impl Fn(&Counters) -> &AtomicU64) -> u64 {
    workers
        .iter()
        .map(|w| f(&w.counters).load(Ordering::Relaxed))
        .fold(0, u64::wrapping_add)
}

/// The data plane's metrics, registered as a collector (prefix `switchboard_relay_`).
#[derive(Debug)]
pub struct DataPlaneMetrics {
    workers: Vec<Arc<WorkerShared>>,
}

impl DataPlaneMetrics {
    #[must_use]
    pub fn new(workers: Vec<Arc<WorkerShared>>) -> Self {
        Self { workers }
    }
}

type Labels = [(&'static str, &'static str); 1];

impl Collector for DataPlaneMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let w = &self.workers;
        for (name, help, to_peer, to_client) in [
            (
                "relayed_bytes",
                "Application bytes relayed, by direction",
                sum(w, |c| &c.bytes_to_peer),
                sum(w, |c| &c.bytes_to_client),
            ),
            (
                "relayed_packets",
                "Datagrams relayed, by direction",
                sum(w, |c| &c.packets_to_peer),
                sum(w, |c| &c.packets_to_client),
            ),
        ] {
            let mut e = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (direction, value) in [("client_to_peer", to_peer), ("peer_to_client", to_client)] {
                let labels: Labels = [("direction", direction)];
                ConstCounter::new(value).encode(e.encode_family(&labels)?)?;
            }
        }
        for (name, help, value) in [
            (
                "send_buffer_dropped_packets",
                "Datagrams dropped because a socket's send buffer was full",
                sum(w, |c| &c.send_failed),
            ),
            (
                "bitrate_dropped_packets",
                "Datagrams dropped by the per-allocation bitrate limit",
                sum(w, |c| &c.bitrate_dropped),
            ),
            (
                "oversized_dropped_packets",
                "Peer datagrams dropped because no Data indication or ChannelData can carry them",
                sum(w, |c| &c.oversized_dropped),
            ),
            (
                "engine_busy_dropped_requests",
                "UDP requests dropped because the TURN engine's queue was full",
                sum(w, |c| &c.engine_busy),
            ),
        ] {
            let c = ConstCounter::new(value);
            let e = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            c.encode(e)?;
        }
        let g = Gauge::<i64>::default();
        let mut e = encoder.encode_descriptor(
            "worker_allocations",
            "Live allocations served by each data-plane worker",
            None,
            g.metric_type(),
        )?;
        for worker in w {
            let id = worker.id.to_string();
            let labels = [("worker", id.as_str())];
            let g = Gauge::<i64>::default();
            g.set(i64::try_from(worker.allocations()).unwrap_or(i64::MAX));
            g.encode(e.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
