//! The sender thread: walks the open-loop [`Schedule`], stamps each payload with its flow,
//! sequence number and send time, and sends it as ChannelData on the flow's leg. It never
//! waits for the receiver (open loop), so the server's slowness cannot slow the offered
//! load; the sender's own lateness against the schedule is recorded apart, so that a run
//! whose sender fell behind is refused rather than reported, and latency is measured from
//! the moment a packet actually left (not its due time, which would add the sender's
//! wake-up jitter to every figure).

use std::io;
use std::time::Duration;

use crate::framing::push_channel_data;
use crate::legs::{Clock, DataTx};
use crate::pacing::{Lateness, Schedule};
use crate::payload::{self, Stamp};

/// Sleep when the next packet is further away than this; closer, yield in a loop. A sleep
/// overshoots by the timer slack (about 50 µs) and, on a busy core, by the wait for the CPU
/// after waking: measured here, sleeping through gaps of 20 µs and more left 7 % of packets
/// over 2 ms late at 20 000 packets/s, yielding none. A yielding sender still lets the
/// receiver (on the same core) run whenever it has work.
const SLEEP_ABOVE: Duration = Duration::from_micros(200);
/// Wake this much before the due time, to absorb the sleep's overshoot.
const WAKE_EARLY: Duration = Duration::from_micros(100);

/// What the sender needs: one leg and one channel per flow.
#[derive(Debug)]
pub struct SenderPlan {
    pub legs: Vec<DataTx>,
    pub channels: Vec<u16>,
    pub schedule: Schedule,
    pub clock: Clock,
    pub size: usize,
    /// Pad ChannelData to 4 bytes (stream legs, RFC 8656 section 12.5).
    pub pad: bool,
    pub max_lag: Duration,
}

/// What the sender did.
#[derive(Debug, Clone, Default)]
pub struct SenderReport {
    /// Measured packets handed to the kernel (or the stream's outbox), per flow.
    pub sent: Vec<u64>,
    pub warmup_sent: u64,
    /// Packets that could not be sent: socket send buffer or stream outbox full.
    pub dropped: u64,
    /// Send calls that failed otherwise (e.g. ICMP errors reported on a later send).
    pub errors: u64,
    /// Lateness of the measured packets against their due times.
    pub lateness: Lateness,
    /// When the last measured packet went out.
    pub last_sent_ns: u64,
}

enum Sent {
    Ok,
    Full,
    Error,
}

fn send_udp(sock: &std::net::UdpSocket, buf: &[u8], clock: &Clock, give_up_ns: u64) -> Sent {
    loop {
        match sock.send(buf) {
            Ok(_) => return Sent::Ok,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if clock.now_ns() > give_up_ns {
                    return Sent::Full;
                }
                std::thread::yield_now();
            }
            // A queued ICMP error surfaced on this send; the datagram was not sent. Once.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                return match sock.send(buf) {
                    Ok(_) => Sent::Ok,
                    Err(_) => Sent::Error,
                };
            }
            Err(_) => return Sent::Error,
        }
    }
}

fn wait_until(clock: &Clock, due_ns: u64) {
    let now = clock.now_ns();
    if due_ns <= now {
        return;
    }
    let left = Duration::from_nanos(due_ns - now);
    if left > SLEEP_ABOVE {
        std::thread::sleep(left - WAKE_EARLY);
    } else {
        // Let the receiver (on the same core) run while we wait.
        std::thread::yield_now();
    }
}

/// Runs the whole schedule; returns when its last packet is sent.
#[must_use]
pub fn run(mut plan: SenderPlan) -> SenderReport {
    let flows = plan.legs.len();
    let mut report = SenderReport {
        sent: vec![0; flows],
        ..SenderReport::default()
    };
    let mut seqs = vec![0u64; flows];
    let mut data = vec![0x5A_u8; plan.size];
    let mut frame = Vec::with_capacity(plan.size + 8);
    let max_lag_ns = u64::try_from(plan.max_lag.as_nanos()).unwrap_or(u64::MAX);
    let measure_from_ns = plan.schedule.measure_from_ns();
    while let Some(next) = plan.schedule.peek() {
        wait_until(&plan.clock, next.due_ns);
        let now = plan.clock.now_ns();
        while let Some(due) = plan.schedule.poll_due(now) {
            let flow = due.flow as usize;
            let (Some(leg), Some(&channel)) = (plan.legs.get(flow), plan.channels.get(flow)) else {
                continue;
            };
            let seq = seqs[flow];
            seqs[flow] += 1;
            let stamp_ns = plan.clock.now_ns();
            // Warm-up or measured by the stamp, exactly as the receiver will judge it.
            let warmup = stamp_ns < measure_from_ns;
            payload::write(
                &mut data,
                Stamp {
                    flow: due.flow,
                    seq,
                    sent_ns: stamp_ns,
                },
            );
            let result = match leg {
                DataTx::Udp(sock) => {
                    frame.clear();
                    push_channel_data(&mut frame, channel, &data, false);
                    send_udp(sock, &frame, &plan.clock, due.due_ns + max_lag_ns)
                }
                DataTx::Stream(outbox) => {
                    if outbox.push(|buf| push_channel_data(buf, channel, &data, plan.pad)) {
                        Sent::Ok
                    } else {
                        Sent::Full
                    }
                }
            };
            let sent_ns = plan.clock.now_ns();
            match result {
                Sent::Ok if warmup => report.warmup_sent += 1,
                Sent::Ok => {
                    report.sent[flow] += 1;
                    report.last_sent_ns = sent_ns;
                }
                Sent::Full => report.dropped += 1,
                Sent::Error => report.errors += 1,
            }
            if !warmup {
                report.lateness.record(due.due_ns, sent_ns, max_lag_ns);
            }
        }
    }
    report
}
