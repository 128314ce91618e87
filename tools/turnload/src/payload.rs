//! The application payload each ChannelData message carries: a marker, the flow id, the
//! flow's sequence number and the send timestamp, then filler up to the asked size.

/// "TLD1": lets the receiver tell our payloads from anything else on the socket.
const MARKER: u32 = 0x544C_4431;

/// Smallest payload: marker (4) + flow (4) + sequence (8) + timestamp (8).
pub const MIN_PAYLOAD: usize = 24;

/// What a payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub flow: u32,
    pub seq: u64,
    /// Nanoseconds since the run's clock origin at which the packet was sent.
    pub sent_ns: u64,
}

/// Writes `stamp` at the start of `buf` (at least [`MIN_PAYLOAD`] bytes; the rest is left
/// as it is, filler).
pub fn write(buf: &mut [u8], stamp: Stamp) {
    buf[0..4].copy_from_slice(&MARKER.to_be_bytes());
    buf[4..8].copy_from_slice(&stamp.flow.to_be_bytes());
    buf[8..16].copy_from_slice(&stamp.seq.to_be_bytes());
    buf[16..24].copy_from_slice(&stamp.sent_ns.to_be_bytes());
}

/// Reads a stamp; `None` for bytes that are not one of our payloads.
#[must_use]
pub fn read(buf: &[u8]) -> Option<Stamp> {
    let b = buf.get(..MIN_PAYLOAD)?;
    let word = |r: std::ops::Range<usize>| -> Option<u64> {
        let mut w = [0u8; 8];
        let s = b.get(r)?;
        w[8 - s.len()..].copy_from_slice(s);
        Some(u64::from_be_bytes(w))
    };
    if word(0..4)? != u64::from(MARKER) {
        return None;
    }
    Some(Stamp {
        flow: u32::try_from(word(4..8)?).ok()?,
        seq: word(8..16)?,
        sent_ns: word(16..24)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_written_into_a_payload_reads_back_unchanged() {
        let mut buf = vec![0xAA; 100];
        let stamp = Stamp {
            flow: 7,
            seq: u64::MAX - 1,
            sent_ns: 123_456_789,
        };
        write(&mut buf, stamp);
        assert_eq!(read(&buf), Some(stamp));
        assert_eq!(buf[99], 0xAA, "filler untouched");
    }

    #[test]
    fn bytes_without_the_marker_or_too_short_are_not_payloads() {
        assert_eq!(read(&[0; 24]), None);
        let mut buf = [0u8; 24];
        write(
            &mut buf,
            Stamp {
                flow: 1,
                seq: 1,
                sent_ns: 1,
            },
        );
        assert_eq!(read(&buf[..23]), None);
    }
}
