#!/usr/bin/env bash
# Soak: a realistic mix (IMAP IDLE clients, POP3 pollers, webmail bursts;
# `mailgate-loadgen mix`) through one mailgate against the simulated back end
# for DURATION, sampling mailgate's RSS and descriptors every 30 s. Prints
# start/end RSS and descriptors (a leak shows as growth beyond noise), the
# errors, and the p99 latency of the first and last five minutes (drift),
# and saves the table under perf/results/.
#
#   perf/soak.sh [duration (default 30m)]
#
# Not a CI test: it takes DURATION. Everything runs on 127.0.0.1 and is
# stopped at the end; the clients come from 100 loopback addresses.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-30m}
cargo build --release -q -p mailgate -p mailgate-loadgen
MG=$PWD/target/release/mailgate
LG=$PWD/target/release/mailgate-loadgen
WORK=$(mktemp -d /tmp/mailgate-soak.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

SIZES=2000,50000,500000
"$LG" backend --threads 1 --sizes "$SIZES" > "$WORK/backend.addr" &
PIDS+=($!)
for _ in $(seq 100); do grep -q pop3 "$WORK/backend.addr" 2>/dev/null && break; sleep 0.05; done
IMAP_PORT=$(awk '/^imap/{split($2,a,":"); print a[2]}' "$WORK/backend.addr")
POP3_PORT=$(awk '/^pop3/{split($2,a,":"); print a[2]}' "$WORK/backend.addr")
echo "* 127.0.0.1" > "$WORK/users.map"
cat > "$WORK/mailgate.toml" <<CONF
[[listen]]
protocol = "imap"
address = "127.0.0.1:0"

[[listen]]
protocol = "pop3"
address = "127.0.0.1:0"

[directory]
kind = "static"
map = "users.map"

[directory.cache]
enabled = true

[backend]
imap_port = $IMAP_PORT
pop3_port = $POP3_PORT

[relay]
idle_timeout = "1h"

[admin]
address = "127.0.0.1:0"

[runtime]
allow_root = true                 # benchmarks run as root here
CONF
$MG run --config "$WORK/mailgate.toml" --ready-file "$WORK/ready" 2>"$WORK/mailgate.log" &
MG_PID=$!
PIDS+=($MG_PID)
for _ in $(seq 100); do [ -f "$WORK/ready" ] && break; sleep 0.05; done
IMAP=$(awk '/^imap/{print $2}' "$WORK/ready")
POP3=$(awk '/^pop3/{print $2}' "$WORK/ready")
cat > "$WORK/mix.toml" <<PROFILE
[idle]
clients = 300

[pollers]
clients = 100
interval = "30s"

[webmail]
bursts_per_second = 10
sessions_per_burst = 2

[messages]
sizes = [2000, 50000, 500000]
weights = [70, 25, 5]
PROFILE

rss_kib() { awk '/^Rss:/{print $2}' "/proc/$MG_PID/smaps_rollup"; }
fds() { ls "/proc/$MG_PID/fd" | wc -l; }
"$LG" mix --target "$IMAP" --pop3-target "$POP3" --profile "$WORK/mix.toml" \
  --duration "$DURATION" --source-addresses 100 --json --quiet > "$WORK/mix.json" &
LG_PID=$!
PIDS+=($LG_PID)
echo "seconds,rss_kib,fds" > "$WORK/samples.csv"
START=$(date +%s)
while kill -0 "$LG_PID" 2>/dev/null; do
  echo "$(( $(date +%s) - START )),$(rss_kib),$(fds)" >> "$WORK/samples.csv"
  sleep 30
done
wait "$LG_PID" || echo "loadgen reported failures" >&2
echo "$(( $(date +%s) - START )),$(rss_kib),$(fds)" >> "$WORK/samples.csv"

python3 - "$WORK/samples.csv" "$WORK/mix.json" "$DURATION" "$(nproc)" "$(uname -r)" <<'PY' | tee "perf/results/soak-$(date -u +%Y%m%dT%H%M%SZ).md"
import csv, json, statistics, sys
samples = [(int(r["seconds"]), int(r["rss_kib"]), int(r["fds"])) for r in csv.DictReader(open(sys.argv[1]))]
summary = json.load(open(sys.argv[2]))
duration, cpus, kernel = sys.argv[3:6]
# Warm-up: the first sample after the idle clients are up (at 60 s or later).
warm = next((s for s in samples if s[0] >= 60), samples[0])
end = samples[-2] if len(samples) > 2 else samples[-1]   # before the clients leave
timeline = summary.get("timeline", [])
def p99(window):
    values = [t["p99_ms"] for t in window if t.get("ok", 0) > 0]
    return statistics.median(values) if values else float("nan")
first = [t for t in timeline if 60 <= t["at_seconds"] < 360]
last_at = timeline[-1]["at_seconds"] if timeline else 0
last = [t for t in timeline if last_at - 300 <= t["at_seconds"] <= last_at]
print(f"# soak: mailgate-loadgen mix for {duration}, {cpus} CPUs, {kernel}\n")
print("| figure | after warm-up | at the end | change |")
print("| --- | --- | --- | --- |")
print(f"| mailgate RSS (KiB) | {warm[1]} | {end[1]} | {end[1] - warm[1]:+} ({(end[1] - warm[1]) / warm[1] * 100:+.1f} %) |")
print(f"| mailgate descriptors | {warm[2]} | {end[2]} | {end[2] - warm[2]:+} |")
print(f"| p99 latency, median over 5 min (ms) | {p99(first):.2f} | {p99(last):.2f} | {p99(last) / p99(first):.2f}x |")
print()
ok, attempted = summary.get("ok", 0), summary.get("attempted", 0)
print(f"Operations: {attempted} attempted, {ok} ok; errors {summary.get('errors', 0)}, by kind: {summary.get('errors_by_kind', {})}.")
print(f"Samples every 30 s: RSS {min(s[1] for s in samples)}–{max(s[1] for s in samples)} KiB, descriptors {min(s[2] for s in samples)}–{max(s[2] for s in samples)}.")
PY
