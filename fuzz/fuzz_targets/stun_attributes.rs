//! STUN attribute walking: wire::parse and its helpers, with round trips (harness: switchboard_relay::fuzzing::stun_attributes).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_relay::fuzzing::stun_attributes(data));
