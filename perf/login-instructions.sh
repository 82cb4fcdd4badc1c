#!/usr/bin/env bash
# User-space instructions per login, counted: mailgate (one worker, epoll)
# in front of the simulated back end under valgrind's callgrind, one client
# making N logins (connect, greeting, LOGIN / USER+PASS, LOGOUT / QUIT) after
# a warm-up whose counts are discarded. Prints instructions per login for
# this build (and MG_BASE, an older mailgate binary, the ratio beside it),
# heap allocations per login counted from the same call graph, and the
# functions that cost the most, inclusive; saves the table under
# perf/results/.
#
#   perf/login-instructions.sh [logins (default 500)] [imap|pop3 (default imap)]
#
# Why: CPU time per login moves ±15 % between rounds on a shared host;
# instruction counts move ~3 % between runs, so a change of 5 % in mailgate's
# own work is seen here long before it shows in perf/efficiency.sh. They
# count user space only: the kernel's TCP work (about 70 % of a login's
# CPU, docs/performance.md) is not in them. Needs valgrind. Everything
# listens on 127.0.0.1 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-500}
PROTO=${2:-imap}
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
cargo build --release -q -p mailgate -p mailgate-loadgen
MG=$PWD/target/release/mailgate
LG=$PWD/target/release/mailgate-loadgen
[ -z "${MG_BASE:-}" ] || MG_BASE=$(realpath "$MG_BASE")
WORK=$(mktemp -d /tmp/mailgate-instructions.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

source perf/lib.sh
start_simulated_backend --threads 1

count() { # name binary → writes $WORK/<name>.out (callgrind) and prints Ir per login
  local name=$1 bin=$2 dir="$WORK/$1" pid addr
  mkdir -p "$dir"
  simulated_config "$dir/mailgate.toml" epoll "$PROTO"
  valgrind --tool=callgrind --callgrind-out-file="$dir/callgrind.%p" \
    "$bin" run --config "$dir/mailgate.toml" --ready-file "$dir/ready" 2>"$dir/mailgate.log" &
  pid=$!
  PIDS+=($pid)
  for _ in $(seq 600); do [ -f "$dir/ready" ] && break; sleep 0.1; done
  addr=$(awk '{print $2; exit}' "$dir/ready")
  "$LG" logins --target "$addr" --protocol "$PROTO" --clients 1 --count 50 --quiet >/dev/null 2>&1
  callgrind_control -z "$pid" >/dev/null 2>&1
  "$LG" logins --target "$addr" --protocol "$PROTO" --clients 1 --count "$N" --quiet >/dev/null 2>&1
  callgrind_control -d "$pid" >/dev/null 2>&1
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  # The dump after the zeroing (the first file holds the warm-up's counts).
  local out
  out=$(ls "$dir"/callgrind.*.1 2>/dev/null | head -1)
  cp "$out" "$WORK/$name.out"
  callgrind_annotate "$WORK/$name.out" 2>/dev/null |
    awk -v n="$N" '/PROGRAM TOTALS/ {gsub(",", "", $1); printf "%.0f\n", $1 / n}'
}

# Heap allocations per login: the calls into mimalloc's entry points that
# Rust's global allocator makes (alloc, alloc_zeroed, realloc), counted from
# the call graph of the same callgrind file; calls mimalloc makes to itself
# are left out. Each costs ~70 instructions and its `free` ~40 (mimalloc,
# this host), so the count is the cost of a login's buffers and boxes.
allocs() { # callgrind file → allocations per login
  python3 - "$1" "$N" <<'PY'
import re, sys
names, caller, callee, calls = {}, None, None, 0
def name(text):
    m = re.match(r"\((\d+)\)(?: (.*))?", text)
    if not m:
        return text
    if m.group(2):
        names[m.group(1)] = m.group(2)
    return names.get(m.group(1), "")
entry = re.compile(r"^mi_(malloc|zalloc|realloc)_aligned$")
for line in open(sys.argv[1]):
    if line.startswith("fn="):
        caller = name(line[3:].strip())
    elif line.startswith("cfn="):
        callee = name(line[4:].strip())
    elif line.startswith("calls=") and entry.match(callee or "") and not caller.startswith("mi_"):
        calls += int(line[6:].split()[0])
print(f"{calls / int(sys.argv[2]):.1f}")
PY
}

echo "callgrind: $N $PROTO logins per build..." >&2
THIS=$(count mailgate "$MG")
THIS_ALLOCS=$(allocs "$WORK/mailgate.out")
OUT="perf/results/login-instructions-$(date -u +%Y%m%dT%H%M%SZ).md"
{
  echo "# User-space instructions per $PROTO login: mailgate $(git rev-parse --short HEAD) (epoll, one worker), simulated back end"
  echo
  echo "callgrind, $N logins from one client after 50 discarded; user space only."
  echo
  if [ -n "${MG_BASE:-}" ]; then
    BASE=$(count baseline "$MG_BASE")
    BASE_ALLOCS=$(allocs "$WORK/baseline.out")
    echo "| build | instructions per login | ÷ baseline | allocations per login | ÷ baseline |"
    echo "| --- | --- | --- | --- | --- |"
    echo "| mailgate | $THIS | $(python3 -c "print(f'{$THIS / $BASE:.2f}')") | $THIS_ALLOCS | $(python3 -c "print(f'{$THIS_ALLOCS / max($BASE_ALLOCS, 0.1):.2f}')") |"
    echo "| baseline ($MG_BASE) | $BASE | 1.00 | $BASE_ALLOCS | 1.00 |"
  else
    echo "| build | instructions per login | allocations per login |"
    echo "| --- | --- | --- |"
    echo "| mailgate | $THIS | $THIS_ALLOCS |"
  fi
  echo
  echo "Most costly, inclusive, per login (mailgate):"
  echo
  echo '```'
  callgrind_annotate --inclusive=yes --threshold=100 "$WORK/mailgate.out" 2>/dev/null |
    python3 -c '
import re, sys
n, repo, seen = int(sys.argv[1]), sys.argv[2] + "/", set()
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S*?\.(?:rs|c|S)):(.*?)(?: \[.*\])?$", line)
    if not m or len(seen) >= 30:
        continue
    path, name = m.group(2), m.group(3)
    if path.startswith(repo):
        path = path[len(repo):]
    if path.startswith("src/"):
        name = path + ": " + name
    elif not re.search(r"Event::dispatch|Context::park", name):
        continue
    if name in seen:
        continue
    seen.add(name)
    print("%8.0f  %s" % (int(m.group(1).replace(chr(44), "")) / n, name[:130]))
' "$N" "$PWD"
  echo '```'
} > "$OUT"
cat "$OUT"
echo "saved $OUT" >&2
