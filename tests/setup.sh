#!/usr/bin/env bash
# Installs what the integration tests drive: Dovecot (IMAP, POP3 and
# Pigeonhole's ManageSieve) and sieve-connect, curl,
# Python 3, OpenLDAP, HAProxy (the balancer of the PROXY protocol tests),
# PostgreSQL and MariaDB (the SQL directory tests start their own servers),
# adduser (the Debian package's postinst, tests/package.sh).
# Skips apt when everything is already there. Services the packages would
# start at install (the system's PostgreSQL and MariaDB) are not started:
# the tests run servers of their own on ephemeral ports.
set -euo pipefail
packages=(dovecot-imapd dovecot-pop3d dovecot-managesieved sieve-connect curl python3 slapd ldap-utils haproxy postgresql mariadb-server adduser)
missing=()
for p in "${packages[@]}"; do
  # Installed, not merely known (a removed package keeps its config files).
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  # policy-rc.d answering 101 keeps invoke-rc.d from starting services.
  policy=/usr/sbin/policy-rc.d
  had_policy=0
  [ -e "$policy" ] && had_policy=1
  if [ "$had_policy" -eq 0 ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee "$policy" >/dev/null
    $sudo_cmd chmod 755 "$policy"
  fi
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
  [ "$had_policy" -eq 1 ] || $sudo_cmd rm -f "$policy"
fi
echo "test dependencies present: ${packages[*]}"

# Debian's perdition package, unpacked (not installed: nothing is started),
# for the import tests' golden file of its shipped perdition.conf and popmap.
perdition_dir="$(cd "$(dirname "$0")/.." && pwd)/target/perdition-deb"
if [ ! -f "$perdition_dir/etc/perdition/perdition.conf" ]; then
  mkdir -p "$perdition_dir"
  download=$(mktemp -d)
  chmod 777 "$download"
  if ! (cd "$download" && apt-get download -qq perdition >/dev/null 2>&1); then
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    (cd "$download" && apt-get download -qq perdition >/dev/null)
  fi
  dpkg-deb -x "$download"/perdition_*.deb "$perdition_dir"
  rm -rf "$download"
fi
echo "Debian's perdition package unpacked in $perdition_dir"
