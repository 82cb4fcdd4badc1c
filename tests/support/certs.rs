//! Test certificates: the test kit's `rcgen` CA.

pub use mailgate_testkit::certs::TestCa;
