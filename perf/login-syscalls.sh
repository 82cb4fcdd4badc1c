#!/usr/bin/env bash
# System calls per login, by name: mailgate (one worker) in front of the
# simulated back end, `strace -c -f` attached while one client makes N
# logins (connect, greeting, LOGIN / USER+PASS, LOGOUT / QUIT), for each
# transport (io_uring, epoll) and protocol (IMAP, POP3). Prints a Markdown
# table of calls per login and saves it under perf/results/.
#
#   perf/login-syscalls.sh [logins (default 1000)]
#
# Needs: strace. Everything listens on 127.0.0.1 and is stopped at the end.
# strace slows mailgate down, so this counts calls; it does not time them.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000}
command -v strace >/dev/null || { echo "needs strace" >&2; exit 1; }
cargo build --release -q -p mailgate -p mailgate-loadgen
MG=$PWD/target/release/mailgate
LG=$PWD/target/release/mailgate-loadgen
WORK=$(mktemp -d /tmp/mailgate-syscalls.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

source perf/lib.sh
start_simulated_backend

# One column per transport × protocol: "name calls-per-login" lines.
measure() { # io protocol
  local io=$1 proto=$2 dir="$WORK/$1-$2"
  mkdir -p "$dir"
  simulated_config "$dir/mailgate.toml" "$io" imap pop3
  "$MG" run --config "$dir/mailgate.toml" --ready-file "$dir/ready" 2>"$dir/mailgate.log" &
  local mg=$!
  PIDS+=("$mg")
  for _ in $(seq 100); do [ -f "$dir/ready" ] && break; sleep 0.05; done
  local addr
  addr=$(awk -v p="$proto" '$1 == p {print $2}' "$dir/ready")
  # Warm up (first-use allocations, the directory's cache), then count.
  "$LG" logins --target "$addr" --protocol "$proto" --clients 1 --count 50 --quiet >/dev/null 2>&1
  strace -c -f -p "$mg" -o "$dir/strace.txt" 2>/dev/null &
  local st=$!
  sleep 1
  "$LG" logins --target "$addr" --protocol "$proto" --clients 1 --count "$N" --quiet >/dev/null 2>&1
  sleep 0.5
  kill -INT "$st"
  wait "$st" 2>/dev/null || true
  kill "$mg"
  wait "$mg" 2>/dev/null || true
  # strace -c rows: % time, seconds, usecs/call, calls, [errors], syscall.
  awk -v n="$N" '$1 ~ /^[0-9.]+$/ && NF >= 5 {printf "%s %.2f\n", $NF, $4 / n}' "$dir/strace.txt" \
    > "$WORK/$io-$proto.counts"
}

for io in uring epoll; do
  for proto in imap pop3; do
    echo "counting $io $proto..." >&2
    measure "$io" "$proto"
  done
done

OUT="perf/results/login-syscalls-$(date -u +%Y%m%dT%H%M%SZ).md"
python3 - "$WORK" "$N" "$(git rev-parse --short HEAD)" > "$OUT" <<'PY'
import sys, os
work, n, rev = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cols = [(io, p) for io in ("uring", "epoll") for p in ("imap", "pop3")]
counts = {}
for io, p in cols:
    for line in open(os.path.join(work, f"{io}-{p}.counts")):
        name, v = line.split()
        counts.setdefault(name, {})[(io, p)] = float(v)
rows = sorted((k for k in counts if k not in ("total", "restart_syscall", "clock_nanosleep", "futex")),
              key=lambda k: -max(counts[k].values()))
print(f"System calls per login (strace -c, {n} logins from one client, mailgate {rev}, one worker, simulated back end):\n")
print("| syscall | " + " | ".join(f"{io} {p.upper()}" for io, p in cols) + " |")
print("| --- |" + " --- |" * len(cols))
for k in rows:
    print(f"| {k} | " + " | ".join(f"{counts[k].get(c, 0):.2f}" for c in cols) + " |")
tot = [sum(counts[k].get(c, 0) for k in rows) for c in cols]
print("| **total** | " + " | ".join(f"**{t:.2f}**" for t in tot) + " |")
PY
cat "$OUT"
echo "saved $OUT" >&2
