#!/usr/bin/env bash
# Builds the Debian package: the man page and shell completions are
# generated from the binary first, then `cargo deb` (installed here with
# `cargo install cargo-deb` if missing) packs what [package.metadata.deb]
# in Cargo.toml lists. Prints the .deb's path.
#
#   contrib/deb/build.sh [--profile release|tiny|dev]
set -euo pipefail
cd "$(dirname "$0")/../.."
PROFILE=release
[ "${1:-}" = --profile ] && PROFILE=$2
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked
cargo build --profile "$PROFILE" -q -p mailgate --bin mailgate --features sql
DIR=$PROFILE
[ "$PROFILE" = dev ] && DIR=debug     # cargo's folder for the dev profile
BIN=target/$DIR/mailgate
OUT=target/deb-extra
mkdir -p "$OUT"
strip -o "$OUT/mailgate" "$BIN"
"$BIN" man | gzip -9n > "$OUT/mailgate.1.gz"
"$BIN" completions bash > "$OUT/mailgate.bash"
"$BIN" completions zsh > "$OUT/_mailgate"
"$BIN" completions fish > "$OUT/mailgate.fish"
cargo deb -p mailgate --no-build -q
ls -t target/debian/mailgate_*.deb | head -1
