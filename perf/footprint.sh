#!/usr/bin/env bash
# Footprint: the stripped binary size and the memory of an idle daemon (2
# workers, 4 listeners: IMAP, IMAPS, POP3, POP3S), for the `o3` profile
# (release's settings before the footprint tuning: opt-level 3, thin LTO,
# 4 codegen units; the baseline), `release` (optimized for size but for
# ring and rustls, fat LTO, one codegen unit) and `tiny` (release at
# opt-level "z"; PROFILES="o3 release" picks, the first is the baseline),
# and the CPU per login of each, so a smaller binary is not paid for in
# speed: IMAP logins/s and mailgate CPU per login (plaintext and IMAPS, 4
# closed-loop clients against the simulated back end), alternated R rounds,
# medians.
#
#   perf/footprint.sh [seconds per run (default 10)] [rounds (default 3)]
#
# The proxies run on CPU 1, the loadgen and back end on CPU 0 (SPLIT=0: all
# CPUs). Prints a Markdown table and saves it under perf/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
ROUNDS=${2:-3}
read -r -a PROFILES <<< "${PROFILES:-o3 release tiny}"
# mailgate is built alone, as contrib/deb/build.sh builds it: built together
# with the load generator, cargo would unify the features of the
# dependencies they share, and the binary would not be the one shipped.
for p in "${PROFILES[@]}"; do
  echo "building --profile $p..." >&2
  cargo build --profile "$p" -q -p mailgate --bin mailgate
done
cargo build --release -q -p mailgate-loadgen
LG=$PWD/target/release/mailgate-loadgen
WORK=$(mktemp -d /tmp/mailgate-footprint.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
ON_CLIENT=(taskset -c 0); ON_PROXY=(taskset -c 1)
if [ "${SPLIT:-1}" = 0 ]; then ON_CLIENT=(); ON_PROXY=(); fi

"${ON_CLIENT[@]}" "$LG" backend --threads 1 > "$WORK/backend.addr" &
PIDS+=($!)
for _ in $(seq 100); do grep -q pop3 "$WORK/backend.addr" 2>/dev/null && break; sleep 0.05; done
IMAP_PORT=$(awk '/^imap/{split($2,a,":"); print a[2]}' "$WORK/backend.addr")
POP3_PORT=$(awk '/^pop3/{split($2,a,":"); print a[2]}' "$WORK/backend.addr")
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/key.pem" \
  -out "$WORK/cert.pem" -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
echo "* 127.0.0.1" > "$WORK/users.map"
cat > "$WORK/mailgate.toml" <<CONF
[[listen]]
protocol = "imap"
address = "127.0.0.1:0"

[[listen]]
protocol = "imap"
address = "127.0.0.1:0"
tls = "implicit"

[[listen]]
protocol = "pop3"
address = "127.0.0.1:0"

[[listen]]
protocol = "pop3"
address = "127.0.0.1:0"
tls = "implicit"

[tls]
cert = "cert.pem"
key = "key.pem"

[directory]
kind = "static"
map = "users.map"

[backend]
imap_port = $IMAP_PORT
pop3_port = $POP3_PORT

[runtime]
workers = 2
pin_workers = false
shutdown_grace = "1s"
allow_root = true                 # benchmarks run as root here
CONF

declare -A PID PLAIN TLS SIZE RSS ANON
for p in "${PROFILES[@]}"; do
  bin=$PWD/target/$p/mailgate
  strip -o "$WORK/mailgate-$p" "$bin"
  SIZE[$p]=$(stat -c %s "$WORK/mailgate-$p")
  "${ON_PROXY[@]}" "$bin" run --config "$WORK/mailgate.toml" --ready-file "$WORK/$p.ready" 2>"$WORK/$p.log" &
  PID[$p]=$!
  PIDS+=(${PID[$p]})
  for _ in $(seq 100); do [ -f "$WORK/$p.ready" ] && break; sleep 0.05; done
  PLAIN[$p]=$(sed -n 1p "$WORK/$p.ready" | awk '{print $2}')
  TLS[$p]=$(sed -n 2p "$WORK/$p.ready" | awk '{print $2}')
done
sleep 2
for p in "${PROFILES[@]}"; do
  RSS[$p]=$(awk '/^VmRSS:/{print $2}' "/proc/${PID[$p]}/status")
  ANON[$p]=$(awk '/^RssAnon:/{print $2}' "/proc/${PID[$p]}/status")
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)
field() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
RESULTS=$WORK/results.tsv
: > "$RESULTS"
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RESULTS"; }
measure() { # figure profile round target extra...
  local figure=$1 p=$2 round=$3 target=$4; shift 4
  local t0 t1 out cpu
  t0=$(cpu_ticks "${PID[$p]}")
  out=$("${ON_CLIENT[@]}" "$LG" "$@" --target "$target" --duration "${SECS}s" --password pw --json --quiet)
  t1=$(cpu_ticks "${PID[$p]}")
  [ "$(echo "$out" | field errors)" = 0 ] || { echo "$figure $p: errors: $out" >&2; exit 1; }
  cpu=$(python3 -c "print(($t1 - $t0) / $TICK)")
  record "$figure/s" "$p" "$round" "$(echo "$out" | field per_second)"
  record "$figure cpu ms" "$p" "$round" "$(python3 -c "print($cpu * 1000 / max(1, $(echo "$out" | field ok)))")"
}
for round in $(seq "$ROUNDS"); do
  for p in "${PROFILES[@]}"; do
    echo "round $round: $p..." >&2
    measure "logins plaintext" "$p" "$round" "${PLAIN[$p]}" logins --clients 4
    measure "logins IMAPS" "$p" "$round" "${TLS[$p]}" logins --clients 4 --tls implicit --insecure
  done
done

OUT=perf/results/footprint-$(date -u +%Y%m%dT%H%M%SZ).md
{
  echo "# Footprint (perf/footprint.sh $SECS $ROUNDS)"
  echo
  echo "$(uname -r), $(nproc) CPUs; idle daemon: 2 workers, 4 listeners (IMAP, IMAPS, POP3, POP3S), 2 s after start"
  echo
  echo "| profile | stripped binary | idle RSS | idle anonymous RSS |"
  echo "| --- | --- | --- | --- |"
  for p in "${PROFILES[@]}"; do
    python3 -c "import sys; print(f'| $p | {${SIZE[$p]} / 2**20:.2f} MiB | {${RSS[$p]} / 1024:.1f} MiB | {${ANON[$p]} / 1024:.1f} MiB |')"
  done
  echo
  python3 - "$RESULTS" "${PROFILES[@]}" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(lambda: collections.defaultdict(list))
for line in open(sys.argv[1]):
    figure, profile, _, value = line.rstrip("\n").split("\t")
    rows[figure][profile].append(float(value))
profiles = sys.argv[2:]
ratios = [f"{p}/{profiles[0]}" for p in profiles[1:]]
print("| figure (median of rounds) | " + " | ".join(profiles + ratios) + " |")
print("| --- " * (len(profiles) + len(ratios) + 1) + "|")
for figure, by in rows.items():
    med = [statistics.median(by[p]) for p in profiles]
    cells = [f"{m:.3f}" for m in med] + [f"{m / med[0]:.3f}" for m in med[1:]]
    print(f"| {figure} | " + " | ".join(cells) + " |")
print()
print("Every round (min–max), to read the medians against:")
print()
print("| figure | " + " | ".join(profiles) + " |")
print("| --- " * (len(profiles) + 1) + "|")
for figure, by in rows.items():
    print(f"| {figure} | " + " | ".join(f"{min(by[p]):.3f}–{max(by[p]):.3f}" for p in profiles) + " |")
PY
} | tee "$OUT"
echo "saved $OUT" >&2
