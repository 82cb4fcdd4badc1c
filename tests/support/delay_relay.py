"""A TCP relay that delays every byte by a fixed time each way: a slow link
(a VPN between a front end and its back ends) on loopback.

    delay_relay.py TARGET_PORT PORT_FILE DELAY_MS

Listens on 127.0.0.1 (an ephemeral port, written to PORT_FILE once
listening) and relays each connection to 127.0.0.1:TARGET_PORT both ways.
What arrives on either side is sent on DELAY_MS after it arrived, in order,
without holding up what arrives after it: a round trip through the relay
takes 2 * DELAY_MS more than without it, however many messages are in
flight. The connection to the target is made DELAY_MS after the client's
was accepted: over a real link, a server accepts (and greets) only when
the client's last handshake packet has travelled to it, by which time
bytes the client sent at once are on their way too. Used by benchmarks
only. At most 256 connections at once.
"""

import asyncio
import os
import sys

target_port = int(sys.argv[1])
port_file = sys.argv[2]
delay = float(sys.argv[3]) / 1000.0
slots = asyncio.Semaphore(256)


async def pipe(reader, writer_ready):
    """Sends what `reader` gives on `writer_ready`'s writer, each chunk
    `delay` after it arrived, then the end of the stream."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def receive():
        try:
            while True:
                data = await reader.read(65536)
                await queue.put((loop.time() + delay, data))
                if not data:
                    return
        except OSError:
            await queue.put((loop.time() + delay, b""))

    receiving = asyncio.create_task(receive())
    writer = await writer_ready
    while True:
        due, data = await queue.get()
        await asyncio.sleep(max(0.0, due - loop.time()))
        try:
            if not data:
                writer.write_eof()
                break
            writer.write(data)
        except OSError:
            break
    await receiving


async def serve(client_reader, client_writer):
    async with slots:
        loop = asyncio.get_running_loop()
        upstream = loop.create_future()
        client_ready = loop.create_future()
        client_ready.set_result(client_writer)
        up = asyncio.create_task(pipe(client_reader, upstream))
        await asyncio.sleep(delay)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            up.cancel()
            client_writer.close()
            return
        upstream.set_result(up_writer)
        await asyncio.gather(up, pipe(up_reader, client_ready))
        up_writer.close()
        client_writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    tmp = port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    os.rename(tmp, port_file)
    async with server:
        await server.serve_forever()


asyncio.run(main())
