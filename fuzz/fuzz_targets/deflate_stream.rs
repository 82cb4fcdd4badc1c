#![no_main]
//! cargo fuzz run deflate_stream — see mailgate::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::deflate_stream(data));
