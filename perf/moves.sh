#!/usr/bin/env bash
# Mailbox moves and the directory watch, measured with the load generator's
# cluster mode (three boxes on loopback, a real slapd with syncprov, three
# mailgate front ends; see docs/loadgen.md):
#
#  1. 100 moves by the runbook (hold, then host + active) under load: hold
#     and reroute latency per front end, p50/p99.
#  2. 100 direct moves (host only): reroute latency, logins that reached the
#     old box in the propagation window.
#  3. LDAP lookups per login over a LOOKUP_RUN mixed run (default 10m; the
#     workload stops earlier if it reaches 1 000 000 sessions) with the
#     watch and without it, same ttl (60 s), same seed.
#
#   perf/moves.sh [LOOKUP_RUN]
#
# Needs slapd and ldap-utils (tests/setup.sh installs them). Everything runs
# on loopback and is stopped at the end. Results go to perf/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-10m}
cargo build --release -q -p mailgate -p mailgate-loadgen
LG=$PWD/target/release/mailgate-loadgen
OUT=perf/results/moves-$(date -u +%Y%m%dT%H%M%SZ).md
JSON=$(mktemp -d /tmp/mailgate-moves.XXXXXX)
echo "raw JSON in $JSON" >&2

common=(cluster --boxes 3 --directory ldap --message-size 16384 --clients 4)

echo "== hold moves" >&2
"$LG" "${common[@]}" --users 3000 --sessions 1000000 --duration 30s \
    --moves 100 --move-mode hold --ttl 1h --json > "$JSON/hold.json"
echo "== direct moves" >&2
"$LG" "${common[@]}" --users 3000 --sessions 1000000 --duration 30s \
    --moves 100 --move-mode direct --ttl 1h --json > "$JSON/direct.json"
for watch in true false; do
    echo "== $RUN lookups, watch $watch" >&2
    "$LG" "${common[@]}" --users 20000 --sessions 1000000 --duration "$RUN" \
        --watch "$watch" --ttl 60s --json > "$JSON/lookups-$watch.json"
done

python3 - "$JSON" "$RUN" > "$OUT" <<'PY'
import json, sys
d, run = sys.argv[1], sys.argv[2]
load = lambda n: json.load(open(f"{d}/{n}.json"))
print("# Mailbox moves and the directory watch (perf/moves.sh)\n")
for mode in ("hold", "direct"):
    r = load(mode)
    m = r["moves"]
    print(f"## {m['moves']} {mode} moves under load ({r['sessions_ok']} workload sessions ok, errors {r['errors_by_kind']})\n")
    print(f"sessions on the old box ended {m['sessions_ended']}, left {m['sessions_left_on_old_box']}; "
          f"logins on the old box after the hold {m['old_box_logins_after_hold']}, "
          f"before a front end followed {m['old_box_logins_before_followed']}; probe timeouts {m['probe_timeouts']}\n")
    print("| front end | hold p50 ms | hold p99 ms | reroute p50 ms | reroute p99 ms | reroute max ms |")
    print("| --- | --- | --- | --- | --- | --- |")
    for f, rr in enumerate(m["reroute"]):
        h = m["hold"][f]
        hold = (f"{h['p50_ms']:.1f} | {h['p99_ms']:.1f}") if h["count"] else "- | -"
        print(f"| {f} | {hold} | {rr['p50_ms']:.1f} | {rr['p99_ms']:.1f} | {rr['max_ms']:.1f} |")
    print()
print(f"## LDAP lookups per login, {run} runs, ttl 60 s\n")
print("| watch | sessions ok | logins | lookups | lookups per login | content-sync searches |")
print("| --- | --- | --- | --- | --- | --- |")
for watch in ("true", "false"):
    r = load(f"lookups-{watch}")
    l = r["ldap"]
    print(f"| {watch} | {r['sessions_ok']} | {l['logins']} | {l['lookups']} | {l['lookups_per_login']:.4f} | {l['watch_searches']} |")
PY
cat "$OUT"
echo "saved $OUT" >&2
rm -rf "$JSON"
