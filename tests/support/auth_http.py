#!/usr/bin/env python3
"""A small nginx-style auth_http server for mailgate's tests.

Shaped like the example in nginx's documentation: it answers every
request with headers only (`Auth-Status`, `Auth-Server`, `Auth-Port`,
`Auth-Wait`, optionally `Auth-User`/`Auth-Pass`). Usage:

    auth_http.py CONFIG.json PORT_FILE LOG_FILE [CERT KEY]

CONFIG.json: {"users": {name: {"password": ..., "server": ..., "ports":
{"imap": N, "pop3": N}, "user": optional rewrite, "pass": optional
rewrite}}, "wait": seconds for a wrong password, "secret": the
X-Auth-Key header required (or null)}. Special names: hang@... (never
answers), garbage@... (answers something that is not HTTP), noserver@...
(Auth-Status OK without a server), slow-then-ok@... (WAIT once, then OK).
It binds 127.0.0.1 on an ephemeral port (HTTPS with CERT and KEY), writes
the port to PORT_FILE, and appends one JSON line per request (headers,
client port) to LOG_FILE.
"""
import json
import socketserver
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer

CONFIG = json.load(open(sys.argv[1]))
PORT_FILE, LOG_FILE = sys.argv[2], sys.argv[3]
ASKED = {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, headers):
        self.send_response(200)
        for name, value in headers:
            # Raw UTF-8, as a PHP or Python auth script writes a password
            # (http.server's send_header would encode Latin-1).
            self._headers_buffer.append(f"{name}: {value}\r\n".encode("utf-8"))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self):
        h = self.headers
        with open(LOG_FILE, "a") as log:
            log.write(json.dumps({"path": self.path, "peer_port": self.client_address[1],
                                  "headers": {k: v for k, v in h.items()}}) + "\n")
        user = urllib.parse.unquote(h.get("Auth-User", ""))
        password = urllib.parse.unquote(h.get("Auth-Pass", ""))
        protocol = h.get("Auth-Protocol", "")
        if CONFIG.get("secret") and h.get("X-Auth-Key") != CONFIG["secret"]:
            self.answer([("Auth-Status", "Forbidden")])
            return
        if user.startswith("hang@"):
            time.sleep(30)
            return
        if user.startswith("garbage@"):
            self.wfile.write(b"SSH-2.0-not-http\r\n\r\n")
            self.close_connection = True
            return
        if user.startswith("noserver@"):
            self.answer([("Auth-Status", "OK")])
            return
        if user.startswith("slow-then-ok@"):
            ASKED[user] = ASKED.get(user, 0) + 1
            if ASKED[user] == 1:
                self.answer([("Auth-Status", "WAIT"), ("Auth-Wait", "1")])
                return
            user = CONFIG["slow_then"]
        entry = CONFIG["users"].get(user)
        if entry is None or ("Auth-Pass" in h and password != entry["password"]):
            headers = [("Auth-Status", "Invalid login or password")]
            if CONFIG.get("wait"):
                headers.append(("Auth-Wait", str(CONFIG["wait"])))
            self.answer(headers)
            return
        headers = [("Auth-Status", "OK"), ("Auth-Server", entry["server"]),
                   ("Auth-Port", str(entry["ports"][protocol]))]
        if "user" in entry:
            headers.append(("Auth-User", entry["user"]))
        if "pass" in entry:
            headers.append(("Auth-Pass", entry["pass"]))
        self.answer(headers)


class Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
if len(sys.argv) > 5:
    import ssl
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(sys.argv[4], sys.argv[5])
    server.socket = context.wrap_socket(server.socket, server_side=True)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
import os
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
