#!/usr/bin/env bash
# The load generator's own ceiling: mailgate-loadgen against its simulated
# back end directly (no proxy), each pinned to its own CPU, one runtime
# thread each. Reports logins/s and MiB/s, and what one loadgen CPU second
# drives (per-core ceiling) — the figures the proxy's numbers are compared
# to. Then one cluster run (B = 3) for the VPN share. Saves a Markdown table
# under perf/results/.
#
#   perf/loadgen.sh [seconds-per-run (default 5)]
#
# Everything listens on loopback and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-5}
cargo build --release -q -p mailgate -p mailgate-loadgen
LG=$PWD/target/release/mailgate-loadgen
WORK=$(mktemp -d /tmp/mailgate-loadgen.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
CPUS=$(nproc)
BACKEND_CPU=$((CPUS > 1 ? 1 : 0))
taskset -c "$BACKEND_CPU" "$LG" backend --threads 1 --sizes 2000,4194304 > "$WORK/backend.addr" &
PIDS+=($!)
BE_PID=$!
for _ in $(seq 100); do grep -q pop3 "$WORK/backend.addr" 2>/dev/null && break; sleep 0.05; done
IMAP=$(awk '/^imap/{print $2}' "$WORK/backend.addr")
POP3=$(awk '/^pop3/{print $2}' "$WORK/backend.addr")

python3 - "$LG" "$IMAP" "$POP3" "$SECS" "$BE_PID" <<'PY' | tee "perf/results/loadgen-$(date -u +%Y%m%dT%H%M%SZ).md"
import json, os, subprocess, sys, platform
lg, imap, pop3, secs, be_pid = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
tick = os.sysconf("SC_CLK_TCK")
def be_cpu():
    f = open(f"/proc/{be_pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
def run(args):
    b0 = be_cpu()
    p = subprocess.Popen(["taskset", "-c", "0", lg] + args + ["--threads", "1", "--duration", f"{secs}s", "--json", "--quiet"],
                         stdout=subprocess.PIPE)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    assert status == 0, args
    s = json.loads(out)
    assert s["errors"] == 0, s
    return s, ru.ru_utime + ru.ru_stime, be_cpu() - b0
rows = [
    ("logins IMAP, closed loop 8 clients", ["logins", "--target", imap, "--clients", "8"], "ok/s"),
    ("logins POP3, closed loop 8 clients", ["logins", "--target", pop3, "--protocol", "pop3", "--clients", "8"], "ok/s"),
    ("logins IMAP, open loop 2000/s", ["logins", "--target", imap, "--rate", "2000"], "ok/s"),
    ("fetch IMAP 4 MiB, 1 session", ["fetch", "--target", imap, "--messages", "2", "--clients", "1"], "MiB/s"),
    ("fetch IMAP 4 MiB, 4 sessions", ["fetch", "--target", imap, "--messages", "2", "--clients", "4"], "MiB/s"),
    ("retr POP3 4 MiB, 1 session", ["retr", "--target", pop3, "--messages", "2", "--clients", "1"], "MiB/s"),
]
print(f"# mailgate-loadgen ceiling ({platform.node()}, {os.cpu_count()} CPUs, {secs} s per run; loadgen on CPU 0, back end on another, 1 thread each)\n")
print("| run | rate | p99 ms | loadgen CPU s | per loadgen CPU second | back-end CPU s |")
print("| --- | --- | --- | --- | --- | --- |")
for name, args, unit in rows:
    s, cpu, be = run(args)
    rate = s["per_second"] if unit == "ok/s" else s["mib_per_second"]
    total = s["ok"] if unit == "ok/s" else s["bytes"] / 1048576
    print(f"| {name} | {rate:.0f} {unit} | {s['p99_ms']:.2f} | {cpu:.2f} | {total / max(cpu, 1e-9):.0f} {unit.split('/')[0]} | {be:.2f} |")
PY
echo
"$LG" cluster --boxes 3 --sessions 600 --users 300 --clients 8 --message-size 1048576 | tee -a "$(ls -t perf/results/loadgen-*.md | head -1)"
