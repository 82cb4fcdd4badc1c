# perf/lib.sh: sourced by the perf scripts that put one mailgate worker in
# front of the simulated back end (efficiency, kernel-profile,
# login-instructions, login-syscalls). Expects LG (the loadgen binary), WORK
# (the run's folder) and PIDS (what the script's cleanup kills) to be set.

# Starts `mailgate-loadgen backend` (further arguments passed on), waits for
# its ports, and sets B_IMAP and B_POP3 (host:port) and $WORK/users.map
# (every user to 127.0.0.1).
start_simulated_backend() {
  "$LG" backend "$@" > "$WORK/backend.txt" 2>/dev/null &
  PIDS+=($!)
  for _ in $(seq 100); do grep -q '^pop3' "$WORK/backend.txt" 2>/dev/null && break; sleep 0.05; done
  B_IMAP=$(awk '/^imap/{print $2}' "$WORK/backend.txt")
  B_POP3=$(awk '/^pop3/{print $2}' "$WORK/backend.txt")
  echo "* 127.0.0.1" > "$WORK/users.map"
}

# Writes to `file` a configuration of one unpinned worker on transport `io`,
# a listener on 127.0.0.1 for each protocol given, the static map and the
# simulated back end, and no per-address limits (every client is 127.0.0.1).
#   simulated_config file io protocol...
simulated_config() {
  local file=$1 io=$2 protocol
  shift 2
  : > "$file"
  for protocol in "$@"; do
    printf '[[listen]]\nprotocol = "%s"\naddress = "127.0.0.1:0"\n\n' "$protocol" >> "$file"
  done
  cat >> "$file" <<CONF
[directory]
kind = "static"
map = "$WORK/users.map"

[backend]
imap_port = ${B_IMAP##*:}
pop3_port = ${B_POP3##*:}

[runtime]
allow_root = true
workers = 1
pin_workers = false
io = "$io"
shutdown_grace = "1s"

[limits]
max_failures_per_address = 0
max_connections_per_address = 0   # the older name of max_preauth_per_address, read by baselines from earlier commits too
CONF
}
