#!/usr/bin/env bash
# What a login and an idle session cost, as ratios to baselines measured in
# the same run, so that the next change that costs 20 % is seen:
#
# 1. CPU per login (user + system, from /proc/pid/stat, and each apart: the
#    kernel's TCP work against the proxy's own): mailgate with one
#    worker and HAProxy with one thread, each in front of the same simulated
#    back end, IMAP and POP3, ROUNDS rounds alternating who goes first, the
#    median of the rounds. HAProxy relays TCP and reads no login: the floor.
# 2. System calls per login (strace -c, one client): mailgate (and MG_BASE).
# 3. Memory per idle session: perf/idle.sh (HAProxy and MG_BASE beside
#    mailgate, each in a fresh process and memory cgroup).
#
#   perf/efficiency.sh [logins per round (default 3000)] [idle sessions (default 1000; 0: skip part 3)]
#
# MG_BASE=path/to/an/older/mailgate adds that binary to every part. ROUNDS
# (default 3) rounds for part 1. IO=uring|epoll picks mailgate's transport
# (default uring). Needs haproxy and strace; everything listens on
# 127.0.0.1 and is stopped at the end. Figures, not timed tests: nothing
# here passes or fails on a number.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3000}
IDLE=${2:-1000}
ROUNDS=${ROUNDS:-3}
IO=${IO:-uring}
command -v haproxy >/dev/null || { echo "needs haproxy" >&2; exit 1; }
command -v strace >/dev/null || { echo "needs strace" >&2; exit 1; }
cargo build --release -q -p mailgate -p mailgate-loadgen
MG=$PWD/target/release/mailgate
LG=$PWD/target/release/mailgate-loadgen
[ -z "${MG_BASE:-}" ] || MG_BASE=$(realpath "$MG_BASE")
WORK=$(mktemp -d /tmp/mailgate-efficiency.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

source perf/lib.sh
start_simulated_backend --threads 1

declare -A ADDR PID
start_mailgate() { # name binary
  local dir="$WORK/$1"
  mkdir -p "$dir"
  simulated_config "$dir/mailgate.toml" "$IO" imap pop3
  "$2" run --config "$dir/mailgate.toml" --ready-file "$dir/ready" 2>"$dir/mailgate.log" &
  PID[$1]=$!
  PIDS+=($!)
  for _ in $(seq 100); do [ -f "$dir/ready" ] && break; sleep 0.05; done
  ADDR[$1-imap]=$(awk '$1 == "imap" {print $2}' "$dir/ready")
  ADDR[$1-pop3]=$(awk '$1 == "pop3" {print $2}' "$dir/ready")
}

start_haproxy() {
  local imap pop3
  imap=$(free_port)
  pop3=$(free_port)
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
  bind 127.0.0.1:$imap
  server backend $B_IMAP
listen pop3
  bind 127.0.0.1:$pop3
  server backend $B_POP3
CONF
  haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 &
  PID[haproxy]=$!
  PIDS+=($!)
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$imap") 2>/dev/null && break; sleep 0.05; done
  ADDR[haproxy-imap]=127.0.0.1:$imap
  ADDR[haproxy-pop3]=127.0.0.1:$pop3
}

PROXIES=(mailgate haproxy)
start_mailgate mailgate "$MG"
start_haproxy
if [ -n "${MG_BASE:-}" ]; then
  start_mailgate baseline "$MG_BASE"
  PROXIES+=(baseline)
fi

ticks() { awk '{print $14, $15}' "/proc/$1/stat"; } # user, system
TICK=$(getconf CLK_TCK)
logins() { # proxy protocol count → CPU ms per login: total, user, system
  local p=$1 proto=$2 n=$3 t0 t1
  t0=$(ticks "${PID[$p]}")
  "$LG" logins --target "${ADDR[$p-$proto]}" --protocol "$proto" --clients 4 --count "$n" --quiet >/dev/null 2>&1
  t1=$(ticks "${PID[$p]}")
  python3 -c "
u0, s0, u1, s1 = map(int, '$t0 $t1'.split())
per = lambda t: t * 1000 / $TICK / $n
print(f'{per(u1 - u0 + s1 - s0):.4f} {per(u1 - u0):.4f} {per(s1 - s0):.4f}')"
}

echo "CPU per login: $ROUNDS rounds of $N logins per proxy and protocol..." >&2
for proto in imap pop3; do
  for p in "${PROXIES[@]}"; do logins "$p" "$proto" 200 >/dev/null; done # warm up
done
for r in $(seq "$ROUNDS"); do
  order=("${PROXIES[@]}")
  [ $((r % 2)) = 0 ] && order=($(printf '%s\n' "${PROXIES[@]}" | tac))
  for proto in imap pop3; do
    for p in "${order[@]}"; do
      read -r total user system < <(logins "$p" "$proto" "$N")
      echo "$p $proto $total" >> "$WORK/cpu.txt"
      echo "$p $proto $user" >> "$WORK/cpu-user.txt"
      echo "$p $proto $system" >> "$WORK/cpu-system.txt"
    done
  done
done

echo "system calls per login..." >&2
syscalls() { # proxy protocol → calls per login
  local p=$1 proto=$2 out="$WORK/strace-$1-$2.txt" st
  strace -c -f -p "${PID[$p]}" -o "$out" 2>/dev/null &
  st=$!
  sleep 1
  "$LG" logins --target "${ADDR[$p-$proto]}" --protocol "$proto" --clients 1 --count 1000 --quiet >/dev/null 2>&1
  sleep 0.5
  kill -INT "$st"
  wait "$st" 2>/dev/null || true
  # strace -c rows: % time, seconds, usecs/call, calls, [errors], syscall;
  # waits that are not per-login work are left out, as in perf/login-syscalls.sh.
  awk '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" && $NF != "futex" && $NF != "restart_syscall" && $NF != "clock_nanosleep" {s += $4} END {printf "%.1f\n", s / 1000}' "$out"
}
for p in "${PROXIES[@]}"; do
  for proto in imap pop3; do echo "$p $proto $(syscalls "$p" "$proto")" >> "$WORK/syscalls.txt"; done
done
for p in "${PROXIES[@]}"; do kill "${PID[$p]}" 2>/dev/null || true; done

if [ "$IDLE" -gt 0 ]; then
  echo "idle sessions..." >&2
  MG_BASE=${MG_BASE:-} IO=$IO perf/idle.sh "$IDLE" 5 > "$WORK/idle.md" 2>/dev/null
else
  echo "Idle sessions not measured (0 asked for)." > "$WORK/idle.md"
fi

OUT="perf/results/efficiency-$(date -u +%Y%m%dT%H%M%SZ).md"
python3 - "$WORK" "$N" "$ROUNDS" "$IO" "$(git rev-parse --short HEAD)" > "$OUT" <<'PY'
import os, statistics, sys
work, n, rounds, io, rev = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
def table(name):
    rows = {}
    for line in open(os.path.join(work, name)):
        p, proto, v = line.split()
        rows.setdefault((p, proto), []).append(float(v))
    return {k: statistics.median(v) for k, v in rows.items()}
cpu, calls = table("cpu.txt"), table("syscalls.txt")
user, system = table("cpu-user.txt"), table("cpu-system.txt")
proxies = sorted({p for p, _ in cpu}, key=["mailgate", "haproxy", "baseline"].index)
print(f"# What a login and an idle session cost: mailgate {rev} ({io}, one worker) beside HAProxy (one thread), simulated back end\n")
print(f"CPU per login: median of {rounds} rounds of {n} logins from 4 clients; system calls: strace -c over 1 000 logins from one client.\n")
print("| figure | " + " | ".join(proxies) + " | mailgate ÷ HAProxy |" + (" mailgate ÷ baseline |" if "baseline" in proxies else ""))
print("| --- |" + " --- |" * (len(proxies) + 1 + ("baseline" in proxies)))
for proto in ("imap", "pop3"):
    for label, t, fmt in (("CPU ms per login", cpu, "{:.3f}"), ("… of it user space", user, "{:.3f}"),
                          ("… of it kernel", system, "{:.3f}"), ("system calls per login", calls, "{:.1f}")):
        vals = [t.get((p, proto)) for p in proxies]
        line = f"| {proto.upper()} {label} | " + " | ".join(fmt.format(v) for v in vals)
        line += f" | {t[('mailgate', proto)] / t[('haproxy', proto)]:.2f} |"
        if "baseline" in proxies:
            line += f" {t[('mailgate', proto)] / t[('baseline', proto)]:.2f} |"
        print(line)
print()
print(open(os.path.join(work, "idle.md")).read())
PY
cat "$OUT"
echo "saved $OUT" >&2
