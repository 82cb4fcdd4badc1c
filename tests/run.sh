#!/usr/bin/env bash
# The whole check, as CI runs it on a clean clone: installs what the tests
# drive (tests/setup.sh), then formatting, clippy with warnings as errors,
# and the test suite of every workspace crate (which includes the module
# dependency check, tests/module_graph.rs) twice: once with the workers on
# io_uring, once on epoll (MAILGATE_TEST_IO, which the test kit turns into
# `[runtime] io`), then the Debian package (tests/package.sh: built from the
# test build with cargo-deb, installed as root with dpkg -i and checked).
# Everything is built with the `sql` feature (the SQL directory kind and its
# tests against real PostgreSQL and MariaDB), as the Debian package is;
# clippy also checks the library and binary without it (the code that
# stands in for the drivers).
set -euo pipefail
cd "$(dirname "$0")/.."
# One build from scratch gains nothing from incremental compilation's
# caches, which took ~2 GB of disk here; set CARGO_INCREMENTAL=1 to keep them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
tests/setup.sh
# clippy and rustfmt come with the toolchain here; add them where they do not.
rustup component add clippy rustfmt >/dev/null 2>&1 || true
cargo fmt --all --check
cargo clippy -p mailgate --lib --bins -- -D warnings
cargo clippy --workspace --all-targets --features mailgate/sql -- -D warnings
MAILGATE_TEST_IO=uring cargo test --workspace --features mailgate/sql
MAILGATE_TEST_IO=epoll cargo test --workspace --features mailgate/sql
tests/package.sh
