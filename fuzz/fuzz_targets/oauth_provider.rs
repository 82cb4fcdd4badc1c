#![no_main]
//! cargo fuzz run oauth_provider — see mailgate::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::oauth_provider(data));
