#![no_main]
//! cargo fuzz run auth_http_answer — see mailgate::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::auth_http_answer(data));
