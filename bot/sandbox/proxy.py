"""The egress proxy: HTTP CONNECT and plain HTTP forwarding on a unix socket, to allowed hosts only.

One proxy serves one sandboxed run; the sandbox reaches it through the bridge. A destination is
allowed when an entry of the allowlist names it; a name that resolves to a loopback, link-local or
unspecified address is refused unless the entry itself is such an address (so an allowed local
model server works, and nothing else of the host's loopback does).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from bot.sandbox.policy import Endpoint, first_allowing, normal_host

log = logging.getLogger("agentry.sandbox.proxy")

HEAD_LIMIT = 64 * 1024
CONNECT_TIMEOUT = 30.0
CHUNK = 64 * 1024
_HOP_HEADERS = (b"proxy-connection:", b"proxy-authorization:")


class Refused(Exception):
    """The destination is not allowed; the message says why."""


class EgressProxy:
    def __init__(self, endpoints: Sequence[Endpoint], socket_path: Path) -> None:
        self.endpoints = tuple(endpoints)
        self.socket_path = socket_path
        self.denied: list[str] = []
        self.unreachable: list[str] = []  # allowed destinations that could not be reached, and why
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._accept, path=str(self.socket_path), limit=HEAD_LIMIT)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, _, headers = head.partition(b"\r\n")
        method, target, version = request_line.decode("latin-1").split(" ", 2)
        tunnel = method.upper() == "CONNECT"
        host, port, path = _destination(target, tunnel)
        try:
            upstream_reader, upstream_writer = await self._open(host, port)
        except Refused as refusal:
            self.denied.append(f"{host}:{port}")
            log.warning("sandbox egress refused: %s:%s (%s)", host, port, refusal)
            await _answer(writer, 403, f"agentry sandbox: {refusal}\n")
            return
        except OSError as exc:
            self.unreachable.append(f"{host}:{port} ({exc.strerror or exc or type(exc).__name__})")
            await _answer(writer, 502, f"agentry sandbox: cannot reach {host}:{port}: {exc.strerror or exc}\n")
            return
        if tunnel:
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        else:
            upstream_writer.write(f"{method} {path} {version}\r\n".encode("latin-1") + _forwarded(headers))
        await _pipe(reader, writer, upstream_reader, upstream_writer)

    async def _open(self, host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        endpoint = first_allowing(self.endpoints, host, port)
        if endpoint is None:
            raise Refused(f"{host}:{port} is not an allowed host (AGENTRY_SANDBOX_ALLOW_HOSTS adds hosts)")
        address = await _resolve(host, port)
        if _is_local(address) and endpoint.literal_ip is None and not endpoint.loopback:
            raise Refused(f"{host} resolves to the local address {address}")
        return await asyncio.wait_for(asyncio.open_connection(address, port), CONNECT_TIMEOUT)


def _destination(target: str, tunnel: bool) -> tuple[str, int, str]:
    if tunnel:
        parts = urlsplit("//" + target)
        if parts.hostname is None or parts.port is None:
            raise ValueError("CONNECT needs host:port")
        return normal_host(parts.hostname), parts.port, ""
    parts = urlsplit(target)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError("only absolute http:// requests are forwarded")
    path = parts.path or "/"
    return normal_host(parts.hostname), parts.port or 80, path + (f"?{parts.query}" if parts.query else "")


async def _resolve(host: str, port: int) -> str:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"cannot resolve {host}")
    return str(infos[0][4][0])


def _is_local(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified


def _forwarded(headers: bytes) -> bytes:
    lines = [line for line in headers.split(b"\r\n") if not line.lower().startswith(_HOP_HEADERS)]
    return b"\r\n".join(lines)


async def _answer(writer: asyncio.StreamWriter, status: int, text: str) -> None:
    body = text.encode()
    reason = {403: "Forbidden", 502: "Bad Gateway"}[status]
    writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    with contextlib.suppress(OSError):
        await writer.drain()


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader, upstream_writer: asyncio.StreamWriter,
) -> None:
    try:
        await asyncio.gather(_copy(reader, upstream_writer), _copy(upstream_reader, writer))
    finally:
        upstream_writer.close()


async def _copy(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(CHUNK):
            target.write(data)
            await target.drain()
        if target.can_write_eof():
            target.write_eof()
    except OSError:
        target.close()
