#!/usr/bin/env bash
# The Debian package, checked: built from the test build (dev profile, so
# no extra compilation), its file list and dependencies, its postinst's
# syntax, and — as root — installed with dpkg -i: the user exists, the man
# page is registered, `mailgate check-config` accepts the shipped
# configuration; then purged. Not root: the same check on the unpacked
# files instead of an installation.
set -euo pipefail
cd "$(dirname "$0")/.."
deb=$(contrib/deb/build.sh --profile dev | tail -1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -c "$deb" | awk '{print $6}' > "$work/list"
for f in ./usr/bin/mailgate ./etc/mailgate/mailgate.toml ./etc/mailgate/users.map \
         ./lib/systemd/system/mailgate.service ./usr/share/man/man1/mailgate.1.gz \
         ./usr/share/bash-completion/completions/mailgate ./usr/share/doc/mailgate/README.md \
         ./usr/share/doc/mailgate/migrating-from-perdition.md; do
  grep -qx "$f" "$work/list" || { echo "package: $f missing" >&2; exit 1; }
done
dpkg-deb -f "$deb" Depends | grep -q adduser || { echo "package: no adduser dependency" >&2; exit 1; }
dpkg-deb -e "$deb" "$work/control"
sh -n "$work/control/postinst"
grep -qx /etc/mailgate/mailgate.toml "$work/control/conffiles"
if [ "$(id -u)" -eq 0 ]; then
  dpkg -i "$deb" >/dev/null
  trap 'dpkg --purge mailgate >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
  getent passwd mailgate >/dev/null || { echo "package: no user mailgate" >&2; exit 1; }
  if command -v man >/dev/null; then man -w mailgate >/dev/null; fi
  /usr/bin/mailgate check-config /etc/mailgate/mailgate.toml
else
  dpkg-deb -x "$deb" "$work/root"
  "$work/root/usr/bin/mailgate" check-config "$work/root/etc/mailgate/mailgate.toml"
fi
echo "package ok: $deb"
