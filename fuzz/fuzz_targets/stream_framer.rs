//! The TCP/TLS framer on arbitrary chunks against a reference reading (harness: switchboard_relay::fuzzing::stream_framer).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_relay::fuzzing::stream_framer(data));
