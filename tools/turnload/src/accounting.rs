//! Per-flow receive accounting: unique packets, reordering and duplicates from sequence
//! numbers, loss as sent minus unique received. Sans-IO and clock-free.

/// How far behind the highest sequence number a late packet can still be told apart from a
/// duplicate (bits of history kept per flow).
pub const WINDOW: u64 = 4096;
const WORDS: usize = (WINDOW / 64) as usize;

/// What one flow's receiver has seen.
#[derive(Debug, Clone)]
pub struct FlowStats {
    highest: Option<u64>,
    /// Bit `d` set: sequence number `highest - d` has arrived (d < WINDOW), as a ring.
    seen: Box<[u64; WORDS]>,
    /// Distinct sequence numbers received.
    pub unique: u64,
    /// Arrivals of a sequence number lower than one already received (RFC 3550-style
    /// reordering: counted once per late packet).
    pub reordered: u64,
    /// Arrivals of a sequence number already received.
    pub duplicates: u64,
    /// Late arrivals older than the window: counted as reordered and as unique, since they
    /// can no longer be told apart from duplicates (a sign the window is too small).
    pub beyond_window: u64,
}

impl Default for FlowStats {
    fn default() -> Self {
        Self {
            highest: None,
            seen: Box::new([0; WORDS]),
            unique: 0,
            reordered: 0,
            duplicates: 0,
            beyond_window: 0,
        }
    }
}

impl FlowStats {
    fn bit(seq: u64) -> (usize, u64) {
        let slot = seq % WINDOW;
        ((slot / 64) as usize, 1 << (slot % 64))
    }

    /// Records the arrival of `seq`.
    pub fn record(&mut self, seq: u64) {
        let Some(highest) = self.highest else {
            self.highest = Some(seq);
            self.mark(seq);
            self.unique += 1;
            return;
        };
        if seq > highest {
            // Clear the slots of the numbers skipped over (they leave the window or are
            // still missing) before marking the new highest.
            let gap = seq - highest;
            if gap >= WINDOW {
                self.seen.fill(0);
            } else {
                for s in highest + 1..seq {
                    self.unmark(s);
                }
            }
            self.highest = Some(seq);
            self.mark(seq);
            self.unique += 1;
        } else if highest - seq >= WINDOW {
            self.beyond_window += 1;
            self.reordered += 1;
            self.unique += 1;
        } else if self.is_marked(seq) {
            self.duplicates += 1;
        } else {
            self.mark(seq);
            self.reordered += 1;
            self.unique += 1;
        }
    }

    fn mark(&mut self, seq: u64) {
        let (w, b) = Self::bit(seq);
        self.seen[w] |= b;
    }

    fn unmark(&mut self, seq: u64) {
        let (w, b) = Self::bit(seq);
        self.seen[w] &= !b;
    }

    fn is_marked(&self, seq: u64) -> bool {
        let (w, b) = Self::bit(seq);
        self.seen[w] & b != 0
    }

    /// Packets sent on the flow that never arrived.
    #[must_use]
    pub fn lost(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.unique)
    }
}

/// Sum over flows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub reordered: u64,
    pub duplicates: u64,
    pub beyond_window: u64,
}

/// Adds up `flows` against the per-flow counts of packets sent.
#[must_use]
pub fn totals(flows: &[FlowStats], sent: &[u64]) -> Totals {
    let mut t = Totals::default();
    for (f, &s) in flows.iter().zip(sent) {
        t.sent += s;
        t.received += f.unique;
        t.lost += f.lost(s);
        t.reordered += f.reordered;
        t.duplicates += f.duplicates;
        t.beyond_window += f.beyond_window;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(seqs: &[u64]) -> FlowStats {
        let mut f = FlowStats::default();
        for &s in seqs {
            f.record(s);
        }
        f
    }

    #[test]
    fn packets_in_order_count_as_received_with_no_loss_reordering_or_duplicates() {
        let f = feed(&[0, 1, 2, 3, 4]);
        assert_eq!(
            (f.unique, f.reordered, f.duplicates, f.lost(5)),
            (5, 0, 0, 0)
        );
    }

    #[test]
    fn a_missing_sequence_number_counts_as_lost() {
        let f = feed(&[0, 1, 3, 4]);
        assert_eq!((f.unique, f.lost(5)), (4, 1));
        // The tail of a flow lost: packets sent but never seen.
        assert_eq!(feed(&[0, 1]).lost(5), 3);
    }

    #[test]
    fn a_late_packet_counts_as_reordered_not_lost() {
        let f = feed(&[0, 2, 1, 3]);
        assert_eq!(
            (f.unique, f.reordered, f.duplicates, f.lost(4)),
            (4, 1, 0, 0)
        );
    }

    #[test]
    fn a_packet_seen_twice_counts_as_a_duplicate_not_as_received_twice() {
        let f = feed(&[0, 1, 1, 2, 0]);
        assert_eq!(
            (f.unique, f.duplicates, f.reordered, f.lost(3)),
            (3, 2, 0, 0)
        );
    }

    #[test]
    fn a_gap_wider_than_the_window_clears_history_so_old_numbers_are_not_mistaken_for_duplicates() {
        let far = WINDOW * 3 + 5;
        let f = feed(&[0, far, far - 1, far - WINDOW - 1]);
        assert_eq!(f.unique, 4);
        assert_eq!(f.duplicates, 0);
        assert_eq!(f.reordered, 2);
        assert_eq!(f.beyond_window, 1);
    }

    #[test]
    fn a_slot_reused_after_the_window_wraps_is_not_a_duplicate() {
        // Sequence WINDOW lands in slot 0 again, after 0 left the window.
        let seqs: Vec<u64> = (0..=WINDOW + 2).filter(|&s| s != WINDOW + 1).collect();
        let mut f = feed(&seqs);
        f.record(WINDOW + 1);
        assert_eq!((f.duplicates, f.reordered, f.unique), (0, 1, WINDOW + 3));
    }

    #[test]
    fn totals_add_up_every_flow_against_what_it_sent() {
        let flows = [feed(&[0, 1]), feed(&[0, 0, 2])];
        let t = totals(&flows, &[2, 4]);
        assert_eq!(
            t,
            Totals {
                sent: 6,
                received: 4,
                lost: 2,
                reordered: 0,
                duplicates: 1,
                beyond_window: 0
            }
        );
    }
}
