#!/usr/bin/env python3
"""A small OAuth 2.0 provider for mailgate's tests: what Dovecot's oauth2
passdb and mailgate's [oauth] verify ask of an identity provider.

    oauth_idp.py STATE_DIR PORT_FILE LOG_FILE

STATE_DIR holds `tokens.json` ({token: claims}) and `jwks.json`, both read
again on every request (a test issues tokens and rotates keys by writing
them). Answers:
  GET  /tokeninfo?access_token=T   the claims of T plus "active": true,
                                   or {"active": false} (Dovecot 2.3 asks
                                   this first)
  POST /introspect, /mg-introspect RFC 7662: form field `token`; the same
                                   answer (Dovecot asks the first, mailgate
                                   is configured with the second, so the log
                                   tells who asked)
  GET  /jwks                       jwks.json
It binds 127.0.0.1 on an ephemeral port, writes the port to PORT_FILE and
appends one line per request ("METHOD PATH") to LOG_FILE.
"""
import json
import os
import sys
import urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

STATE, PORT_FILE, LOG_FILE = sys.argv[1], sys.argv[2], sys.argv[3]


def claims_of(token):
    try:
        tokens = json.load(open(os.path.join(STATE, "tokens.json")))
    except (OSError, ValueError):
        tokens = {}
    claims = tokens.get(token)
    if claims is None:
        return {"active": False}
    return dict(claims, active=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def record(self):
        path = urllib.parse.urlsplit(self.path).path
        with open(LOG_FILE, "a") as log:
            log.write("%s %s\n" % (self.command, path))

    def answer(self, body, status=200):
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.record()
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/tokeninfo":
            token = urllib.parse.parse_qs(url.query).get("access_token", [""])[0]
            self.answer(claims_of(token))
        elif url.path == "/jwks":
            self.answer(open(os.path.join(STATE, "jwks.json"), "rb").read())
        else:
            self.answer({"error": "not found"}, 404)

    def do_POST(self):
        self.record()
        length = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode())
        token = form.get("token", [""])[0]
        self.answer(claims_of(token))


class Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
with open(PORT_FILE + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(PORT_FILE + ".tmp", PORT_FILE)
server.serve_forever()
