#!/usr/bin/env bash
# Bulk relay, this build against an older one, in one run: two mailgates
# (one worker each, pinned to CPU 1, `IO` transport) in front of the
# simulated back end (CPU 0) serving one 4 MiB message; the loadgen (CPU 0)
# FETCHes it for SECS seconds with 1 session and with 64, the two builds in
# alternation for ROUNDS rounds. Prints MiB/s and mailgate CPU-seconds per
# GiB relayed per round, then the medians and their ratios, and saves the
# table under perf/results/.
#
#   MG_BASE=path/to/an/older/mailgate perf/fetch-ab.sh [seconds (default 8)] [rounds (default 3)]
#
# IO=uring|epoll (default uring). Why: the bulk figures move ±10 % between
# rounds on a shared host; a change to the relay or the transport is read
# against the rounds' spread, both builds sharing every round's conditions.
# Needs taskset and 2 CPUs; everything listens on 127.0.0.1 and is stopped
# at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-8}
ROUNDS=${2:-3}
IO=${IO:-uring}
SIZE=$((4 * 1024 * 1024))
[ -n "${MG_BASE:-}" ] || { echo "needs MG_BASE=<an older mailgate binary>" >&2; exit 1; }
MG_BASE=$(realpath "$MG_BASE")
cargo build --release -q -p mailgate -p mailgate-loadgen
MG=$PWD/target/release/mailgate
LG=$PWD/target/release/mailgate-loadgen
WORK=$(mktemp -d /tmp/mailgate-fetch-ab.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

taskset -c 0 "$LG" backend --threads 1 --sizes "$SIZE" > "$WORK/backend.txt" 2>/dev/null &
PIDS+=($!)
for _ in $(seq 100); do grep -q '^pop3' "$WORK/backend.txt" 2>/dev/null && break; sleep 0.05; done
PORT=$(awk '/^imap/{split($2, a, ":"); print a[2]}' "$WORK/backend.txt")
echo "* 127.0.0.1" > "$WORK/users.map"

declare -A PID TARGET
for build in this base; do
  bin=$MG
  [ "$build" = base ] && bin=$MG_BASE
  cat > "$WORK/$build.toml" <<CONF
[[listen]]
protocol = "imap"
address = "127.0.0.1:0"

[directory]
kind = "static"
map = "$WORK/users.map"

[backend]
imap_port = $PORT

[relay]
idle_timeout = "1h"

[limits]
max_failures_per_address = 0
max_connections_per_address = 0   # the older name of max_preauth_per_address, read by baselines from earlier commits too

[runtime]
allow_root = true
io = "$IO"
workers = 1
pin_workers = false
shutdown_grace = "1s"
CONF
  taskset -c 1 "$bin" run --config "$WORK/$build.toml" --ready-file "$WORK/$build.ready" \
    2>"$WORK/$build.log" &
  PID[$build]=$!
  PIDS+=($!)
  for _ in $(seq 100); do [ -f "$WORK/$build.ready" ] && break; sleep 0.05; done
  TARGET[$build]=$(awk '{print $2; exit}' "$WORK/$build.ready")
done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
echo "fetch: $ROUNDS rounds of ${SECS} s per build and session count ($IO)..." >&2
for r in $(seq "$ROUNDS"); do
  order=(this base)
  [ $((r % 2)) = 0 ] && order=(base this)
  for build in "${order[@]}"; do
    for sessions in 1 64; do
      t0=$(cpu "${PID[$build]}")
      out=$(taskset -c 0 "$LG" fetch --clients "$sessions" --expect-size "$SIZE" \
        --target "${TARGET[$build]}" --duration "${SECS}s" --password pw --json --quiet)
      t1=$(cpu "${PID[$build]}")
      python3 -c "
import json, sys
o = json.loads(sys.argv[1])
gib = o['bytes'] / 2**30
print('$build', $sessions, $r, o['mib_per_second'], ($t1 - $t0) / $TICK / gib if gib else 0, o['errors'])
" "$out" >> "$WORK/rounds.txt"
    done
  done
done

OUT="perf/results/fetch-ab-$(date -u +%Y%m%dT%H%M%SZ).md"
python3 - "$WORK/rounds.txt" "$IO" "$SECS" "$ROUNDS" "$(git rev-parse --short HEAD)" "$MG_BASE" > "$OUT" <<'PY'
import statistics, sys
path, io, secs, rounds, head, base = sys.argv[1:]
rows = [line.split() for line in open(path)]
print(f"# 4 MiB FETCH through mailgate {head} and a baseline ({io}, one worker on CPU 1), {rounds} rounds of {secs} s, alternating\n")
print(f"Baseline: {base}. Loadgen and simulated back end on CPU 0.\n")
print("| sessions | round | this MiB/s | base MiB/s | this CPU-s/GiB | base CPU-s/GiB | errors |")
print("| --- | --- | --- | --- | --- | --- | --- |")
def pick(build, sessions, rnd=None):
    return [r for r in rows if r[0] == build and r[1] == sessions and (rnd is None or r[2] == rnd)]
for sessions in ("1", "64"):
    for rnd in sorted({r[2] for r in rows}, key=int):
        t, b = pick("this", sessions, rnd)[0], pick("base", sessions, rnd)[0]
        print(f"| {sessions} | {rnd} | {float(t[3]):.0f} | {float(b[3]):.0f} | {float(t[4]):.3f} | {float(b[4]):.3f} | {int(t[5]) + int(b[5])} |")
print("\n| sessions | MiB/s this / base (median) | ratio | CPU-s per GiB this / base (median) | ratio |")
print("| --- | --- | --- | --- | --- |")
for sessions in ("1", "64"):
    med = lambda build, col: statistics.median(float(r[col]) for r in pick(build, sessions))
    mt, mb, ct, cb = med("this", 3), med("base", 3), med("this", 4), med("base", 4)
    print(f"| {sessions} | {mt:.0f} / {mb:.0f} | {mt / mb:.2f} | {ct:.3f} / {cb:.3f} | {ct / cb:.2f} |")
PY
cat "$OUT"
echo "saved $OUT" >&2
