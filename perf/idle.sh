#!/usr/bin/env bash
# Memory and descriptors per idle IMAP IDLE session, mailgate next to
# HAProxy in the same run: `mailgate-loadgen idle` opens N sessions
# (plaintext: mailgate's splice path; implicit TLS: rustls, copy path),
# logs them in and holds them in IDLE against the simulated back end, so only
# the proxy is measured. HAProxy relays TCP (plaintext) or terminates TLS
# (`bind ... ssl`) in front of the same back end: it reads no login, so it is
# the floor for a proxy that must.
#
#   perf/idle.sh [sessions (default 2000)] [hold seconds (default 10)]
#
# MG_BASE=path/to/an/older/mailgate adds that binary as a third proxy: a
# change measured against its baseline in the same run. IO=uring|epoll picks
# mailgate's transport (default uring).
#
# Each proxy and mode gets a fresh process (memory freed by an earlier phase
# would otherwise be reused and make the later phase look cheaper), started
# in its own memory cgroup when one can be made (cgroup v2 with the memory
# controller, or v1's memory hierarchy): the cgroup figure adds what the
# kernel holds for the process (socket buffers, descriptors, epoll items) to
# its pages. Per session = (figure with N sessions up − figure before) / N:
# RSS and PSS (smaps_rollup), cgroup memory, descriptors. The run then checks
# that every session stayed up.
#
# RLIMIT_NOFILE bounds N: a proxy holds two descriptors per session. Where
# the hard limit cannot be raised (this sandbox: 20000, no
# CAP_SYS_RESOURCE), ~9 980 sessions is the ceiling for one process.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
HOLD=${2:-10}
cargo build --release -q -p mailgate -p mailgate-loadgen
MG=$PWD/target/release/mailgate
LG=$PWD/target/release/mailgate-loadgen
[ -z "${MG_BASE:-}" ] || MG_BASE=$(realpath "$MG_BASE")
WORK=$(mktemp -d /tmp/mailgate-idle.XXXXXX)
PIDS=()
CGROUPS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for c in "${CGROUPS[@]}"; do rmdir "$c" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"

# A memory cgroup to start a proxy in: v2 (memory.current) or v1
# (memory.usage_in_bytes); none when neither can be made.
CG_ROOT= CG_FILE=
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null && [ -w /sys/fs/cgroup ]; then
  CG_ROOT=/sys/fs/cgroup CG_FILE=memory.current
elif [ -w /sys/fs/cgroup/memory ]; then
  CG_ROOT=/sys/fs/cgroup/memory CG_FILE=memory.usage_in_bytes
fi
new_cgroup() { # name → its folder, or nothing
  [ -n "$CG_ROOT" ] || return 0
  local dir="$CG_ROOT/mailgate-idle-$$-$1"
  mkdir "$dir" 2>/dev/null || return 0
  CGROUPS+=("$dir")
  echo "$dir"
}

"$LG" backend --threads 1 --sizes 2000 > "$WORK/backend.addr" &
PIDS+=($!)
for _ in $(seq 100); do grep -q pop3 "$WORK/backend.addr" 2>/dev/null && break; sleep 0.05; done
BACKEND_PORT=$(awk '/^imap/{split($2,a,":"); print a[2]}' "$WORK/backend.addr")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 1 -subj /CN=localhost 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/haproxy.pem"
echo "* 127.0.0.1" > "$WORK/users.map"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

mailgate_config() { # tls-mode → a config with one IMAP listener
  cat <<CONF
[[listen]]
protocol = "imap"
address = "127.0.0.1:0"
tls = "$1"

[directory]
kind = "static"
map = "$WORK/users.map"

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
cert = "$WORK/cert.pem"
key = "$WORK/key.pem"

[runtime]
allow_root = true                 # benchmarks run as root here
io = "${IO:-uring}"
CONF
}

haproxy_config() { # port tls-mode
  local ssl=
  [ "$2" = implicit ] && ssl="ssl crt $WORK/haproxy.pem"
  cat <<CONF
global
  maxconn $((N + 100))
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  option splice-auto
listen imap
  bind 127.0.0.1:$1 $ssl
  server backend 127.0.0.1:$BACKEND_PORT
CONF
}

PROXY_PID= PROXY_CG= PROXY_ADDR=
start_proxy() { # name mode → PROXY_PID, PROXY_CG, PROXY_ADDR
  local name=$1 mode=$2 dir="$WORK/$1-$2"
  mkdir -p "$dir"
  PROXY_CG=$(new_cgroup "$name-$mode")
  local cmd
  if [ "$name" = haproxy ]; then
    local port
    port=$(free_port)
    haproxy_config "$port" "$mode" > "$dir/haproxy.cfg"
    cmd=(haproxy -f "$dir/haproxy.cfg" -db)
    PROXY_ADDR=127.0.0.1:$port
  else
    local bin=$MG
    [ "$name" = baseline ] && bin=$MG_BASE
    mailgate_config "$mode" > "$dir/mailgate.toml"
    cmd=("$bin" run --config "$dir/mailgate.toml" --ready-file "$dir/ready")
  fi
  # The process enters its cgroup before it starts (exec keeps the pid).
  sh -c '[ -z "$1" ] || echo $$ > "$1/cgroup.procs"; shift; exec "$@"' sh "$PROXY_CG" "${cmd[@]}" \
    >"$dir/out.log" 2>"$dir/err.log" &
  PROXY_PID=$!
  PIDS+=("$PROXY_PID")
  if [ "$name" = haproxy ]; then
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/${PROXY_ADDR##*:}") 2>/dev/null && break; sleep 0.05; done
  else
    for _ in $(seq 100); do [ -f "$dir/ready" ] && break; sleep 0.05; done
    PROXY_ADDR=$(awk '{print $2}' "$dir/ready")
  fi
}

# RSS PSS (KiB), cgroup bytes (0 without a cgroup), descriptors, of the
# proxy's processes (HAProxy may run more than one).
sample() {
  local pids rss=0 pss=0 fds=0 cg=0 p
  pids=$(pgrep -g "$(ps -o pgid= "$PROXY_PID" | tr -d ' ')" 2>/dev/null || echo "$PROXY_PID")
  [ -n "$PROXY_CG" ] && pids=$(cat "$PROXY_CG/cgroup.procs")
  for p in $pids; do
    rss=$((rss + $(awk '/^Rss:/{print $2}' "/proc/$p/smaps_rollup")))
    pss=$((pss + $(awk '/^Pss:/{print $2}' "/proc/$p/smaps_rollup")))
    fds=$((fds + $(ls "/proc/$p/fd" | wc -l)))
  done
  [ -n "$PROXY_CG" ] && cg=$(cat "$PROXY_CG/$CG_FILE")
  echo "$rss $pss $cg $fds"
}

PROXIES=(mailgate haproxy)
command -v haproxy >/dev/null || PROXIES=(mailgate)
[ -z "${MG_BASE:-}" ] || PROXIES+=(baseline)
ROWS=()
for mode in none implicit; do
  for name in "${PROXIES[@]}"; do
    echo "$name, tls $mode: $N sessions..." >&2
    start_proxy "$name" "$mode"
    if [ "$mode" = none ]; then tls=(--tls none); else tls=(--tls implicit --insecure); fi
    sleep 1
    read -r RSS0 PSS0 CG0 FD0 < <(sample)
    "$LG" idle --target "$PROXY_ADDR" "${tls[@]}" --sessions "$N" --connect-rate 2000 --duration "${HOLD}s" --json --quiet > "$WORK/$name-$mode.json" &
    LG_PID=$!
    # Wait until all N sessions are relaying (two descriptors each), then measure.
    for _ in $(seq $((HOLD * 10))); do
      read -r _ _ _ fds < <(sample)
      [ "$fds" -ge $((FD0 + 2 * N - N / 100)) ] && break
      sleep 0.1
    done
    sleep 1
    read -r RSS1 PSS1 CG1 FD1 < <(sample)
    wait "$LG_PID"
    kill "$PROXY_PID"
    wait "$PROXY_PID" 2>/dev/null || true
    ROWS+=("$(python3 - "$WORK/$name-$mode.json" "$name" "$mode" "$N" "$RSS0" "$RSS1" "$PSS0" "$PSS1" "$CG0" "$CG1" "$FD0" "$FD1" <<'PY'
import json, sys
path, name, mode = sys.argv[1:4]
n, rss0, rss1, pss0, pss1, cg0, cg1, fd0, fd1 = (int(x) for x in sys.argv[4:13])
s = json.load(open(path))
cg = f"{(cg1 - cg0) / 1024 / n:.1f}" if cg1 else "–"
print(f"{name}|{mode}|{(rss1 - rss0) / n:.1f}|{(pss1 - pss0) / n:.1f}|{cg}|{(fd1 - fd0) / n:.2f}|{s['counts'].get('stayed_up', 0)} of {s['attempted']}")
PY
)")
  done
done
{
  echo "# IMAP IDLE sessions held through each proxy: $N at once, $(nproc) CPUs, held ${HOLD} s, mailgate $(git rev-parse --short HEAD) (${IO:-uring})"
  echo
  echo "Per session, each proxy and mode in a fresh process; cgroup: ${CG_FILE:-none could be made} (pages and kernel memory)."
  echo
  echo "| proxy | client TLS | RSS KiB | PSS KiB | cgroup KiB | descriptors | stayed up | PSS ÷ HAProxy | cgroup ÷ HAProxy |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  python3 - "${ROWS[@]}" <<'PY'
import sys
rows = [r.split("|") for r in sys.argv[1:]]
ha = {r[1]: r for r in rows if r[0] == "haproxy"}
for r in rows:
    base = ha.get(r[1])
    ratio = lambda i: f"{float(r[i]) / float(base[i]):.2f}" if base and r[i] != "–" and base[i] != "–" and float(base[i]) > 0 else "–"
    print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]} | {r[5]} | {r[6]} | {ratio(3)} | {ratio(4)} |")
PY
  echo
  echo "Targets (issue 26): plaintext ≤ HAProxy in cgroup memory and PSS; implicit TLS ≤ 16 KiB cgroup."
} | tee "perf/results/idle-$(date -u +%Y%m%dT%H%M%SZ).md"
