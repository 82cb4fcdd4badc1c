#!/usr/bin/env bash
# io_uring and epoll side by side, one run, same machine: two mailgates (one
# worker each, `[runtime] io = "uring"` and `io = "epoll"`) in front of the
# simulated back end, measured in alternation (R rounds each, medians):
#
#   - IMAP logins/s (4 closed-loop clients) and mailgate CPU per login,
#     plaintext and IMAPS (implicit TLS; the loadgen resumes sessions, as mail
#     clients do);
#   - FETCH of a 4 MiB message, 1 session and 64 sessions: MiB/s and mailgate
#     CPU-seconds per GiB relayed;
#   - memory per idle IMAP IDLE session, plaintext and TLS (RSS growth / N).
#
#   perf/io.sh [seconds per run (default 10)] [rounds (default 3)] [idle sessions (default 2000)]
#
# SPLIT=0 runs everything on every CPU; by default the proxies are on CPU 1
# and the loadgen and back end on CPU 0, so each proxy's CPU is its own.
# Prints a Markdown table (epoll/uring ratio per figure) and saves it under
# perf/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
ROUNDS=${2:-3}
IDLE=${3:-2000}
SIZE=$((4 * 1024 * 1024))
cargo build --release -q -p mailgate -p mailgate-loadgen
MG=$PWD/target/release/mailgate
LG=$PWD/target/release/mailgate-loadgen
WORK=$(mktemp -d /tmp/mailgate-io.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
ON_CLIENT=(taskset -c 0); ON_PROXY=(taskset -c 1)
if [ "${SPLIT:-1}" = 0 ]; then ON_CLIENT=(); ON_PROXY=(); fi

"${ON_CLIENT[@]}" "$LG" backend --threads 1 --sizes "$SIZE" > "$WORK/backend.addr" &
PIDS+=($!)
for _ in $(seq 100); do grep -q pop3 "$WORK/backend.addr" 2>/dev/null && break; sleep 0.05; done
BACKEND_PORT=$(awk '/^imap/{split($2,a,":"); print a[2]}' "$WORK/backend.addr")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/key.pem" \
  -out "$WORK/cert.pem" -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
echo "* 127.0.0.1" > "$WORK/users.map"

declare -A PID PLAIN TLS
for io in uring epoll; do
  cat > "$WORK/$io.toml" <<CONF
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

[tls]
cert = "cert.pem"
key = "key.pem"

[relay]
idle_timeout = "1h"

[limits]
max_connections_per_address = 0   # the older name of max_preauth_per_address, read by baselines from earlier commits too
max_failures_per_address = 0

[runtime]
allow_root = true                 # benchmarks run as root here
io = "$io"
workers = 1
pin_workers = false
shutdown_grace = "1s"
CONF
  "${ON_PROXY[@]}" "$MG" run --config "$WORK/$io.toml" --ready-file "$WORK/$io.ready" 2>"$WORK/$io.log" &
  PID[$io]=$!
  PIDS+=(${PID[$io]})
  for _ in $(seq 100); do [ -f "$WORK/$io.ready" ] && break; sleep 0.05; done
  PLAIN[$io]=$(sed -n 1p "$WORK/$io.ready" | awk '{print $2}')
  TLS[$io]=$(sed -n 2p "$WORK/$io.ready" | awk '{print $2}')
  grep -q "io=\"$io\"" "$WORK/$io.log" || { echo "$io did not start as $io" >&2; cat "$WORK/$io.log" >&2; exit 1; }
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
rss_kib() { awk '/^Rss:/{print $2}' "/proc/$1/smaps_rollup"; }
fds() { ls "/proc/$1/fd" | wc -l; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
RESULTS=$WORK/results.tsv
: > "$RESULTS"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RESULTS"; } # figure io round value

measure() { # figure io round target extra...: runs the loadgen, records rate and CPU
  local figure=$1 io=$2 round=$3 target=$4; shift 4
  local t0 t1 out
  t0=$(cpu_ticks "${PID[$io]}")
  out=$("${ON_CLIENT[@]}" "$LG" "$@" --target "$target" --duration "${SECS}s" --password pw --json --quiet)
  t1=$(cpu_ticks "${PID[$io]}")
  [ "$(echo "$out" | field errors)" = 0 ] || { echo "$figure $io: errors: $out" >&2; exit 1; }
  local cpu; cpu=$(python3 -c "print(($t1 - $t0) / $TICK)")
  case $figure in
    login*) record "$figure/s" "$io" "$round" "$(echo "$out" | field per_second)"
            record "$figure cpu ms" "$io" "$round" "$(python3 -c "print($cpu * 1000 / max(1, $(echo "$out" | field ok)))")" ;;
    fetch*) record "$figure MiB/s" "$io" "$round" "$(echo "$out" | field mib_per_second)"
            record "$figure cpu s/GiB" "$io" "$round" "$(python3 -c "print($cpu / max(1e-9, $(echo "$out" | field bytes) / 2**30))")" ;;
  esac
}

for round in $(seq "$ROUNDS"); do
  for io in uring epoll; do
    echo "round $round: $io..." >&2
    measure "logins plaintext" "$io" "$round" "${PLAIN[$io]}" logins --clients 4
    measure "logins IMAPS" "$io" "$round" "${TLS[$io]}" logins --clients 4 --tls implicit --insecure
    measure "fetch 1 session" "$io" "$round" "${PLAIN[$io]}" fetch --clients 1 --expect-size "$SIZE"
    measure "fetch 64 sessions" "$io" "$round" "${PLAIN[$io]}" fetch --clients 64 --expect-size "$SIZE"
  done
done

for io in uring epoll; do
  for mode in plain tls; do
    echo "idle $mode sessions on $io..." >&2
    if [ $mode = plain ]; then target=${PLAIN[$io]}; tls=(--tls none); else target=${TLS[$io]}; tls=(--tls implicit --insecure); fi
    sleep 1
    rss0=$(rss_kib "${PID[$io]}"); fd0=$(fds "${PID[$io]}")
    "${ON_CLIENT[@]}" "$LG" idle --target "$target" "${tls[@]}" --password pw --sessions "$IDLE" --connect-rate 2000 --duration 20s --json --quiet > "$WORK/idle.json" &
    lg=$!
    for _ in $(seq 200); do [ "$(fds "${PID[$io]}")" -ge $((fd0 + 2 * IDLE - IDLE / 100)) ] && break; sleep 0.1; done
    sleep 1
    rss1=$(rss_kib "${PID[$io]}")
    wait "$lg"
    record "idle $mode KiB/session" "$io" 1 "$(python3 -c "print(($rss1 - $rss0) / $IDLE)")"
  done
done

python3 - "$RESULTS" "$SECS" "$ROUNDS" "$IDLE" "$(nproc)" "$(uname -r)" "${SPLIT:-1}" <<'PY' | tee "perf/results/io-$(date -u +%Y%m%dT%H%M%SZ).md"
import collections, statistics, sys
path, secs, rounds, idle, cpus, kernel, split = sys.argv[1:8]
values = collections.defaultdict(list)
order = []
for line in open(path):
    figure, io, _round, value = line.rstrip("\n").split("\t")
    if figure not in order:
        order.append(figure)
    values[(figure, io)].append(float(value))
where = "proxies on CPU 1, loadgen and back end on CPU 0" if split != "0" else "everything on every CPU"
print(f"# io_uring vs epoll, {cpus} CPUs, {kernel}: one mailgate worker each, {where}, simulated back end\n")
print(f"{rounds} alternating rounds of {secs} s each (medians, range in brackets); idle: {idle} IMAP IDLE sessions.\n")
print("| figure | uring | epoll | epoll / uring |")
print("| --- | --- | --- | --- |")
for figure in order:
    u, e = values[(figure, "uring")], values[(figure, "epoll")]
    mu, me = statistics.median(u), statistics.median(e)
    span = lambda xs: f" [{min(xs):.3g}–{max(xs):.3g}]" if len(xs) > 1 else ""
    print(f"| {figure} | {mu:.3g}{span(u)} | {me:.3g}{span(e)} | {me / mu:.2f} |")
PY
