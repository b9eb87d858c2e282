"""Reading webhook bodies at a bounded cost: a body over the cap is refused from its
Content-Length before a byte is read, and large bodies are read a few at a time, so that many
concurrent large deliveries (signed or not) cost a bounded amount of memory."""

from __future__ import annotations

import asyncio

from aiohttp import web

LARGE_BODY_BYTES = 1024 * 1024  # larger bodies (or bodies of unknown length) wait for a slot
LARGE_BODY_SLOTS = 4

BODY_SLOTS = web.AppKey("body_slots", asyncio.Semaphore)


class TooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"body is larger than {limit} bytes")


def add_body_slots(app: web.Application) -> None:
    app[BODY_SLOTS] = asyncio.Semaphore(LARGE_BODY_SLOTS)


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, read once; TooLarge past ``limit``."""
    length = request.content_length
    if length is not None and length > limit:
        raise TooLarge(limit)
    if length is not None and length <= LARGE_BODY_BYTES:
        return await _read(request, limit)
    async with request.app[BODY_SLOTS]:
        return await _read(request, limit)


async def _read(request: web.Request, limit: int) -> bytes:
    # `content.read(n)` answers with what has arrived so far, not n bytes: read to the end.
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise TooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
