//! Sans-IO framing of STUN and ChannelData messages on a TCP or TLS stream.
//!
//! On a stream, TURN messages are not delimited by datagrams: each one is delimited by
//! its own length field ([RFC 8656 §12.5], [RFC 5766 §2.1] and §11.5, in the spirit of
//! RFC 4571).
//!
//! - STUN ([RFC 8489 §5]): first two bits `00`, a 20-byte header whose length field is
//!   the body length (a multiple of 4) and the magic cookie `0x2112A442` at bytes 4..8.
//! - ChannelData ([RFC 8656 §12.4]): a channel number in `0x4000..=0x7FFF` (so a first
//!   byte in `0x40..=0x7F`; RFC 8656 narrowed the range to `0x4FFF`, but RFC 5766 allowed
//!   up to `0x7FFF`, coturn's clients bind such channels and the `turn` crate accepts
//!   them, as does the UDP path in `wire`), a 2-byte length, then the application data. On a stream the
//!   message is padded to a multiple of 4 bytes and the padding is not part of the
//!   message ([RFC 8656 §12.5]).
//!
//! [`Framer`] is fed bytes as they arrive and yields whole messages without padding;
//! [`encode_for_stream`] and [`encode_channel_data`] produce the padded form to write.
//! Nothing here touches a socket or a clock, so every rule is tested directly.
//!
//! Written by hand because no maintained crate frames TURN on streams; the `turn` crate
//! only speaks UDP.
//!
//! [RFC 8489 §5]: https://www.rfc-editor.org/rfc/rfc8489#section-5
//! [RFC 8656 §12.4]: https://www.rfc-editor.org/rfc/rfc8656#section-12.4
//! [RFC 8656 §12.5]: https://www.rfc-editor.org/rfc/rfc8656#section-12.5
//! [RFC 5766 §2.1]: https://www.rfc-editor.org/rfc/rfc5766#section-2.1

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// STUN magic cookie ([RFC 8489 §5](https://www.rfc-editor.org/rfc/rfc8489#section-5)).
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// STUN header length in bytes.
pub const STUN_HEADER_LEN: usize = 20;
/// ChannelData header length in bytes (channel number + length).
pub const CHANNEL_DATA_HEADER_LEN: usize = 4;
/// Lowest channel number ([RFC 8656 §12](https://www.rfc-editor.org/rfc/rfc8656#section-12)).
pub const MIN_CHANNEL: u16 = 0x4000;
/// Highest channel number we frame: RFC 5766 section 11's `0x7FFF` (the `turn` crate binds
/// up to it and coturn's clients use it), not RFC 8656 section 12's `0x4FFF`.
pub const MAX_CHANNEL: u16 = 0x7FFF;
/// A bound on every message the 16-bit length fields can describe (the 20-byte STUN
/// header plus 65535), so a default [`Framer`] refuses no well-formed message.
pub const MAX_MESSAGE_LEN: usize = STUN_HEADER_LEN + u16::MAX as usize;

/// What kind of message a [`Frame`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A STUN/TURN request, response or indication.
    Stun,
    /// A ChannelData message on this channel number.
    ChannelData { channel: u16 },
}

/// One complete message taken off the stream: header and body, without stream padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    kind: FrameKind,
    bytes: Bytes,
}

impl Frame {
    #[must_use]
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The whole message exactly as a UDP client would have sent it as one datagram.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    #[must_use]
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// The application data of a ChannelData message; `None` for STUN.
    #[must_use]
    pub fn channel_payload(&self) -> Option<&[u8]> {
        match self.kind {
            FrameKind::ChannelData { .. } => self.bytes.get(CHANNEL_DATA_HEADER_LEN..),
            FrameKind::Stun => None,
        }
    }
}

/// Why a stream cannot be framed. Every variant means the peer is not speaking TURN
/// (or is hostile): the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("first byte {0:#04x} starts neither a stun nor a channeldata message")]
    UnknownMessage(u8),
    #[error("bad stun magic cookie {0:#010x}")]
    BadMagicCookie(u32),
    #[error("stun message length {0} is not a multiple of 4")]
    UnalignedStunLength(u16),
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
}

/// Why a message cannot be encoded for a stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("channel number {0:#06x} is outside 0x4000..=0x7fff")]
    BadChannel(u16),
    #[error("channeldata payload of {0} bytes exceeds 65535")]
    PayloadTooLarge(usize),
}

/// Incremental decoder for one stream: [`push`](Self::push) bytes in,
/// [`poll_frame`](Self::poll_frame) messages out.
///
/// After an error every later poll returns the same error: the stream has lost its
/// framing and must be closed.
#[derive(Debug)]
pub struct Framer {
    buf: BytesMut,
    /// Padding of the last ChannelData message still to discard.
    skip: usize,
    max_message_len: usize,
    failed: Option<FramingError>,
}

impl Default for Framer {
    fn default() -> Self {
        Self::new()
    }
}

impl Framer {
    /// A framer accepting any message the length fields can describe.
    #[must_use]
    pub fn new() -> Self {
        Self::with_max_message_len(MAX_MESSAGE_LEN)
    }

    /// A framer rejecting, as soon as its header is seen, any message (header included,
    /// padding excluded) longer than `max`.
    #[must_use]
    pub fn with_max_message_len(max: usize) -> Self {
        Self {
            buf: BytesMut::with_capacity(4096),
            skip: 0,
            max_message_len: max,
            failed: None,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        let skipped = self.skip.min(data.len());
        self.skip -= skipped;
        if let Some(rest) = data.get(skipped..) {
            self.buf.extend_from_slice(rest);
        }
    }

    /// Bytes received but not yet returned as a frame (a partial message).
    #[must_use]
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `Ok(None)` if more bytes are needed, or the reason the
    /// stream is unframeable.
    pub fn poll_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        match self.next_frame() {
            Err(e) => {
                self.failed = Some(e.clone());
                self.buf.clear();
                Err(e)
            }
            ok => ok,
        }
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, FramingError> {
        let Some(&first) = self.buf.first() else {
            return Ok(None);
        };
        match first >> 6 {
            0b00 => self.next_stun(),
            0b01 => self.next_channel_data(),
            _ => Err(FramingError::UnknownMessage(first)),
        }
    }

    fn next_stun(&mut self) -> Result<Option<Frame>, FramingError> {
        // Check each header field as soon as its bytes are in, so garbage and oversized
        // lengths are refused before anything more is buffered.
        let Some(len) = be_u16(&self.buf, 2) else {
            return Ok(None);
        };
        if len % 4 != 0 {
            return Err(FramingError::UnalignedStunLength(len));
        }
        let total = STUN_HEADER_LEN + usize::from(len);
        self.check_len(total)?;
        if let Some(cookie) = self.buf.get(4..8) {
            let cookie = u32::from_be_bytes([cookie[0], cookie[1], cookie[2], cookie[3]]);
            if cookie != MAGIC_COOKIE {
                return Err(FramingError::BadMagicCookie(cookie));
            }
        }
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let bytes = self.buf.split_to(total).freeze();
        Ok(Some(Frame {
            kind: FrameKind::Stun,
            bytes,
        }))
    }

    fn next_channel_data(&mut self) -> Result<Option<Frame>, FramingError> {
        let (Some(channel), Some(len)) = (be_u16(&self.buf, 0), be_u16(&self.buf, 2)) else {
            return Ok(None);
        };
        let total = CHANNEL_DATA_HEADER_LEN + usize::from(len);
        self.check_len(total)?;
        if self.buf.len() < total {
            self.buf.reserve(padded_len(total) - self.buf.len());
            return Ok(None);
        }
        let bytes = self.buf.split_to(total).freeze();
        // Drop the padding now if it is here, else as it arrives: the message is
        // delivered without waiting for it.
        let pad = padded_len(total) - total;
        let here = pad.min(self.buf.len());
        self.buf.advance(here);
        self.skip = pad - here;
        Ok(Some(Frame {
            kind: FrameKind::ChannelData { channel },
            bytes,
        }))
    }

    fn check_len(&self, len: usize) -> Result<(), FramingError> {
        if len > self.max_message_len {
            return Err(FramingError::TooLarge {
                len,
                max: self.max_message_len,
            });
        }
        Ok(())
    }
}

fn be_u16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// `len` rounded up to a multiple of 4.
#[must_use]
pub fn padded_len(len: usize) -> usize {
    len.next_multiple_of(4)
}

/// Appends an already-encoded STUN or ChannelData message to `dst` in its stream form:
/// padded with zeros to a multiple of 4 bytes ([RFC 8656 §12.5]). STUN messages are
/// always aligned, so only ChannelData ever gains padding.
///
/// [RFC 8656 §12.5]: https://www.rfc-editor.org/rfc/rfc8656#section-12.5
pub fn encode_for_stream(message: &[u8], dst: &mut BytesMut) {
    let pad = padded_len(message.len()) - message.len();
    dst.reserve(message.len() + pad);
    dst.extend_from_slice(message);
    dst.put_bytes(0, pad);
}

/// Appends a ChannelData message for `channel` carrying `payload`, padded for a stream.
pub fn encode_channel_data(
    channel: u16,
    payload: &[u8],
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    if !(MIN_CHANNEL..=MAX_CHANNEL).contains(&channel) {
        return Err(EncodeError::BadChannel(channel));
    }
    let len =
        u16::try_from(payload.len()).map_err(|_| EncodeError::PayloadTooLarge(payload.len()))?;
    let total = CHANNEL_DATA_HEADER_LEN + payload.len();
    dst.reserve(padded_len(total));
    dst.put_u16(channel);
    dst.put_u16(len);
    dst.extend_from_slice(payload);
    dst.put_bytes(0, padded_len(total) - total);
    Ok(())
}

#[cfg(test)]
#[path = "framing/tests.rs"]
mod tests;
