//! The receive side's book: every payload that comes back is recorded against its flow
//! (sequence accounting) and its latency (HDR histogram, nanoseconds). Warm-up packets and
//! bytes that are not our payloads are counted apart. Clock-free: the arrival time is given.

use hdrhistogram::Histogram;

use crate::accounting::FlowStats;
use crate::payload;

/// Highest latency the histogram tracks (larger values are clamped to it), ns.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

#[derive(Debug)]
pub struct Recorder {
    pub flows: Vec<FlowStats>,
    pub latency_ns: Histogram<u64>,
    measure_from_ns: u64,
    /// Payloads sent during the warm-up that came back.
    pub warmup_received: u64,
    /// ChannelData whose data is not one of our payloads, or names an unknown flow.
    pub foreign: u64,
}

impl Recorder {
    #[must_use]
    pub fn new(flows: usize, measure_from_ns: u64) -> Self {
        Self {
            flows: vec![FlowStats::default(); flows],
            // 3 significant figures from 1 ns to 60 s: bounds are constants, so this
            // cannot fail.
            latency_ns: Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
                .unwrap_or_else(|_| unreachable!("constant histogram bounds are valid")),
            measure_from_ns,
            warmup_received: 0,
            foreign: 0,
        }
    }

    /// Records the ChannelData `data` received at `now_ns`.
    pub fn record(&mut self, data: &[u8], now_ns: u64) {
        let Some(stamp) = payload::read(data) else {
            self.foreign += 1;
            return;
        };
        let Some(flow) = self.flows.get_mut(stamp.flow as usize) else {
            self.foreign += 1;
            return;
        };
        if stamp.sent_ns < self.measure_from_ns {
            self.warmup_received += 1;
            return;
        }
        flow.record(stamp.seq);
        self.latency_ns
            .saturating_record(now_ns.saturating_sub(stamp.sent_ns).max(1));
    }

    /// The latency at quantile `q` in microseconds (0 with no samples).
    #[must_use]
    pub fn latency_us(&self, q: f64) -> f64 {
        if self.latency_ns.is_empty() {
            return 0.0;
        }
        self.latency_ns.value_at_quantile(q) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Stamp;

    fn packet(flow: u32, seq: u64, sent_ns: u64) -> Vec<u8> {
        let mut buf = vec![0; 32];
        payload::write(&mut buf, Stamp { flow, seq, sent_ns });
        buf
    }

    #[test]
    fn measured_packets_count_per_flow_and_their_latency_is_recorded() {
        let mut r = Recorder::new(2, 1_000);
        r.record(&packet(0, 5, 2_000), 52_000);
        r.record(&packet(1, 9, 2_000), 102_000);
        assert_eq!((r.flows[0].unique, r.flows[1].unique), (1, 1));
        assert_eq!(r.latency_ns.len(), 2);
        assert!((r.latency_us(1.0) - 100.0).abs() < 0.1);
    }

    #[test]
    fn warmup_packets_and_foreign_bytes_are_counted_apart_from_the_measurement() {
        let mut r = Recorder::new(1, 1_000);
        r.record(&packet(0, 0, 999), 5_000);
        r.record(b"not a payload at all, no marker", 5_000);
        r.record(&packet(7, 0, 2_000), 5_000);
        assert_eq!((r.warmup_received, r.foreign), (1, 2));
        assert_eq!(r.flows[0].unique, 0);
        assert!(r.latency_ns.is_empty());
    }
}
