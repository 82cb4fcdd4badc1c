#![no_main]
//! cargo fuzz run imap_tracker — see mailgate::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::imap_tracker(data));
