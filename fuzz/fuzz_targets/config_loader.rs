//! switchboard_config::parse on arbitrary text for both components (harness: switchboard_config::fuzzing::config_text).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_config::fuzzing::config_text(data));
