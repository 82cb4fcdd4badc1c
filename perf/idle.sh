#!/usr/bin/env bash
# Memory and descriptors per idle IMAP IDLE session through one mailgate:
# `mailgate-loadgen idle` opens N sessions (plaintext: splice path, no
# buffer and no pipe while idle; implicit TLS: rustls, copy path), logs them
# in and holds them in IDLE against the simulated back end, so only mailgate
# is measured. RSS (smaps_rollup) and descriptors are read while all N are
# up; the run then checks that every session stayed up.
#
#   perf/idle.sh [sessions (default 9950)] [hold seconds (default 20)]
#
# RLIMIT_NOFILE bounds N: mailgate holds two descriptors per session and
# raises its soft limit to the hard one. Where the hard limit cannot be
# raised (this sandbox: 20000, no CAP_SYS_RESOURCE), ~9 980 sessions is the
# ceiling for one mailgate process.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-9950}
HOLD=${2:-20}
cargo build --release -q -p mailgate -p mailgate-loadgen
MG=$PWD/target/release/mailgate
LG=$PWD/target/release/mailgate-loadgen
WORK=$(mktemp -d /tmp/mailgate-idle.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

"$LG" backend --threads 1 --sizes 2000 > "$WORK/backend.addr" &
PIDS+=($!)
for _ in $(seq 100); do grep -q pop3 "$WORK/backend.addr" 2>/dev/null && break; sleep 0.05; done
BACKEND_PORT=$(awk '/^imap/{split($2,a,":"); print a[2]}' "$WORK/backend.addr")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 1 -subj /CN=localhost 2>/dev/null
echo "* 127.0.0.1" > "$WORK/users.map"
cat > "$WORK/mailgate.toml" <<CONF
[[listen]]
protocol = "imap"
address = "127.0.0.1:0"

[[listen]]
protocol = "imap"
address = "127.0.0.1:0"
tls = "implicit"

[directory]
kind = "static"
map = "users.map"

[backend]
imap_port = $BACKEND_PORT
pop3_port = $BACKEND_PORT

[relay]
idle_timeout = "1h"

[limits]
# Every client of this harness comes from 127.0.0.1, and the run goes to the
# descriptor limit on purpose.
max_connections_per_address = 0   # the older name of max_preauth_per_address, read by baselines from earlier commits too
max_connections = 20000
max_preauth_connections = 20000

[tls]
cert = "cert.pem"
key = "key.pem"

[runtime]
allow_root = true                 # benchmarks run as root here
CONF
$MG run --config "$WORK/mailgate.toml" --ready-file "$WORK/ready" 2>"$WORK/mailgate.log" &
MG_PID=$!
PIDS+=($MG_PID)
for _ in $(seq 100); do [ -f "$WORK/ready" ] && break; sleep 0.05; done
grep "open files" /proc/$MG_PID/limits >&2
PLAIN=$(sed -n 1p "$WORK/ready" | awk '{print $2}')
TLS=$(sed -n 2p "$WORK/ready" | awk '{print $2}')

rss_kib() { awk '/^Rss:/{print $2}' "/proc/$MG_PID/smaps_rollup"; }
fds() { ls "/proc/$MG_PID/fd" | wc -l; }
ROWS=()
for mode in plain tls; do
  if [ $mode = plain ]; then target=$PLAIN; tls=(--tls none); name="plaintext (splice path)"; else target=$TLS; tls=(--tls implicit --insecure); name="implicit TLS (rustls, copy path)"; fi
  sleep 1
  RSS0=$(rss_kib); FD0=$(fds)
  "$LG" idle --target "$target" "${tls[@]}" --sessions "$N" --connect-rate 2000 --duration "${HOLD}s" --json --quiet > "$WORK/$mode.json" &
  LG_PID=$!
  # Wait until all N sessions are relaying (two descriptors each), then measure.
  for _ in $(seq $((HOLD * 10))); do [ "$(fds)" -ge $((FD0 + 2 * N - N / 100)) ] && break; sleep 0.1; done
  sleep 1
  RSS1=$(rss_kib); FD1=$(fds)
  wait "$LG_PID"
  ROWS+=("$name|$(python3 -c "print(f'{($RSS1-$RSS0)/$N:.1f}|{($FD1-$FD0)/$N:.2f}')")|$(python3 -c "import json; s=json.load(open('$WORK/$mode.json')); print(f\"{s['counts'].get('stayed_up',0)} of {s['attempted']}\")")")
  for _ in $(seq 100); do [ "$(fds)" -le $((FD0 + 10)) ] && break; sleep 0.2; done
done
{
  echo "# IMAP IDLE sessions through one mailgate: $N at once, $(nproc) CPUs, held ${HOLD} s"
  echo
  echo "| sessions | RSS per session (KiB) | descriptors per session | stayed up |"
  echo "| --- | --- | --- | --- |"
  for r in "${ROWS[@]}"; do echo "| ${r//|/ | } |"; done
  echo
  echo "Targets: ≤ 16 KiB plaintext, ≤ 64 KiB TLS; nginx 1.22 holds ~9 KiB (PSS) per idle IMAP session on this class of machine."
} | tee "perf/results/idle-$(date -u +%Y%m%dT%H%M%SZ).md"
