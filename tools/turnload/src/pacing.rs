//! The open-loop send schedule: packet `k` of the run is due at `k / rate` seconds and
//! belongs to flow `k mod flows`, so the total rate is even and every flow gets the same
//! share at a fixed phase. Also the sender's lateness book-keeping. Sans-IO: time is an
//! argument (nanoseconds since the run's clock origin).

/// Where the schedule is: the next packet's index, flow and due time.
#[derive(Debug, Clone)]
pub struct Schedule {
    rate: u64,
    flows: u32,
    /// Due time of packet 0.
    origin_ns: u64,
    /// Packets due before this are warm-up (sent but not measured).
    measure_from_ns: u64,
    /// No packet is due at or after this.
    end_ns: u64,
    next: u64,
}

/// One scheduled packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub index: u64,
    pub flow: u32,
    pub due_ns: u64,
    /// Sent during the warm-up: not counted in the measurement.
    pub warmup: bool,
}

impl Schedule {
    /// `rate` packets/s over `flows` flows, starting at `origin_ns`, warm-up until
    /// `origin_ns + warmup_ns`, ending `measure_ns` later.
    #[must_use]
    pub fn new(rate: u64, flows: u32, origin_ns: u64, warmup_ns: u64, measure_ns: u64) -> Self {
        Self {
            rate: rate.max(1),
            flows: flows.max(1),
            origin_ns,
            measure_from_ns: origin_ns + warmup_ns,
            end_ns: origin_ns + warmup_ns + measure_ns,
            next: 0,
        }
    }

    /// Due time of packet `k`: computed from `k` (not accumulated), so it never drifts.
    #[must_use]
    pub fn due_ns(&self, k: u64) -> u64 {
        let offset = u128::from(k) * 1_000_000_000 / u128::from(self.rate);
        self.origin_ns + u64::try_from(offset).unwrap_or(u64::MAX)
    }

    /// The next packet without taking it; `None` once the schedule has ended.
    #[must_use]
    pub fn peek(&self) -> Option<Due> {
        let due_ns = self.due_ns(self.next);
        (due_ns < self.end_ns).then(|| Due {
            index: self.next,
            flow: u32::try_from(self.next % u64::from(self.flows)).unwrap_or(0),
            due_ns,
            warmup: due_ns < self.measure_from_ns,
        })
    }

    /// Takes the next packet if it is due at `now_ns`.
    pub fn poll_due(&mut self, now_ns: u64) -> Option<Due> {
        let due = self.peek()?;
        if due.due_ns > now_ns {
            return None;
        }
        self.next += 1;
        Some(due)
    }

    #[must_use]
    pub fn measure_from_ns(&self) -> u64 {
        self.measure_from_ns
    }

    #[must_use]
    pub fn end_ns(&self) -> u64 {
        self.end_ns
    }
}

/// How late the sender was against the schedule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lateness {
    pub packets: u64,
    /// Packets sent more than the allowed lag after their due time.
    pub late: u64,
    pub max_lag_ns: u64,
}

impl Lateness {
    /// Records a packet due at `due_ns` sent at `sent_ns`, late beyond `allowed_ns`.
    pub fn record(&mut self, due_ns: u64, sent_ns: u64, allowed_ns: u64) {
        let lag = sent_ns.saturating_sub(due_ns);
        self.packets += 1;
        self.max_lag_ns = self.max_lag_ns.max(lag);
        if lag > allowed_ns {
            self.late += 1;
        }
    }

    /// Fraction of packets sent late.
    #[must_use]
    pub fn late_fraction(&self) -> f64 {
        if self.packets == 0 {
            0.0
        } else {
            self.late as f64 / self.packets as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_spaced_evenly_at_the_asked_rate_and_round_robin_over_flows() {
        let mut s = Schedule::new(4, 3, 1_000, 0, 1_000_000_000);
        let mut got = Vec::new();
        while let Some(d) = s.poll_due(u64::MAX) {
            got.push((d.flow, d.due_ns));
        }
        assert_eq!(
            got,
            [
                (0, 1_000),
                (1, 250_001_000),
                (2, 500_001_000),
                (0, 750_001_000)
            ]
        );
    }

    #[test]
    fn nothing_is_taken_before_it_is_due() {
        let mut s = Schedule::new(1_000, 1, 0, 0, 1_000_000_000);
        assert_eq!(s.poll_due(0).map(|d| d.index), Some(0));
        assert_eq!(s.poll_due(999_999), None);
        assert_eq!(s.poll_due(1_000_000).map(|d| d.index), Some(1));
    }

    #[test]
    fn a_sender_that_fell_behind_gets_every_overdue_packet_at_once_in_order() {
        // Open loop: being late never skips or stretches the schedule.
        let mut s = Schedule::new(1_000, 2, 0, 0, 1_000_000_000);
        let burst: Vec<u64> = std::iter::from_fn(|| s.poll_due(4_500_000))
            .map(|d| d.index)
            .collect();
        assert_eq!(burst, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn the_schedule_has_exactly_rate_times_duration_packets_and_marks_the_warmup() {
        let mut s = Schedule::new(1_000, 7, 0, 500_000_000, 2_000_000_000);
        let all: Vec<Due> = std::iter::from_fn(|| s.poll_due(u64::MAX)).collect();
        assert_eq!(all.len(), 2_500);
        assert_eq!(all.iter().filter(|d| d.warmup).count(), 500);
        assert!(all.iter().all(|d| d.due_ns < 2_500_000_000));
    }

    #[test]
    fn due_times_do_not_drift_at_rates_that_do_not_divide_a_second() {
        let s = Schedule::new(3, 1, 0, 0, u64::MAX / 2);
        assert_eq!(s.due_ns(3), 1_000_000_000);
        assert_eq!(s.due_ns(3_000_000), 1_000_000_000_000_000);
    }

    #[test]
    fn lateness_counts_packets_sent_beyond_the_allowed_lag() {
        let mut l = Lateness::default();
        l.record(100, 100, 50);
        l.record(100, 150, 50);
        l.record(100, 151, 50);
        l.record(100, 90, 50);
        assert_eq!((l.packets, l.late, l.max_lag_ns), (4, 1, 51));
        assert!((l.late_fraction() - 0.25).abs() < f64::EPSILON);
    }
}
