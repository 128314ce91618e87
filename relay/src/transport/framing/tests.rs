//! Unit tests of stream framing: each names the RFC rule it checks.

use super::*;

/// A STUN message of `body_len` bytes (a Binding request with an opaque body).
fn stun(body_len: usize, fill: u8) -> Vec<u8> {
    let mut m = Vec::with_capacity(STUN_HEADER_LEN + body_len);
    m.extend_from_slice(&0x0001u16.to_be_bytes());
    m.extend_from_slice(
        &u16::try_from(body_len)
            .expect("test body fits")
            .to_be_bytes(),
    );
    m.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m.extend_from_slice(&[0xA5; 12]);
    m.resize(STUN_HEADER_LEN + body_len, fill);
    m
}

/// A ChannelData message (unpadded) carrying `payload`.
fn channel_data(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&channel.to_be_bytes());
    m.extend_from_slice(&u16::try_from(payload.len()).expect("fits").to_be_bytes());
    m.extend_from_slice(payload);
    m
}

fn stream_form(message: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_for_stream(message, &mut out);
    out.to_vec()
}

fn drain(f: &mut Framer) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(frame) = f.poll_frame().expect("valid stream") {
        out.push(frame.into_bytes().to_vec());
    }
    out
}

#[test]
fn a_stun_message_fed_byte_by_byte_comes_out_whole_once_complete_rfc8656_s12_5() {
    let msg = stun(8, 0x11);
    let mut f = Framer::new();
    for (i, b) in msg.iter().enumerate() {
        assert_eq!(f.poll_frame(), Ok(None), "no frame before byte {i}");
        f.push(&[*b]);
    }
    let frame = f.poll_frame().expect("valid").expect("complete");
    assert_eq!(frame.kind(), FrameKind::Stun);
    assert_eq!(frame.as_bytes(), &msg[..]);
    assert_eq!(f.poll_frame(), Ok(None));
    assert_eq!(f.buffered_len(), 0);
}

#[test]
fn a_padded_channeldata_fed_byte_by_byte_comes_out_without_padding_rfc8656_s12_5() {
    let msg = channel_data(0x4001, b"hello");
    let wire = stream_form(&msg);
    assert_eq!(wire.len(), 12, "4 + 5 padded to 12");
    let mut f = Framer::new();
    let mut frames = Vec::new();
    for b in &wire {
        f.push(&[*b]);
        frames.extend(drain(&mut f));
    }
    assert_eq!(frames, vec![msg]);
    assert_eq!(f.buffered_len(), 0, "padding consumed");
}

#[test]
fn many_messages_in_one_read_come_out_in_order_rfc8656_s12_5() {
    let msgs = vec![
        stun(0, 0),
        channel_data(0x4000, b"a"),
        stun(12, 7),
        channel_data(0x4FFF, &[9; 6]),
        channel_data(0x7FFF, &[8; 5]),
        channel_data(0x4123, b""),
        stun(4, 3),
    ];
    let wire: Vec<u8> = msgs.iter().flat_map(|m| stream_form(m)).collect();
    let mut f = Framer::new();
    f.push(&wire);
    assert_eq!(drain(&mut f), msgs);
}

#[test]
fn channeldata_of_lengths_1_to_4_consumes_exactly_its_padding_rfc8656_s12_5() {
    for len in 1..=4usize {
        let payload = vec![0xEE; len];
        let msg = channel_data(0x4002, &payload);
        let next = stun(4, 1);
        let mut wire = stream_form(&msg);
        assert_eq!(wire.len() % 4, 0, "stream form of length {len} is aligned");
        assert_eq!(wire.len(), 4 + len.next_multiple_of(4));
        wire.extend_from_slice(&next);
        let mut f = Framer::new();
        f.push(&wire);
        let first = f.poll_frame().expect("valid").expect("complete");
        assert_eq!(first.channel_payload(), Some(&payload[..]), "length {len}");
        assert_eq!(first.kind(), FrameKind::ChannelData { channel: 0x4002 });
        let second = f
            .poll_frame()
            .expect("next frame aligned")
            .expect("complete");
        assert_eq!(second.as_bytes(), &next[..], "length {len}");
    }
}

#[test]
fn channeldata_is_delivered_before_its_padding_arrives_and_the_padding_is_then_skipped() {
    let msg = channel_data(0x4003, b"xyz");
    let wire = stream_form(&msg);
    let mut f = Framer::new();
    let (message_part, padding) = wire.split_at(msg.len());
    f.push(message_part);
    assert_eq!(drain(&mut f), vec![msg]);
    f.push(padding);
    let next = stun(0, 0);
    f.push(&next);
    assert_eq!(drain(&mut f), vec![next]);
}

#[test]
fn zero_length_channeldata_is_a_valid_four_byte_message_rfc8656_s12_4() {
    let mut f = Framer::new();
    f.push(&[0x40, 0x00, 0x00, 0x00]);
    let frame = f.poll_frame().expect("valid").expect("complete");
    assert_eq!(frame.kind(), FrameKind::ChannelData { channel: 0x4000 });
    assert_eq!(frame.channel_payload(), Some(&[][..]));
    assert_eq!(f.buffered_len(), 0);
}

#[test]
fn a_partial_header_yields_nothing_and_keeps_the_bytes() {
    let msg = stun(0, 0);
    for cut in 1..STUN_HEADER_LEN {
        let mut f = Framer::new();
        f.push(&msg[..cut]);
        assert_eq!(f.poll_frame(), Ok(None), "cut at {cut}");
        assert_eq!(f.buffered_len(), cut);
        f.push(&msg[cut..]);
        assert_eq!(drain(&mut f), vec![msg.clone()], "cut at {cut}");
    }
    let mut f = Framer::new();
    f.push(&[0x40, 0x01, 0x00]);
    assert_eq!(f.poll_frame(), Ok(None), "3 of 4 channeldata header bytes");
}

#[test]
fn the_largest_channeldata_the_length_field_allows_is_accepted() {
    let payload = vec![1u8; usize::from(u16::MAX)];
    let msg = channel_data(0x4004, &payload);
    let mut f = Framer::new();
    f.push(&stream_form(&msg));
    assert_eq!(drain(&mut f), vec![msg]);
    assert_eq!(f.buffered_len(), 0);
}

#[test]
fn a_length_over_the_limit_is_refused_from_the_header_alone() {
    let mut f = Framer::with_max_message_len(1504);
    // Only the 4-byte header of a ChannelData claiming 1501 bytes of data.
    f.push(&[0x40, 0x00, 0x05, 0xDD]);
    assert_eq!(
        f.poll_frame(),
        Err(FramingError::TooLarge {
            len: 1505,
            max: 1504
        })
    );
    assert_eq!(f.buffered_len(), 0, "nothing kept for a refused stream");

    let mut f = Framer::with_max_message_len(100);
    f.push(&stun(84, 0)[..4]);
    assert_eq!(
        f.poll_frame(),
        Err(FramingError::TooLarge { len: 104, max: 100 })
    );

    let mut f = Framer::with_max_message_len(1504);
    f.push(&channel_data(0x4000, &[0; 1500]));
    assert_eq!(
        f.poll_frame().map(|o| o.is_some()),
        Ok(true),
        "at the limit"
    );
}

#[test]
fn a_first_byte_that_is_neither_stun_nor_channeldata_is_an_error_rfc8656_s12() {
    // 0x80 and 0xC0: first bits 10/11, e.g. a TLS-looking 0x16 is STUN-shaped and caught
    // by the cookie. (Channels go up to 0x7FFF as in RFC 5766, so an HTTP request, `G` or
    // `P`, is a valid channel: only the length limit or the idle timeout can catch it.)
    for first in [0x80u8, 0xC0, 0xFF, 0xA5] {
        let mut f = Framer::new();
        f.push(&[first, 0, 0, 4, 0, 0, 0, 0]);
        assert_eq!(
            f.poll_frame(),
            Err(FramingError::UnknownMessage(first)),
            "{first:#04x}"
        );
    }
}

#[test]
fn a_stun_header_with_a_wrong_magic_cookie_is_an_error_rfc8489_s5() {
    let mut msg = stun(0, 0);
    msg[4..8].copy_from_slice(&0xDEAD_BEEFu32.to_be_bytes());
    let mut f = Framer::new();
    f.push(&msg[..8]);
    assert_eq!(
        f.poll_frame(),
        Err(FramingError::BadMagicCookie(0xDEAD_BEEF))
    );
}

#[test]
fn a_tls_client_hello_on_the_plain_port_is_refused_by_its_missing_magic_cookie() {
    // Record header 16 03 01 00 f8, handshake type 01 (a `turns:` URI sent to `turn:`).
    let hello = [
        0x16, 0x03, 0x01, 0x00, 0xF8, 0x01, 0x00, 0x00, 0xF4, 0x03, 0x03,
    ];
    let mut f = Framer::new();
    f.push(&hello);
    assert_eq!(
        f.poll_frame(),
        Err(FramingError::BadMagicCookie(0xF801_0000))
    );
}

#[test]
fn a_stun_length_not_a_multiple_of_4_is_an_error_rfc8489_s5() {
    let mut f = Framer::new();
    f.push(&[0x00, 0x01, 0x00, 0x05]);
    assert_eq!(f.poll_frame(), Err(FramingError::UnalignedStunLength(5)));
}

#[test]
fn after_an_error_the_framer_stays_failed_even_if_valid_bytes_follow() {
    let mut f = Framer::new();
    f.push(&[0x80, 0, 0, 0]);
    let err = f.poll_frame().expect_err("garbage");
    f.push(&stun(0, 0));
    assert_eq!(f.poll_frame(), Err(err));
}

#[test]
fn encoding_channeldata_pads_to_4_and_refuses_bad_channels() {
    let mut out = BytesMut::new();
    encode_channel_data(0x4ABC, b"abcde", &mut out).expect("valid");
    assert_eq!(
        &out[..],
        &[0x4A, 0xBC, 0, 5, b'a', b'b', b'c', b'd', b'e', 0, 0, 0]
    );
    assert_eq!(
        encode_channel_data(0x3FFF, b"", &mut out),
        Err(EncodeError::BadChannel(0x3FFF))
    );
    assert_eq!(
        encode_channel_data(0x8000, b"", &mut out),
        Err(EncodeError::BadChannel(0x8000))
    );
    assert_eq!(
        encode_channel_data(0x4000, &vec![0; 65536], &mut out),
        Err(EncodeError::PayloadTooLarge(65536))
    );
    assert_eq!(out.len(), 12, "refused messages write nothing");
}

#[test]
fn encoding_a_stun_message_for_a_stream_adds_no_padding() {
    let msg = stun(8, 2);
    assert_eq!(stream_form(&msg), msg);
}

/// xorshift64*: a fixed-seed generator so the property test is reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("fits")
    }
}

#[test]
fn random_valid_frames_cut_at_random_points_are_reproduced_exactly() {
    for seed in 1..=20u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut msgs = Vec::new();
        let mut wire = Vec::new();
        for _ in 0..200 {
            let msg = if rng.below(2) == 0 {
                let body = 4 * rng.below(64);
                let fill = u8::try_from(rng.below(256)).expect("fits");
                stun(body, fill)
            } else {
                let channel = MIN_CHANNEL + u16::try_from(rng.below(0x1000)).expect("fits");
                let payload: Vec<u8> = (0..rng.below(300))
                    .map(|_| u8::try_from(rng.below(256)).expect("fits"))
                    .collect();
                channel_data(channel, &payload)
            };
            wire.extend_from_slice(&stream_form(&msg));
            msgs.push(msg);
        }
        let mut f = Framer::new();
        let mut got = Vec::new();
        let mut rest = &wire[..];
        while !rest.is_empty() {
            let n = (1 + rng.below(97)).min(rest.len());
            let (chunk, tail) = rest.split_at(n);
            f.push(chunk);
            got.extend(drain(&mut f));
            rest = tail;
        }
        assert_eq!(got.len(), msgs.len(), "seed {seed}");
        assert!(got == msgs, "seed {seed}: frames differ");
        assert_eq!(f.buffered_len(), 0, "seed {seed}");
    }
}
