#![no_main]
//! cargo fuzz run managesieve — see mailgate::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::managesieve(data));
