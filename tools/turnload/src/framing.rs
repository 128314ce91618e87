//! ChannelData messages (RFC 8656 section 12.4) and the framing of STUN and ChannelData on
//! a TCP or TLS stream (RFC 8656 section 12.5): STUN delimited by its length field,
//! ChannelData padded to a multiple of 4 bytes. Sans-IO: bytes in, frames out.

/// Channel numbers a client may bind (RFC 8656 section 12: 0x4000 through 0x4FFF).
pub const CHANNEL_MIN: u16 = 0x4000;
pub const CHANNEL_MAX: u16 = 0x4FFF;
const CHANNEL_HEADER: usize = 4;

/// Largest frame accepted off a stream: a STUN header and the largest length field.
const MAX_FRAME: usize = 20 + u16::MAX as usize;

/// Appends a ChannelData message for `channel` carrying `data` to `out`; with `pad` (stream
/// legs) zero-padded to a multiple of 4 (RFC 8656 section 12.5; over UDP the padding is
/// optional and omitted).
pub fn push_channel_data(out: &mut Vec<u8>, channel: u16, data: &[u8], pad: bool) {
    let len = u16::try_from(data.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&data[..usize::from(len)]);
    if pad {
        let rem = usize::from(len) % 4;
        if rem != 0 {
            out.extend(std::iter::repeat_n(0, 4 - rem));
        }
    }
}

/// Splits a datagram (or a stream frame) into a ChannelData message's channel and data.
/// `None` when it is not ChannelData (first two bits 01, RFC 8656 section 12.4) or the
/// length field exceeds the bytes.
#[must_use]
pub fn parse_channel_data(raw: &[u8]) -> Option<(u16, &[u8])> {
    if raw.len() < CHANNEL_HEADER || raw[0] >> 6 != 0b01 {
        return None;
    }
    let channel = u16::from_be_bytes([raw[0], raw[1]]);
    let len = usize::from(u16::from_be_bytes([raw[2], raw[3]]));
    raw.get(CHANNEL_HEADER..CHANNEL_HEADER + len)
        .map(|data| (channel, data))
}

/// One message read off a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole STUN message (header included).
    Stun(&'a [u8]),
    /// A ChannelData message's channel number and data (padding removed).
    ChannelData(u16, &'a [u8]),
}

/// Bytes on a stream that are neither STUN nor ChannelData.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stream carries a frame that is neither STUN nor ChannelData (first byte {0:#04x})")]
pub struct FramingError(pub u8);

/// Reassembles frames from stream bytes: `push` what was read, then take frames with
/// `next_frame` until it answers `None`.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    start: usize,
}

impl StreamFramer {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `None` until one has fully arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, FramingError> {
        let avail = &self.buf[self.start..];
        if avail.len() < 4 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([avail[2], avail[3]]));
        let (total, is_stun) = match avail[0] >> 6 {
            0b00 => (20 + len, true),
            0b01 => ((CHANNEL_HEADER + len).div_ceil(4) * 4, false),
            _ => return Err(FramingError(avail[0])),
        };
        debug_assert!(total <= MAX_FRAME);
        if avail.len() < total {
            return Ok(None);
        }
        let begin = self.start;
        self.start += total;
        let frame = &self.buf[begin..begin + total];
        Ok(Some(if is_stun {
            Frame::Stun(frame)
        } else {
            let channel = u16::from_be_bytes([frame[0], frame[1]]);
            Frame::ChannelData(channel, &frame[CHANNEL_HEADER..CHANNEL_HEADER + len])
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_data_on_a_stream_is_padded_to_four_bytes_and_over_udp_is_not() {
        // RFC 8656 section 12.5: padding is mandatory over TCP/TLS, optional over UDP.
        let mut stream = Vec::new();
        push_channel_data(&mut stream, 0x4001, b"hello", true);
        assert_eq!(stream.len(), 12);
        assert_eq!(&stream[..4], &[0x40, 0x01, 0x00, 0x05]);
        assert_eq!(&stream[9..], &[0, 0, 0]);
        let mut dgram = Vec::new();
        push_channel_data(&mut dgram, 0x4001, b"hello", false);
        assert_eq!(dgram.len(), 9);
        assert_eq!(parse_channel_data(&dgram), Some((0x4001, &b"hello"[..])));
    }

    #[test]
    fn a_datagram_that_is_not_channel_data_or_is_truncated_is_not_parsed_as_such() {
        // RFC 8656 section 12.4: the first two bits of ChannelData are 01.
        assert_eq!(parse_channel_data(&[0x00, 0x01, 0x00, 0x00]), None);
        assert_eq!(parse_channel_data(&[0x40, 0x00, 0x00, 0x08, 1, 2]), None);
        assert_eq!(parse_channel_data(&[0x40]), None);
    }

    #[test]
    fn the_framer_reassembles_stun_and_padded_channel_data_split_across_reads() {
        let stun: Vec<u8> = {
            let mut m = vec![0x01, 0x01, 0x00, 0x04, 0x21, 0x12, 0xA4, 0x42];
            m.extend_from_slice(&[9; 12]);
            m.extend_from_slice(&[0x80, 0x22, 0x00, 0x00]);
            m
        };
        let mut bytes = stun.clone();
        push_channel_data(&mut bytes, 0x4002, b"abcdef", true);
        push_channel_data(&mut bytes, 0x4003, b"", true);
        let mut f = StreamFramer::new();
        let mut seen = Vec::new();
        for chunk in bytes.chunks(3) {
            f.push(chunk);
            while let Some(frame) = f.next_frame().expect("valid stream") {
                seen.push(match frame {
                    Frame::Stun(m) => format!("stun {}", m.len()),
                    Frame::ChannelData(c, d) => format!("{c:#x} {}", String::from_utf8_lossy(d)),
                });
            }
        }
        assert_eq!(seen, ["stun 24", "0x4002 abcdef", "0x4003 "]);
    }

    #[test]
    fn the_framer_refuses_bytes_that_are_neither_stun_nor_channel_data() {
        // RFC 8656 section 12.5 leaves no third kind of frame on the stream.
        let mut f = StreamFramer::new();
        f.push(&[0x80, 0, 0, 0]);
        assert_eq!(f.next_frame(), Err(FramingError(0x80)));
    }
}
