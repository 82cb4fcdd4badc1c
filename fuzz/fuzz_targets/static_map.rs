#![no_main]
//! cargo fuzz run static_map — see mailgate::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::static_map(data));
