#![no_main]
//! cargo fuzz run config — see mailgate::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::config(data));
