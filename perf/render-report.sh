#!/usr/bin/env bash
# Renders a loadgen HTML report in headless Chromium and checks that the
# page's three charts were drawn: proof that the report opens in a browser.
# Writes the screenshot next to the report (keep it out of the repository).
#
#   perf/render-report.sh [report.html]   (default: a fresh 5 s logins run)
#
# Needs Debian's `chromium` (apt-get install chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { echo "chromium missing: apt-get install chromium" >&2; exit 1; }
cargo build --release -q -p mailgate-loadgen
LG=$PWD/target/release/mailgate-loadgen
WORK=$(mktemp -d /tmp/mailgate-report.XXXXXX)
BE_PID=
trap '[ -n "$BE_PID" ] && kill $BE_PID 2>/dev/null; true' EXIT
REPORT=${1:-}
if [ -z "$REPORT" ]; then
  "$LG" backend > "$WORK/backend.addr" &
  BE_PID=$!
  for _ in $(seq 100); do grep -q imap "$WORK/backend.addr" 2>/dev/null && break; sleep 0.05; done
  REPORT=$WORK/report.html
  "$LG" logins --target "$(awk '/^imap/{print $2}' "$WORK/backend.addr")" --duration 5s --quiet --report "$REPORT"
fi
SHOT=${REPORT%.html}.png
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,1700 \
  --screenshot="$SHOT" "file://$(readlink -f "$REPORT")" 2>/dev/null
# The DOM as Chromium built it: three SVG charts with drawn paths.
chromium --headless --no-sandbox --disable-gpu --dump-dom "file://$(readlink -f "$REPORT")" 2>/dev/null > "$WORK/dom.html"
CHARTS=$(grep -o '<svg' "$WORK/dom.html" | wc -l)
PATHS=$(grep -oE '<(polyline|path|rect|circle)' "$WORK/dom.html" | wc -l)
[ "$CHARTS" -eq 3 ] && [ "$PATHS" -gt 20 ] || { echo "charts not rendered: $CHARTS svg, $PATHS shapes" >&2; exit 1; }
echo "rendered $REPORT: $CHARTS charts, $PATHS shapes; screenshot $SHOT ($(stat -c %s "$SHOT") bytes)"
