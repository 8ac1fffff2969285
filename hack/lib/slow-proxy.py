#!/usr/bin/env python3
"""A plain-TCP front for a service whose answers (target to client) are paced to a rate shared by every connection;
what the client sends goes through at once. A test uses it to make a restore slow enough to be watched running
(a download of a repository's packs at a known rate), without slowing the backup that wrote them.

Usage: slow-proxy.py LISTEN_HOST:PORT TARGET_HOST:PORT BYTES_PER_SECOND
Runs until killed; one connection to the target per client connection.
"""
import asyncio
import sys

CHUNK = 16384


class Pace:
    """One rate for all connections: each chunk is sent when the ones before it (of any connection) have had their
    time at the rate."""

    def __init__(self, rate):
        self.rate = rate
        self.next_free = 0.0

    async def wait(self, n):
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self.next_free)
        self.next_free = start + n / self.rate
        await asyncio.sleep(self.next_free - now)


async def pipe(reader, writer, pace=None):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            if pace:
                await pace.wait(len(data))
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            writer.close()
        except ConnectionError:
            pass


def split(hostport):
    host, _, port = hostport.rpartition(":")
    return host, int(port)


async def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    listen, target = split(sys.argv[1]), split(sys.argv[2])
    pace = Pace(float(sys.argv[3]))

    async def handle(client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, up_writer), pipe(up_reader, client_writer, pace))

    server = await asyncio.start_server(handle, *listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
