#![no_main]
//! cargo fuzz run pop3_preauth — see mailgate::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::pop3_preauth(data));
