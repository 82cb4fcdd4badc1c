#!/usr/bin/env bash
# ManageSieve logins three ways in one run: Pigeonhole's managesieve
# directly, through mailgate, and through Dovecot's own proxy mode (a
# second Dovecot whose passdb says `proxy=y`, the way Dovecot directors and
# proxies route). A login is connect, greeting, AUTHENTICATE "PLAIN",
# LOGOUT (`mailgate-loadgen logins --protocol managesieve`), from CLIENTS
# closed-loop clients. Rounds alternate the three paths; the table has
# medians.
#
# Per path: logins per second, login latency p50/p99, CPU ms per login of
# the proxy (mailgate's process; the proxy Dovecot's master and every
# process under it, exited ones through the master's children times) and of
# the back-end Dovecot.
#
#   perf/managesieve.sh [seconds per run (default 10)] [rounds (default 3)]
#
# Needs dovecot-managesieved (tests/setup.sh). Runs as root (Dovecot drops
# to `mail`). Everything listens on 127.0.0.1 and is stopped at the end;
# results go to perf/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
ROUNDS=${2:-3}
CLIENTS=${CLIENTS:-4}
cargo build --release -q -p mailgate -p mailgate-loadgen
MG=$PWD/target/release/mailgate
LG=$PWD/target/release/mailgate-loadgen
WORK=$(mktemp -d /tmp/mailgate-sieve.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for d in backend proxy; do
    [ -f "$WORK/$d/run/master.pid" ] && kill "$(cat "$WORK/$d/run/master.pid")" 2>/dev/null || true
  done
  sleep 0.5
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SIEVE_PORT=$(free_port)
PROXY_PORT=$(free_port)

# dovecot_conf NAME PORT PASSDB-ARGS: a Dovecot with ManageSieve only.
dovecot_conf() {
  local dir="$WORK/$1"
  mkdir -p "$dir/run" "$dir/state" "$WORK/home"
  cat > "$dir/dovecot.conf" <<CONF
base_dir = $dir/run
state_dir = $dir/state
log_path = $dir/dovecot.log
protocols = sieve
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
  args = $3
}
userdb {
  driver = static
  args = uid=8 gid=8 home=$WORK/home/%u
}
service managesieve-login {
  inet_listener sieve {
    port = $2
  }
  service_count = 0
  process_min_avail = 2
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
plugin {
  sieve = file:~/sieve;active=~/.dovecot.sieve
}
CONF
  dovecot -c "$dir/dovecot.conf"
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$2) 2>/dev/null && break; sleep 0.1; done
  cat "$dir/run/master.pid"
}
chown mail:mail "$WORK" 2>/dev/null || true
ulimit -n "$(ulimit -Hn)"
BACKEND=$(dovecot_conf backend "$SIEVE_PORT" "password=pw")
# Dovecot's proxy mode: no password check here, the back end checks it.
PROXY=$(dovecot_conf proxy "$PROXY_PORT" "nopassword=y proxy=y host=127.0.0.1 port=$SIEVE_PORT")
chown -R mail:mail "$WORK/home"

echo "* 127.0.0.1" > "$WORK/users.map"
cat > "$WORK/mailgate.toml" <<CONF
[[listen]]
protocol = "managesieve"
address = "127.0.0.1:0"

[directory]
kind = "static"
map = "users.map"

[backend]
managesieve_port = $SIEVE_PORT

[runtime]
allow_root = true                 # benchmarks run as root here
shutdown_grace = "1s"

[limits]
# Every client of this harness comes from 127.0.0.1.
max_connections_per_address = 0
CONF
"$MG" run --config "$WORK/mailgate.toml" --ready-file "$WORK/ready" 2> "$WORK/mailgate.log" &
MG_PID=$!
PIDS+=($MG_PID)
for _ in $(seq 100); do [ -f "$WORK/ready" ] && break; sleep 0.05; done
MG_ADDR=$(awk '/^managesieve/{print $2}' "$WORK/ready")

HZ=$(getconf CLK_TCK)
# CPU ticks of one process (with its reaped children).
ticks() { awk '{print $14+$15+$16+$17}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# A Dovecot: its master and every process under it.
tree_ticks() {
  local t; t=$(ticks "$1")
  for c in $(pgrep -P "$1"); do t=$((t + $(ticks "$c"))); done
  echo "$t"
}

# run PATH TARGET PROXY-KIND: one closed-loop run; a JSON line.
run() {
  local b0 b1 p0=0 p1=0 out
  b0=$(tree_ticks "$BACKEND")
  case "$3" in mailgate) p0=$(ticks "$MG_PID");; dovecot) p0=$(tree_ticks "$PROXY");; esac
  out=$("$LG" logins --protocol managesieve --target "$2" --clients "$CLIENTS" \
        --duration "${SECS}s" --user 'user{i}@example.org' --users 16 --password pw --json)
  b1=$(tree_ticks "$BACKEND")
  case "$3" in mailgate) p1=$(ticks "$MG_PID");; dovecot) p1=$(tree_ticks "$PROXY");; esac
  python3 - "$1" "$out" "$((p1 - p0))" "$((b1 - b0))" "$HZ" <<'PY'
import json, sys
path, out, pt, bt, hz = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ok = max(out["operations"], 1)
print(json.dumps({"path": path, "per_second": out["per_second"], "p50": out["p50_ms"],
  "p99": out["p99_ms"], "errors": out["errors"],
  "proxy_cpu_ms": pt * 1000 / hz / ok, "backend_cpu_ms": bt * 1000 / hz / ok}))
PY
}

RESULTS="$WORK/results.jsonl"
for round in $(seq "$ROUNDS"); do
  echo "round $round/$ROUNDS" >&2
  run direct "127.0.0.1:$SIEVE_PORT" - >> "$RESULTS"
  run mailgate "$MG_ADDR" mailgate >> "$RESULTS"
  run "dovecot proxy" "127.0.0.1:$PROXY_PORT" dovecot >> "$RESULTS"
done

OUT="perf/results/managesieve-$(date -u +%Y%m%dT%H%M%SZ).md"
python3 - "$RESULTS" "$SECS" "$ROUNDS" "$CLIENTS" <<'PY' | tee "$OUT"
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
secs, rounds, clients = sys.argv[2:5]
def med(p, k): return statistics.median(r[k] for r in runs if r["path"] == p)
print(f"# ManageSieve logins (perf/managesieve.sh): {clients} clients, {secs} s x {rounds} rounds, medians\n")
print("| path | logins/s | login p50 ms | login p99 ms | proxy CPU ms/login | back-end Dovecot CPU ms/login | errors |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for p in ("direct", "mailgate", "dovecot proxy"):
    print(f"| {p} | {med(p,'per_second'):.0f} | {med(p,'p50'):.2f} | {med(p,'p99'):.2f} | {med(p,'proxy_cpu_ms'):.3f} | {med(p,'backend_cpu_ms'):.3f} | {sum(r['errors'] for r in runs if r['path']==p)} |")
m, d = med("mailgate", "proxy_cpu_ms"), med("dovecot proxy", "proxy_cpu_ms")
print(f"\nmailgate / Dovecot proxy: CPU per login {m:.3f}/{d:.3f} = {m/d:.2f}; logins/s {med('mailgate','per_second')/med('dovecot proxy','per_second'):.2f}")
PY
echo "saved $OUT" >&2
