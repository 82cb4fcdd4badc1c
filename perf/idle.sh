#!/usr/bin/env bash
# Memory and descriptors per idle logged-in session through mailgate, for
# plaintext sessions (splice path: no buffer, no pipe while idle) and TLS
# sessions (copy path through rustls), against a minimal asyncio back end so
# that only mailgate is measured.
#
#   perf/idle.sh [sessions (default 9000)]
#
# RLIMIT_NOFILE bounds the count: each session holds two descriptors in
# mailgate. Where the hard limit cannot be raised (this sandbox: 20000,
# EPERM above), ~9 900 sessions is the ceiling per mailgate process.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-9000}
cargo build --release -q -p mailgate
MG=target/release/mailgate
WORK=$(mktemp -d /tmp/mailgate-idle.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BACKEND_PORT=$(free_port)

python3 - "$BACKEND_PORT" <<'PY' &
import asyncio, sys
async def handle(r, w):
    w.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN SASL-IR] stub\r\n")
    line = await r.readline()
    w.write(line.split(b" ")[0] + b" OK Logged in\r\n")
    await w.drain()
    while await r.read(65536):
        pass
    w.close()
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=4096)
    await server.serve_forever()
asyncio.run(main())
PY
PIDS+=($!)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 1 -subj /CN=localhost 2>/dev/null
echo "* 127.0.0.1" > "$WORK/users.map"
cat > "$WORK/mailgate.toml" <<CONF
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
CONF
$MG run --config "$WORK/mailgate.toml" --ready-file "$WORK/ready" 2>"$WORK/mailgate.log" &
MG_PID=$!
PIDS+=($MG_PID)
for _ in $(seq 100); do [ -f "$WORK/ready" ] && break; sleep 0.05; done
grep "open files" /proc/$MG_PID/limits >&2
PLAIN=$(sed -n 1p "$WORK/ready" | awk '{print $2}')
TLS=$(sed -n 2p "$WORK/ready" | awk '{print $2}')

python3 - "$MG_PID" "$PLAIN" "$TLS" "$N" <<'PY' | tee "perf/results/idle-$(date -u +%Y%m%dT%H%M%SZ).md"
import os, socket, ssl, sys, time
pid, plain, tls, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
def rss_kib():
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Rss:"):
            return int(line.split()[1])
def fds():
    return len(os.listdir(f"/proc/{pid}/fd"))
def open_sessions(addr, wrap):
    host, port = addr.rsplit(":", 1)
    socks = []
    for i in range(n):
        s = wrap(socket.create_connection((host, int(port))))
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"a LOGIN user%d pw\r\n" % i)
        line = f.readline()
        assert line.startswith(b"a OK"), (i, line)
        socks.append((s, f))
    return socks
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
rows = []
for name, addr, wrap in (("plaintext (splice path)", plain, lambda s: s), ("implicit TLS (rustls, copy path)", tls, lambda s: ctx.wrap_socket(s, server_hostname="localhost"))):
    time.sleep(1)
    before, fd0 = rss_kib(), fds()
    socks = open_sessions(addr, wrap)
    time.sleep(1)
    after, fd1 = rss_kib(), fds()
    rows.append((name, (after - before) / n, (fd1 - fd0) / n))
    for s, f in socks:
        f.close()
        s.close()
    del socks
    deadline = time.time() + 60
    while fds() > fd0 + 10 and time.time() < deadline:
        time.sleep(0.2)
print(f"# idle logged-in IMAP sessions through mailgate: {n} at once, {os.cpu_count()} CPUs\n")
print("| sessions | RSS per session (KiB) | descriptors per session |")
print("| --- | --- | --- |")
for name, kib, d in rows:
    print(f"| {name} | {kib:.1f} | {d:.2f} |")
print("\nTargets (issue): ≤ 16 KiB plaintext, ≤ 64 KiB TLS; nginx ~9 KiB (DESIGN.md).")
PY
