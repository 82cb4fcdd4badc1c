"""A TCP relay that records what its clients send.

    tcp_recorder.py TARGET_PORT PORT_FILE RECORD_DIR [EARLY_WAIT]

Listens on 127.0.0.1 (an ephemeral port, written to PORT_FILE once
listening), relays each connection to 127.0.0.1:TARGET_PORT both ways, and
appends what the client sent to RECORD_DIR/<n>.up, n counting connections
from 0. Each file is complete once the client has closed its side. Used to
see what mailgate says to a real back end. At most 64 connections at once.

With EARLY_WAIT (seconds), each connection to the target is made only once
the client has sent something or EARLY_WAIT has passed, and RECORD_DIR/<n>.early
says which ("yes": the client spoke before any greeting could reach it).
"""

import os
import select
import socket
import sys
import threading

target_port = int(sys.argv[1])
port_file = sys.argv[2]
record_dir = sys.argv[3]
early_wait = float(sys.argv[4]) if len(sys.argv) > 4 else None

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.bind(("127.0.0.1", 0))
server.listen(64)
slots = threading.BoundedSemaphore(64)


def pipe(src, dst, record):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            if record is not None:
                record.write(data)
                record.flush()
            dst.sendall(data)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def serve(client, n):
    try:
        if early_wait is not None:
            spoke, _, _ = select.select([client], [], [], early_wait)
            with open(os.path.join(record_dir, f"{n}.early"), "w") as f:
                f.write("yes" if spoke else "no")
        upstream = socket.create_connection(("127.0.0.1", target_port), timeout=10)
        upstream.settimeout(None)
        with open(os.path.join(record_dir, f"{n}.up.part"), "wb") as record:
            down = threading.Thread(target=pipe, args=(upstream, client, None))
            down.start()
            pipe(client, upstream, record)
            down.join(30)
        os.rename(
            os.path.join(record_dir, f"{n}.up.part"), os.path.join(record_dir, f"{n}.up")
        )
        upstream.close()
    finally:
        client.close()
        slots.release()


tmp = port_file + ".tmp"
with open(tmp, "w") as f:
    f.write(str(server.getsockname()[1]))
os.rename(tmp, port_file)
n = 0
while True:
    client, _ = server.accept()
    slots.acquire()
    threading.Thread(target=serve, args=(client, n), daemon=True).start()
    n += 1
