#![no_main]
//! cargo fuzz run imap_preauth — see mailgate::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::imap_preauth(data));
