#![no_main]
//! cargo fuzz run backend_login — see mailgate::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::backend_login(data));
