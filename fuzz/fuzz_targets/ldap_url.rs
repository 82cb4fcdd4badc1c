#![no_main]
//! cargo fuzz run ldap_url — see mailgate::fuzzing.

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailgate::fuzzing::ldap_url(data));
