#!/usr/bin/env bash
# What recording metrics costs end to end: two mailgate processes, identical
# but for `[admin] metrics = true|false`, in front of the loadgen's simulated
# back end, each given the same logins and fetch runs in alternation
# (ROUNDS rounds, so drift hits both alike). Prints the ratios on/off for
# logins/s, CPU per login and fetch MiB/s, and saves them under perf/results/.
#
#   perf/metrics.sh [seconds-per-run (default 5)] [rounds (default 3)]
#
# Everything listens on 127.0.0.1 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
ROUNDS=${2:-3}
SIZE=$((4 * 1024 * 1024))

cargo build --release -q -p mailgate -p mailgate-loadgen
MG=target/release/mailgate
LG=target/release/mailgate-loadgen
WORK=$(mktemp -d /tmp/mailgate-metrics.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

$LG backend --sizes "$SIZE" > "$WORK/backend.addr" &
PIDS+=($!)
for _ in $(seq 100); do grep -q pop3 "$WORK/backend.addr" 2>/dev/null && break; sleep 0.05; done
IMAP_PORT=$(awk '/^imap/{split($2,a,":"); print a[2]}' "$WORK/backend.addr")
POP3_PORT=$(awk '/^pop3/{split($2,a,":"); print a[2]}' "$WORK/backend.addr")
echo "* 127.0.0.1" > "$WORK/users.map"

start() { # name metrics(true|false)
  cat > "$WORK/$1.toml" <<CONF
[[listen]]
protocol = "imap"
address = "127.0.0.1:0"

[directory]
kind = "static"
map = "users.map"

[backend]
imap_port = $IMAP_PORT
pop3_port = $POP3_PORT

[runtime]
allow_root = true                 # benchmarks run as root here
workers = 1
pin_workers = false
shutdown_grace = "1s"

[admin]
address = "127.0.0.1:0"
metrics = $2
CONF
  $MG run --config "$WORK/$1.toml" --ready-file "$WORK/$1.ready" 2>"$WORK/$1.log" &
  PIDS+=($!)
  eval "${1}_PID=$!"
  for _ in $(seq 100); do [ -f "$WORK/$1.ready" ] && break; sleep 0.05; done
  eval "${1}_ADDR=$(awk '/^imap/{print $2}' "$WORK/$1.ready")"
}
start on true
start off false

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
RESULTS="$WORK/results.jsonl"
for round in $(seq "$ROUNDS"); do
  for arm in on off; do
    pid_var="${arm}_PID"; addr_var="${arm}_ADDR"
    echo "round $round: $arm" >&2
    t0=$(cpu_ticks "${!pid_var}")
    logins=$($LG logins --target "${!addr_var}" --clients 4 --duration "${SECS}s" --json)
    t1=$(cpu_ticks "${!pid_var}")
    fetch=$($LG fetch --target "${!addr_var}" --clients 1 --duration "${SECS}s" --expect-size "$SIZE" --json)
    echo "{\"arm\":\"$arm\",\"cpu_s\":$(python3 -c "print(($t1-$t0)/$TICK)"),\"logins\":$logins,\"fetch\":$fetch}" >> "$RESULTS"
  done
done

python3 - "$RESULTS" "$ROUNDS" "$SECS" <<'PY' | tee "perf/results/metrics-$(date -u +%Y%m%dT%H%M%SZ).md"
import json, sys, platform, os
rows = [json.loads(l) for l in open(sys.argv[1])]
for r in rows:
    assert r["logins"]["errors"] == 0 and r["fetch"]["errors"] == 0, r
def agg(arm):
    rs = [r for r in rows if r["arm"] == arm]
    logins = sum(r["logins"]["operations"] for r in rs)
    secs = sum(r["logins"]["seconds"] for r in rs)
    cpu = sum(r["cpu_s"] for r in rs)
    mib = sum(r["fetch"]["mib_per_second"] for r in rs) / len(rs)
    return logins / secs, cpu / logins * 1000, mib
on, off = agg("on"), agg("off")
print(f"# Metrics on vs off ({platform.node()}, {os.cpu_count()} CPUs, {sys.argv[2]} rounds x {sys.argv[3]} s, 1 worker, simulated back end)\n")
print("| measure | metrics on | metrics off | on / off |")
print("| --- | --- | --- | --- |")
print(f"| logins/s (4 clients) | {on[0]:.0f} | {off[0]:.0f} | {on[0]/off[0]:.3f} |")
print(f"| mailgate CPU ms per login | {on[1]:.3f} | {off[1]:.3f} | {on[1]/off[1]:.3f} |")
print(f"| fetch MiB/s (1 session, 4 MiB messages) | {on[2]:.0f} | {off[2]:.0f} | {on[2]/off[2]:.3f} |")
PY
