"""Relaying TCP connections (asyncio): what the VM lab's tunnel and the local lab's uplink share."""

from __future__ import annotations

import asyncio

CONNECT_TIMEOUT = 10.0


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy ``reader`` to ``writer`` until it ends, then half-close ``writer`` (or close it)."""
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        if writer.can_write_eof():
            try:
                writer.write_eof()
            except (ConnectionError, OSError):
                writer.close()


async def relay(host: str, port: int, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
    """One accepted connection relayed to HOST:PORT, both ways, until both sides are done."""
    try:
        server_r, server_w = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    except (OSError, TimeoutError):
        client_w.close()
        return
    await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))
    server_w.close()
    client_w.close()
