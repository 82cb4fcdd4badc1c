#!/usr/bin/env bash
# Installs what the integration tests drive: Dovecot (IMAP + POP3), curl,
# Python 3, OpenLDAP. Skips apt when everything is already there.
set -euo pipefail
packages=(dovecot-imapd dovecot-pop3d curl python3 slapd ldap-utils)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
fi
echo "test dependencies present: ${packages[*]}"
