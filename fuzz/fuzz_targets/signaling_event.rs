//! The signaling event decoder: an event name, a newline, the JSON payload (harness: switchboard_signaling::fuzzing::event).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_signaling::fuzzing::event(data));
