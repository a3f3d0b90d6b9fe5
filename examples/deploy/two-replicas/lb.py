#!/usr/bin/env python3
"""A small round-robin TCP load balancer for the two-replica example (standard library only).

    python3 lb.py --listen 127.0.0.1:8400 --backend 127.0.0.1:8401 --backend 127.0.0.1:8402

Each client connection goes to the next backend in turn; a backend that refuses the connection
is skipped for that client (the next one is tried). TLS passes through untouched: clients see
the replicas' own certificates (issued by the domain CA, valid for 127.0.0.1 and localhost),
and the replicas need no --trusted-proxy. In production use haproxy, nginx or a cloud load
balancer in the same TCP mode (or terminate TLS there and name it with --trusted-proxy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import sys

CONNECT_TIMEOUT = 3.0
CHUNK = 64 * 1024


def address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


class Balancer:
    def __init__(self, backends: list[tuple[str, int]]) -> None:
        self.backends = backends
        self.turn = itertools.cycle(range(len(backends)))

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        first = next(self.turn)
        for i in range(len(self.backends)):
            host, port = self.backends[(first + i) % len(self.backends)]
            try:
                return await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
            except (OSError, TimeoutError):
                print(f"lb: backend {host}:{port} unreachable, trying the next", file=sys.stderr)
        return None

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        upstream = await self.connect()
        if upstream is None:
            client_w.close()
            return
        up_r, up_w = upstream
        try:
            await asyncio.gather(pipe(client_r, up_w), pipe(up_r, client_w))
        finally:
            for w in (up_w, client_w):
                w.close()
                with contextlib.suppress(ConnectionError, OSError):
                    await w.wait_closed()


async def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", type=address, required=True, help="HOST:PORT to accept clients on")
    ap.add_argument("--backend", type=address, action="append", required=True,
                    help="HOST:PORT of a replica (repeat for each)")  # fmt: skip
    args = ap.parse_args(argv)
    lb = Balancer(args.backend)
    server = await asyncio.start_server(lb.handle, *args.listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    backends = ", ".join(f"{h}:{p}" for h, p in args.backend)
    print(f"lb: listening on {args.listen[0]}:{args.listen[1]}, round robin over {backends}",
          file=sys.stderr, flush=True)  # fmt: skip
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
