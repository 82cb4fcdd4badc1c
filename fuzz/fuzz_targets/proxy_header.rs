#![no_main]
//! cargo fuzz run proxy_header — see mailgate::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::proxy_header(data));
