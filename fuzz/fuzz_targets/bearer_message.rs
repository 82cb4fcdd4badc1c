#![no_main]
//! cargo fuzz run bearer_message — see mailgate::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::bearer_message(data));
