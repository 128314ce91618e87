//! The relay gate's decision on one client packet, without and with an allocation, and the crate-output path (harness: switchboard_relay::fuzzing::client_packet).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_relay::fuzzing::client_packet(data));
