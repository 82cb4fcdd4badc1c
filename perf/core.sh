#!/usr/bin/env bash
# End-to-end figures for the core proxy, each as a ratio to a baseline from
# the same run: Dovecot reached directly vs through mailgate (copy relay),
# on loopback. Prints a Markdown table and saves it under perf/results/.
#
#   perf/core.sh [seconds-per-run (default 10)] [idle sessions (default 2000)]
#
# Needs: dovecot-imapd (tests/setup.sh installs it). Runs as root (Dovecot
# drops to the `mail` user). Everything listens on 127.0.0.1 and is stopped
# at the end.
#
# WORKERS=n runs mailgate with n workers (default: one per CPU).
#
# MG_BASE=path/to/an/older/mailgate adds, after the table, ROUNDS (default 3)
# rounds of logins alternating this build and that binary (same config, both
# running throughout; which goes first alternates too), each with its CPU per login and logins/s, and the
# ratios of the medians: a change measured against its baseline in the
# same run.
#
# SPLIT=1 separates the proxy from the rest, as a front end on its own box
# would be: Dovecot and the loadgen on CPU 0, the proxies (mailgate with one
# worker, HAProxy) on CPU 1. Direct runs then have CPU 0 only, so the ratio
# shows whether the proxy is what limits throughput. Default: everything
# shares every CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
IDLE=${2:-2000}
CLIENTS=4
MSG_SIZE=$((4 * 1024 * 1024))

cargo build --release -q -p mailgate -p mailgate-loadgen
MG=target/release/mailgate
LG=target/release/mailgate-loadgen
[ -z "${MG_BASE:-}" ] || MG_BASE=$(realpath "$MG_BASE")

WORK=$(mktemp -d /tmp/mailgate-perf.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/run/master.pid" ] && kill "$(cat "$WORK/run/master.pid")" 2>/dev/null || true
  sleep 0.5
  [ -n "${KEEP:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
IMAP_PORT=$(free_port)
POP3_PORT=$(free_port)

# Mailboxes: user0..userN each with the same 4 MiB message (deterministic content).
python3 - "$WORK" "$CLIENTS" "$MSG_SIZE" <<'PY'
import os, sys, random
work, clients, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(42)
lines, total = [], 0
header = b"From: perf@example.org\r\nSubject: perf\r\n\r\n"
body = bytearray(header)
while len(body) < size - 2:
    body += bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz ") for _ in range(70)) + b"\r\n"
body = bytes(body[:size - 2]) + b"\r\n"
open(os.path.join(work, "message.eml"), "wb").write(body)
for i in range(64):
    cur = os.path.join(work, "home", "user%d@example.org" % i, "Maildir", "cur")
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(os.path.dirname(cur), d), exist_ok=True)
    open(os.path.join(cur, "1700000000.M1P1.perf:2,S"), "wb").write(body)
PY
chown -R mail:mail "$WORK/home"
mkdir -p "$WORK/run" "$WORK/state"
cat > "$WORK/dovecot.conf" <<CONF
base_dir = $WORK/run
state_dir = $WORK/state
log_path = $WORK/dovecot.log
protocols = imap pop3
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
  args = password=pw
}
userdb {
  driver = static
  args = uid=8 gid=8 home=$WORK/home/%u
}
service imap-login {
  inet_listener imap {
    port = $IMAP_PORT
  }
  inet_listener imaps {
    port = 0
  }
  service_count = 0
  process_min_avail = 2
}
service pop3-login {
  inet_listener pop3 {
    port = $POP3_PORT
  }
  inet_listener pop3s {
    port = 0
  }
}
service imap {
  process_limit = 20000
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
CONF
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
ON_CLIENT=(); ON_PROXY=(); MG_WORKERS=${WORKERS:-0}; MG_PIN=true
if [ -n "${SPLIT:-}" ]; then ON_CLIENT=(taskset -c 0); ON_PROXY=(taskset -c 1); MG_WORKERS=1; MG_PIN=false; fi
"${ON_CLIENT[@]}" dovecot -c "$WORK/dovecot.conf"
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$IMAP_PORT) 2>/dev/null && break; sleep 0.1; done

echo "* 127.0.0.1" > "$WORK/users.map"
cat > "$WORK/mailgate.toml" <<CONF
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
shutdown_grace = "1s"
workers = $MG_WORKERS
pin_workers = $MG_PIN

[relay]
buffer_size = ${BUFFER_SIZE:-65536}

[limits]
# Every client of this harness comes from 127.0.0.1.
max_connections_per_address = 0   # the older name of max_preauth_per_address, read by baselines from earlier commits too
CONF
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
MAILGATE_LOG=${MAILGATE_LOG:-info} "${ON_PROXY[@]}" $MG run --config "$WORK/mailgate.toml" --ready-file "$WORK/ready" 2>"$WORK/mailgate.log" &
MG_PID=$!
PIDS+=("$MG_PID")
for _ in $(seq 100); do [ -f "$WORK/ready" ] && break; sleep 0.05; done
MG_ADDR=$(awk '/^imap/{print $2}' "$WORK/ready")
if [ -n "${MG_BASE:-}" ]; then
  "${ON_PROXY[@]}" "$MG_BASE" run --config "$WORK/mailgate.toml" --ready-file "$WORK/ready-base" 2>"$WORK/mailgate-base.log" &
  BASE_PID=$!
  PIDS+=("$BASE_PID")
  for _ in $(seq 100); do [ -f "$WORK/ready-base" ] && break; sleep 0.05; done
  BASE_ADDR=$(awk '/^imap/{print $2}' "$WORK/ready-base")
fi
DIRECT="127.0.0.1:$IMAP_PORT"

# The same proxy with the copy path, and HAProxy (TCP mode, splice) as baselines.
sed 's/^buffer_size = .*/&\nsplice = false/' "$WORK/mailgate.toml" > "$WORK/mailgate-copy.toml"
"${ON_PROXY[@]}" $MG run --config "$WORK/mailgate-copy.toml" --ready-file "$WORK/ready-copy" 2>"$WORK/mailgate-copy.log" &
MGC_PID=$!
PIDS+=("$MGC_PID")
for _ in $(seq 100); do [ -f "$WORK/ready-copy" ] && break; sleep 0.05; done
MGC_ADDR=$(awk '/^imap/{print $2}' "$WORK/ready-copy")
HA_PORT=$(free_port)
if command -v haproxy >/dev/null; then
  cat > "$WORK/haproxy.cfg" <<CONF
global
  maxconn 5000
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  option splice-auto
listen imap
  bind 127.0.0.1:$HA_PORT
  server dovecot 127.0.0.1:$IMAP_PORT
CONF
  "${ON_PROXY[@]}" haproxy -f "$WORK/haproxy.cfg" -db >/dev/null 2>&1 &
  HA_PID=$!
  PIDS+=("$HA_PID")
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$HA_PORT) 2>/dev/null && break; sleep 0.05; done
fi

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
json_field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])" "$1" "$2"; }

run() { # scenario target extra...
  local scenario=$1 target=$2; shift 2
  "${ON_CLIENT[@]}" $LG "$scenario" --target "$target" --duration "${SECS}s" --password pw --json "$@"
}

echo "logins direct..." >&2
L_DIRECT=$(run logins "$DIRECT" --clients $CLIENTS)
echo "logins via mailgate..." >&2
T0=$(cpu_ticks "$MG_PID")
L_PROXY=$(run logins "$MG_ADDR" --clients $CLIENTS)
T1=$(cpu_ticks "$MG_PID")

fetch() { run fetch "$1" --clients "$2" --user 'user{i}@example.org' --expect-file "$WORK/message.eml"; }
echo "fetch direct..." >&2
F_DIRECT=$(fetch "$DIRECT" 1)
echo "fetch via mailgate (splice)..." >&2
T2=$(cpu_ticks "$MG_PID")
F_PROXY=$(fetch "$MG_ADDR" 1)
T3=$(cpu_ticks "$MG_PID")
echo "fetch via mailgate (copy)..." >&2
C0=$(cpu_ticks "$MGC_PID")
F_COPY=$(fetch "$MGC_ADDR" 1)
C1=$(cpu_ticks "$MGC_PID")
F_HA='{"mib_per_second":0,"seconds":1,"errors":0,"operations":0}'; H0=0; H1=0
if [ -n "${HA_PID:-}" ]; then
  echo "fetch via haproxy..." >&2
  H0=$(cpu_ticks "$HA_PID")
  F_HA=$(fetch "127.0.0.1:$HA_PORT" 1)
  H1=$(cpu_ticks "$HA_PID")
fi
echo "64 sessions direct / mailgate / copy / haproxy..." >&2
F64_DIRECT=$(fetch "$DIRECT" 64)
F64_PROXY=$(fetch "$MG_ADDR" 64)
F64_COPY=$(fetch "$MGC_ADDR" 64)
F64_HA='{"mib_per_second":0,"seconds":1,"errors":0,"operations":0}'
[ -n "${HA_PID:-}" ] && F64_HA=$(fetch "127.0.0.1:$HA_PORT" 64)

for v in L_DIRECT L_PROXY F_DIRECT F_PROXY F_COPY F_HA F64_DIRECT F64_PROXY F64_COPY F64_HA; do
  [ "$(json_field "${!v}" errors)" = "0" ] || { echo "$v had errors: ${!v}" >&2; exit 1; }
done

# Idle sessions: log in N sessions through mailgate and hold them.
echo "idle sessions ($IDLE)..." >&2
rss_kib() { awk '/^Rss:/{print $2}' "/proc/$1/smaps_rollup"; }
RSS0=$(rss_kib "$MG_PID")
python3 - "$MG_ADDR" "$IDLE" "$WORK/idle.done" <<'PY' &
import socket, sys, time, os
host, port = sys.argv[1].rsplit(":", 1)
n, done = int(sys.argv[2]), sys.argv[3]
socks = []
for i in range(n):
    s = socket.create_connection((host, int(port)))
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"a LOGIN user%d@example.org pw\r\n" % (i % 5))
    line = f.readline()
    assert line.startswith(b"a OK"), line
    socks.append((s, f))
open(done, "w").write("ok")
time.sleep(3600)
PY
IDLE_PID=$!
PIDS+=("$IDLE_PID")
for _ in $(seq 1200); do [ -f "$WORK/idle.done" ] && break; sleep 0.1; done
[ -f "$WORK/idle.done" ] || { echo "idle sessions did not all log in" >&2; exit 1; }
sleep 1
RSS1=$(rss_kib "$MG_PID")
FDS=$(ls /proc/$MG_PID/fd | wc -l)
kill "$IDLE_PID"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
python3 - "$L_DIRECT" "$L_PROXY" "$F_DIRECT" "$F_PROXY" "$T0" "$T1" "$T2" "$T3" "$TICK" "$RSS0" "$RSS1" "$IDLE" "$FDS" "$F_COPY" "$C0" "$C1" "$F_HA" "$H0" "$H1" "$F64_DIRECT" "$F64_PROXY" "$F64_COPY" "$F64_HA" <<'PY' | tee "perf/results/core-$(date -u +%Y%m%dT%H%M%SZ).md"
import json, sys, platform, os
ld, lp, fd, fp = (json.loads(a) for a in sys.argv[1:5])
t0, t1, t2, t3, tick = (int(a) for a in sys.argv[5:10])
rss0, rss1, idle, fds = (int(a) for a in sys.argv[10:14])
fc = json.loads(sys.argv[14]); c0, c1 = int(sys.argv[15]), int(sys.argv[16])
fh = json.loads(sys.argv[17]); h0, h1 = int(sys.argv[18]), int(sys.argv[19])
f64d, f64p = json.loads(sys.argv[20]), json.loads(sys.argv[21])
f64c, f64h = json.loads(sys.argv[22]), json.loads(sys.argv[23])
cpu_login_ms = (t1 - t0) / tick / max(lp["operations"], 1) * 1000
def cpu_per_gib(f, a, b):
    gib = f["mib_per_second"] * f["seconds"] / 1024
    return (b - a) / tick / gib if gib else float("nan")
cpu_gib = cpu_per_gib(fp, t2, t3)
split = " (SPLIT: Dovecot + loadgen on CPU 0, proxies on CPU 1)" if os.environ.get("SPLIT") else ""
print(f"# core proxy, {os.cpu_count()} CPUs, {platform.release()}{split}\n")
print("| figure | direct to Dovecot | through mailgate | ratio |")
print("| --- | --- | --- | --- |")
print(f"| LOGIN+LOGOUT/s, 4 closed-loop clients | {ld['per_second']:.0f} | {lp['per_second']:.0f} | {lp['per_second']/ld['per_second']:.2f} |")
print(f"| login p50 / p99 ms | {ld['p50_ms']:.2f} / {ld['p99_ms']:.2f} | {lp['p50_ms']:.2f} / {lp['p99_ms']:.2f} | |")
print(f"| one session fetching a 4 MiB message, MiB/s (splice) | {fd['mib_per_second']:.0f} | {fp['mib_per_second']:.0f} | {fp['mib_per_second']/fd['mib_per_second']:.2f} |")
print(f"| same, mailgate copy path | {fd['mib_per_second']:.0f} | {fc['mib_per_second']:.0f} | {fc['mib_per_second']/fd['mib_per_second']:.2f} |")
if fh["operations"]:
    print(f"| same, HAProxy 2.6 tcp + splice-auto | {fd['mib_per_second']:.0f} | {fh['mib_per_second']:.0f} | {fh['mib_per_second']/fd['mib_per_second']:.2f} |")
print(f"| 64 sessions fetching, MiB/s total (splice) | {f64d['mib_per_second']:.0f} | {f64p['mib_per_second']:.0f} | {f64p['mib_per_second']/f64d['mib_per_second']:.2f} |")
print(f"| same, mailgate copy path | {f64d['mib_per_second']:.0f} | {f64c['mib_per_second']:.0f} | {f64c['mib_per_second']/f64d['mib_per_second']:.2f} |")
if f64h["operations"]:
    print(f"| same, HAProxy | {f64d['mib_per_second']:.0f} | {f64h['mib_per_second']:.0f} | {f64h['mib_per_second']/f64d['mib_per_second']:.2f} |")
print(f"| mailgate CPU per login (ms) | | {cpu_login_ms:.3f} | Perdition ~13, nginx ~0.6 |")
print(f"| CPU seconds per GiB relayed: mailgate splice | | {cpu_gib:.2f} | |")
print(f"| CPU seconds per GiB relayed: mailgate copy | | {cpu_per_gib(fc, c0, c1):.2f} | splice/copy {cpu_gib/cpu_per_gib(fc, c0, c1):.2f} |")
if fh["operations"]:
    print(f"| CPU seconds per GiB relayed: HAProxy | | {cpu_per_gib(fh, h0, h1):.2f} | mailgate splice/HAProxy {cpu_gib/cpu_per_gib(fh, h0, h1):.2f} |")
print(f"| mailgate RSS per idle logged-in session (KiB), {idle} sessions | | {(rss1-rss0)/idle:.1f} | nginx ~9 |")
print(f"| descriptors held with {idle} idle sessions | | {fds} | |")
total = sum(f["operations"] for f in (fd, fp, fc, fh, f64d, f64p, f64c, f64h))
print(f"\nEvery fetched body was compared with the stored message ({total} fetches, 0 differences).")
PY

[ -n "${MG_BASE:-}" ] || exit 0
# Logins, this build against the baseline, alternating.
AB=()
for round in $(seq "${ROUNDS:-3}"); do
  # ABBA: the side that goes first alternates, so neither gains from order.
  order="current base"; [ $((round % 2)) -eq 0 ] && order="base current"
  for side in $order; do
    if [ "$side" = current ]; then pid=$MG_PID; addr=$MG_ADDR; else pid=$BASE_PID; addr=$BASE_ADDR; fi
    echo "round $round: logins via $side..." >&2
    a=$(cpu_ticks "$pid")
    out=$(run logins "$addr" --clients $CLIENTS)
    b=$(cpu_ticks "$pid")
    [ "$(json_field "$out" errors)" = "0" ] || { echo "$side had errors: $out" >&2; exit 1; }
    AB+=("$side" "$((b - a))" "$out")
  done
done
python3 - "$TICK" "$MG_WORKERS" "${AB[@]}" <<'PY' | tee -a "perf/results/core-$STAMP.md"
import json, sys, statistics
tick, workers, rest = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
runs = {"current": [], "base": []}
for i in range(0, len(rest), 3):
    out = json.loads(rest[i + 2])
    cpu_ms = int(rest[i + 1]) / tick / max(out["operations"], 1) * 1000
    runs[rest[i]].append((cpu_ms, out["per_second"]))
print(f"\n## This build against MG_BASE, {len(runs['current'])} alternating rounds, workers = {workers} (0: one per CPU)\n")
print("| side | CPU per login, ms (each round) | logins/s (each round) |")
print("| --- | --- | --- |")
for side in ("current", "base"):
    cpu = ", ".join(f"{c:.3f}" for c, _ in runs[side])
    rate = ", ".join(f"{r:.0f}" for _, r in runs[side])
    print(f"| {side} | {cpu} | {rate} |")
med = {s: (statistics.median(c for c, _ in v), statistics.median(r for _, r in v)) for s, v in runs.items()}
print(f"\nMedians current/base: CPU per login {med['current'][0]:.3f}/{med['base'][0]:.3f} = "
      f"{med['current'][0] / med['base'][0]:.2f}; logins/s {med['current'][1]:.0f}/{med['base'][1]:.0f} = "
      f"{med['current'][1] / med['base'][1]:.2f}")
PY
