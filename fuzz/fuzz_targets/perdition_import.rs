#![no_main]
//! cargo fuzz run perdition_import — see mailgate::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::perdition_import(data));
