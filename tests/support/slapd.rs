//! A real OpenLDAP `slapd` with the deployment's tree: the test kit's (the
//! load generator's cluster mode starts the same one).

pub use mailgate_testkit::slapd::*;
