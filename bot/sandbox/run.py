"""Running a short command in the sandbox and capturing what it prints."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass

from bot.sandbox import Sandbox, SandboxRequest


@dataclass(frozen=True)
class Captured:
    returncode: int | None
    stdout: bytes
    stderr: str
    truncated: bool = False
    timed_out: bool = False


async def run_captured(sandbox: Sandbox, request: SandboxRequest, *, stdin: bytes | None = None,
                       timeout: float = 120.0, limit: int = 8 * 1024 * 1024) -> Captured:
    """Runs ``request`` to its end (or ``timeout``), keeping at most ``limit`` bytes of stdout and
    the last 16 KiB of stderr; everything the command started is killed afterwards. Raises
    SandboxUnavailable, OSError."""
    async with sandbox.launch(request) as launch:
        proc = await asyncio.create_subprocess_exec(
            *launch.argv, cwd=launch.cwd, env=launch.env,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )
        try:
            out, err, truncated = await asyncio.wait_for(_communicate(proc, stdin, limit), timeout)
        except asyncio.TimeoutError:
            return Captured(None, b"", "", timed_out=True)
        finally:
            _kill_group(proc)
            await proc.wait()
    return Captured(proc.returncode, out, err[-16384:].decode("utf-8", "replace"), truncated)


async def _communicate(proc: asyncio.subprocess.Process, stdin: bytes | None, limit: int) -> tuple[bytes, bytes, bool]:
    assert proc.stdout is not None and proc.stderr is not None
    if stdin is not None and proc.stdin is not None:
        proc.stdin.write(stdin)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await proc.stdin.drain()
        proc.stdin.close()
    errors = asyncio.ensure_future(proc.stderr.read())
    try:
        out = await proc.stdout.readexactly(limit + 1)
        truncated = True
        _kill_group(proc)
    except asyncio.IncompleteReadError as short:
        out, truncated = short.partial, False
    err = await errors
    await proc.wait()
    return out[:limit], err, truncated


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
