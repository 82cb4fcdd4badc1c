#!/usr/bin/env bash
# Webmail page views against a real Dovecot, four ways in one run: Dovecot
# directly, mailgate without the connection cache, mailgate with it
# (`connection_cache = true`), and Debian's imapproxy (up-imapproxy 1.2.8,
# cache_expiration_time 300). A page view is connect, LOGIN, SELECT INBOX,
# FETCH 1 BODY.PEEK[], LOGOUT (`mailgate-loadgen logins --page-view`), from
# CLIENTS closed-loop clients over USERS users (webmail reuses few users'
# sessions). Rounds alternate the four paths; the table has medians.
#
# Per path: page views per second, login latency p50/p99 (connect to the
# LOGIN answer), Dovecot IMAP logins per page view (from Dovecot's log),
# CPU ms per page view of the proxy and of Dovecot (all its processes,
# including exited ones through the master's children times).
#
#   perf/webmail.sh [seconds per run (default 10)] [rounds (default 3)]
#
# MG_BASE=path/to/an/older/mailgate adds that binary's two paths (plain and
# connection_cache, same configuration) to every round, so a change is
# measured against its baseline in the same run; the table then ends with
# the ratios current/baseline.
#
# Needs dovecot-imapd (tests/setup.sh) and imapproxy (apt-get install
# imapproxy). Runs as root (Dovecot drops to `mail`). Everything listens on
# 127.0.0.1 and is stopped at the end; results go to perf/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
ROUNDS=${2:-3}
CLIENTS=${CLIENTS:-4}
USERS=${USERS:-4}
command -v imapproxyd >/dev/null || { echo "needs imapproxy: apt-get install imapproxy" >&2; exit 1; }
cargo build --release -q -p mailgate -p mailgate-loadgen
[ -z "${MG_BASE:-}" ] || MG_BASE=$(realpath "$MG_BASE")
MG=$PWD/target/release/mailgate
LG=$PWD/target/release/mailgate-loadgen
WORK=$(mktemp -d /tmp/mailgate-webmail.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/run/master.pid" ] && kill "$(cat "$WORK/run/master.pid")" 2>/dev/null || true
  sleep 0.5
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
IMAP_PORT=$(free_port)
PROXY_PORT=$(free_port)

# user0..user{USERS-1}, each with one 20 KB message.
python3 - "$WORK" "$USERS" <<'PY'
import os, sys
work, users = sys.argv[1], int(sys.argv[2])
body = b"From: perf@example.org\r\nSubject: page\r\n\r\n" + b"".join(
    (b"line %05d of a webmail message body, plain text\r\n" % i) for i in range(400))
for i in range(users):
    base = os.path.join(work, "home", "user%d@example.org" % i, "Maildir")
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    open(os.path.join(base, "cur", "1700000000.M1P1.perf:2,S"), "wb").write(body)
PY
chown -R mail:mail "$WORK/home"
mkdir -p "$WORK/run" "$WORK/state"
cat > "$WORK/dovecot.conf" <<CONF
base_dir = $WORK/run
state_dir = $WORK/state
log_path = $WORK/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:~/Maildir
first_valid_uid = 8
mail_max_userip_connections = 100000
default_client_limit = 100000
default_process_limit = 10000
default_vsz_limit = 0
passdb {
  driver = static
  args = password=pw
}
userdb {
  driver = static
  args = uid=8 gid=8 home=$WORK/home/%u
}
service imap-login {
  inet_listener imap {
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
  service_count = 0
  process_min_avail = 2
}
service imap {
  process_limit = 20000
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
CONF
ulimit -n "$(ulimit -Hn)"
dovecot -c "$WORK/dovecot.conf"
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$IMAP_PORT) 2>/dev/null && break; sleep 0.1; done
DOVECOT_MASTER=$(cat "$WORK/run/master.pid")

echo "* 127.0.0.1" > "$WORK/users.map"
cat > "$WORK/mailgate.toml" <<CONF
[[listen]]
protocol = "imap"
address = "127.0.0.1:0"

[[listen]]
protocol = "imap"
address = "127.0.0.1:0"
connection_cache = true

[directory]
kind = "static"
map = "users.map"

[backend]
imap_port = $IMAP_PORT
forward_client_address = false

[limits]
max_failures_per_address = 0
max_connections_per_address = 0   # the older name of max_preauth_per_address, read by baselines from earlier commits too

[runtime]
allow_root = true                 # benchmarks run as root here
shutdown_grace = "1s"
CONF
"$MG" run --config "$WORK/mailgate.toml" --ready-file "$WORK/ready" 2> "$WORK/mailgate.log" &
MG_PID=$!
PIDS+=($MG_PID)
for _ in $(seq 100); do [ -s "$WORK/ready" ] && break; sleep 0.05; done
PLAIN=$(sed -n 1p "$WORK/ready" | awk '{print $2}')
CACHED=$(sed -n 2p "$WORK/ready" | awk '{print $2}')
if [ -n "${MG_BASE:-}" ]; then
  "$MG_BASE" run --config "$WORK/mailgate.toml" --ready-file "$WORK/ready.base" 2> "$WORK/mailgate-base.log" &
  BASE_PID=$!
  PIDS+=($BASE_PID)
  for _ in $(seq 100); do [ -s "$WORK/ready.base" ] && break; sleep 0.05; done
  BASE_PLAIN=$(sed -n 1p "$WORK/ready.base" | awk '{print $2}')
  BASE_CACHED=$(sed -n 2p "$WORK/ready.base" | awk '{print $2}')
fi

mkdir -p "$WORK/imapproxy"
chmod 777 "$WORK/imapproxy"  # it drops to nobody (it refuses to run as root)
cat > "$WORK/imapproxy.conf" <<CONF
server_hostname 127.0.0.1
server_port $IMAP_PORT
listen_address 127.0.0.1
listen_port $PROXY_PORT
connect_retries 10
connect_delay 5
cache_size 3072
cache_expiration_time 300
proc_username nobody
proc_groupname nogroup
stat_filename $WORK/imapproxy/pimpstats
protocol_log_filename $WORK/imapproxy/protocol.log
syslog_facility LOG_MAIL
send_tcp_keepalives no
enable_select_cache no
foreground_mode yes
force_tls no
enable_admin_commands no
CONF
imapproxyd -f "$WORK/imapproxy.conf" -p "$WORK/imapproxy/pid" 2> "$WORK/imapproxy.log" &
PROXY_PID=$!
PIDS+=($PROXY_PID)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PROXY_PORT) 2>/dev/null && break; sleep 0.1; done

# CPU ticks of one process (with its reaped children).
ticks() { awk '{print $14+$15+$16+$17}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Dovecot's CPU: the master (with reaped children) and every live child.
dovecot_ticks() {
  local t; t=$(ticks "$DOVECOT_MASTER")
  for c in $(pgrep -P "$DOVECOT_MASTER"); do t=$((t + $(ticks "$c"))); done
  echo "$t"
}
logins() { grep -c "imap-login: Info: Login:" "$WORK/dovecot.log" || true; }
HZ=$(getconf CLK_TCK)

run_one() { # name target proxy-pid
  local d0 p0 l0 out
  d0=$(dovecot_ticks); l0=$(logins)
  p0=0; [ "$3" != "-" ] && p0=$(ticks "$3")
  out=$("$LG" logins --page-view --target "$2" --clients "$CLIENTS" --users "$USERS" \
        --user 'user{i}@example.org' --password pw --duration "${SECS}s" --json --quiet)
  local d1 p1 l1
  d1=$(dovecot_ticks); l1=$(logins)
  p1=0; [ "$3" != "-" ] && p1=$(ticks "$3")
  python3 - "$1" "$out" "$((d1 - d0))" "$((p1 - p0))" "$((l1 - l0))" "$HZ" >> "$WORK/runs.jsonl" <<'PY'
import json, sys
name, out, dt, pt, logins, hz = sys.argv[1], json.loads(sys.argv[2]), *map(int, sys.argv[3:])
ok = max(out["ok"], 1)
print(json.dumps({"path": name, "per_second": out["per_second"], "p50": out["p50_ms"], "p99": out["p99_ms"],
  "errors": out["errors"], "backend_logins_per_view": logins / ok,
  "proxy_cpu_ms": pt * 1000 / hz / ok, "dovecot_cpu_ms": dt * 1000 / hz / ok}))
PY
}

for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS" >&2
  run_one direct "127.0.0.1:$IMAP_PORT" -
  run_one "mailgate" "$PLAIN" "$MG_PID"
  run_one "mailgate, connection_cache" "$CACHED" "$MG_PID"
  if [ -n "${MG_BASE:-}" ]; then
    run_one "baseline mailgate" "$BASE_PLAIN" "$BASE_PID"
    run_one "baseline mailgate, connection_cache" "$BASE_CACHED" "$BASE_PID"
  fi
  run_one "imapproxy 1.2.8" "127.0.0.1:$PROXY_PORT" "$PROXY_PID"
done

OUT=perf/results/webmail-$(date -u +%Y%m%dT%H%M%SZ).md
python3 - "$WORK/runs.jsonl" "$SECS" "$ROUNDS" "$CLIENTS" "$USERS" > "$OUT" <<'PY'
import json, sys, statistics as st
runs = [json.loads(l) for l in open(sys.argv[1])]
secs, rounds, clients, users = sys.argv[2:6]
paths = []
for r in runs:
    if r["path"] not in paths: paths.append(r["path"])
med = lambda p, k: st.median(x[k] for x in runs if x["path"] == p)
print(f"# Webmail page views (perf/webmail.sh): {clients} clients, {users} users, {secs} s x {rounds} rounds, medians\n")
print("| path | page views/s | login p50 ms | login p99 ms | Dovecot logins per view | proxy CPU ms/view | Dovecot CPU ms/view | errors |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for p in paths:
    print(f"| {p} | {med(p,'per_second'):.0f} | {med(p,'p50'):.2f} | {med(p,'p99'):.2f} | {med(p,'backend_logins_per_view'):.4f} | {med(p,'proxy_cpu_ms'):.3f} | {med(p,'dovecot_cpu_ms'):.3f} | {sum(x['errors'] for x in runs if x['path']==p)} |")
c, u, i = "mailgate, connection_cache", "mailgate", "imapproxy 1.2.8"
print(f"\nconnection_cache / uncached page views/s: {med(c,'per_second')/med(u,'per_second'):.2f}; / imapproxy: {med(c,'per_second')/med(i,'per_second'):.2f}")
if "baseline mailgate" in paths:
    print("\ncurrent / baseline (same run; medians):\n")
    print("| path | page views/s | proxy CPU ms/view | login p50 |")
    print("| --- | --- | --- | --- |")
    for p in (u, c):
        b = "baseline " + p
        print(f"| {p} | {med(p,'per_second')/med(b,'per_second'):.3f} | {med(p,'proxy_cpu_ms')/med(b,'proxy_cpu_ms'):.3f} | {med(p,'p50')/med(b,'p50'):.3f} |")
PY
cat "$OUT"
echo "saved $OUT" >&2
