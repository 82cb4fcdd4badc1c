#!/usr/bin/env bash
# Where a login's CPU goes, by system call, for mailgate (io_uring and
# epoll, one worker) and HAProxy (one thread) in front of the same
# simulated back end: `perf record` samples each proxy while 4 clients make
# N IMAP logins, and each sample is put under the outermost system call on
# its stack (`sendto`, `connect`, `io_uring_enter`…), under "user space",
# under the task work a system call's return runs (io_uring's completions,
# a closed socket's last `fput`), or under "kernel, outside a system call"
# (interrupts). Prints µs of CPU
# per login for each, and saves the table under perf/results/.
#
#   perf/kernel-profile.sh [logins (default 20000)]
#
# Why: CPU per login is ~80 % kernel for every proxy here, and the totals
# (perf/efficiency.sh) do not say which part of the kernel's work one proxy
# does more of than another. A system call's share includes what the
# kernel does inside it for the peer on loopback (the receiving side's TCP
# processing, waking the peer). The sampling clock is `cpu-clock` (this
# host has no hardware counters); `perf` slows every proxy alike, so read
# the figures as shares and differences, not as CPU per login (that is
# perf/efficiency.sh's). Needs perf, haproxy; everything listens on
# 127.0.0.1 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
command -v perf >/dev/null || { echo "needs perf" >&2; exit 1; }
command -v haproxy >/dev/null || { echo "needs haproxy" >&2; exit 1; }
cargo build --release -q -p mailgate -p mailgate-loadgen
MG=$PWD/target/release/mailgate
LG=$PWD/target/release/mailgate-loadgen
WORK=$(mktemp -d /tmp/mailgate-kprofile.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

source perf/lib.sh
start_simulated_backend

# Records `pid` while the clients make N logins to `addr` (after a warm-up).
record() { # name pid addr
  "$LG" logins --target "$3" --protocol imap --clients 4 --count 500 --quiet >/dev/null 2>&1
  perf record -q -g -o "$WORK/$1.data" -p "$2" 2>/dev/null &
  local rec=$!
  sleep 0.5
  "$LG" logins --target "$3" --protocol imap --clients 4 --count "$N" --quiet >/dev/null 2>&1
  kill -INT "$rec"
  wait "$rec" 2>/dev/null || true
}

for io in uring epoll; do
  simulated_config "$WORK/$io.toml" "$io" imap
  "$MG" run --config "$WORK/$io.toml" --ready-file "$WORK/$io.ready" 2>"$WORK/$io.log" &
  mg=$!
  PIDS+=("$mg")
  for _ in $(seq 100); do [ -f "$WORK/$io.ready" ] && break; sleep 0.05; done
  echo "recording mailgate ($io)..." >&2
  record "mailgate-$io" "$mg" "$(awk '{print $2; exit}' "$WORK/$io.ready")"
  kill "$mg"
  wait "$mg" 2>/dev/null || true
done

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/haproxy.cfg" <<CONF
global
  maxconn 5000
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 1m
  timeout server 1m
  option splice-auto
listen imap
  bind 127.0.0.1:$PORT
  server backend $B_IMAP
CONF
haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 &
hp=$!
PIDS+=("$hp")
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.05; done
echo "recording haproxy..." >&2
record haproxy "$hp" "127.0.0.1:$PORT"

for name in mailgate-uring mailgate-epoll haproxy; do
  perf script -i "$WORK/$name.data" -F period,ip,sym 2>/dev/null > "$WORK/$name.txt"
done

OUT="perf/results/kernel-profile-$(date -u +%Y%m%dT%H%M%SZ).md"
python3 - "$WORK" "$N" "$(git rev-parse --short HEAD)" > "$OUT" <<'PY'
import re, sys, os
work, n, rev = sys.argv[1], int(sys.argv[2]), sys.argv[3]
names = ["mailgate-uring", "mailgate-epoll", "haproxy"]
syscall = re.compile(r"^(?:__x64_sys|__do_sys|__se_sys)_(\w+)")
table = {}
for name in names:
    per = {}
    text = open(os.path.join(work, name + ".txt")).read()
    for block in text.split("\n\n"):
        lines = [l.split() for l in block.strip().split("\n") if l.strip()]
        if not lines:
            continue
        period = int(lines[0][0])
        frames = [l[-1].split("+")[0] for l in lines[1:]] or [lines[0][-1].split("+")[0]]
        kernel = any(re.match(r"^(entry_SYSCALL|do_syscall_64|asm_|irq|__irq|handle_softirqs)", f) for f in frames)
        where = "user space"
        for f in frames:  # the outermost system call is the last one found
            m = syscall.match(f)
            if m:
                where = m.group(1)
        if where == "user space" and kernel:
            where = "kernel, outside a system call"
            # Work queued for the task runs as a system call returns, off
            # the call's own frames: io_uring's completions, and the last
            # `fput` of a closed socket.
            if "tctx_task_work" in frames:
                where = "io_uring completions (task work)"
            elif "task_work_run" in frames:
                where = "other task work (deferred fput of a closed socket)"
        per[where] = per.get(where, 0) + period
    table[name] = {k: v / 1000 / n for k, v in per.items()}  # ns → µs per login
rows = sorted({k for t in table.values() for k in t}, key=lambda k: -max(t.get(k, 0) for t in table.values()))
print(f"# Where an IMAP login's CPU goes, by system call: mailgate {rev} (one worker) and HAProxy (one thread), simulated back end\n")
print(f"perf record (cpu-clock) over {n} logins from 4 clients; µs of CPU per login under perf, each sample put under the outermost system call on its stack.\n")
print("| where | mailgate io_uring | mailgate epoll | HAProxy |")
print("| --- | --- | --- | --- |")
for k in rows:
    if max(t.get(k, 0) for t in table.values()) < 0.5:
        continue
    print(f"| {k} | " + " | ".join(f"{table[nm].get(k, 0):.1f}" for nm in names) + " |")
print("| **total** | " + " | ".join(f"**{sum(table[nm].values()):.1f}**" for nm in names) + " |")
PY
cat "$OUT"
echo "saved $OUT" >&2
