#!/usr/bin/env python3
"""A TLS front for a plain-TCP service, with a certificate the caller made (so a test can put a private CA in front
of a dev server whose own certificate names only localhost).

Usage: tls-proxy.py LISTEN_HOST:PORT TARGET_HOST:PORT CERT_PEM KEY_PEM
Runs until killed; one connection to the target per client connection.
"""
import asyncio
import ssl
import sys


async def pipe(reader, writer):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            writer.close()
        except (ConnectionError, ssl.SSLError):
            pass


def split(hostport):
    host, _, port = hostport.rpartition(":")
    return host, int(port)


async def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    listen, target = split(sys.argv[1]), split(sys.argv[2])
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])

    async def handle(client_reader, client_writer):
        try:
            target_reader, target_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, target_writer), pipe(target_reader, client_writer))

    server = await asyncio.start_server(handle, *listen, ssl=ctx)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
