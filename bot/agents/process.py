"""Running one agent process: line streaming, limits, process-group cleanup.

The process gets its own session (``start_new_session=True``), so its pid is the
id of a process group that holds every child and grandchild it starts. However
the run ends (exit, timeout, idle timeout, cancellation), the whole group gets
SIGTERM, then SIGKILL after a grace period; nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

READ_CHUNK_BYTES = 64 * 1024
DRAIN_SECONDS = 2.0  # how long to wait for the pipes after the process is gone
REAP_SECONDS = 5.0
STOP_GRACE_SECONDS = 1.0  # after a stop asked for, the SIGTERM -> SIGKILL delay, at most: people wait on it

# (line without newline, bytes dropped) -> False when the line shows no progress (a retry notice)
LineHandler = Callable[[bytes, int], Awaitable[bool | None]]
StopTarget = Callable[[int], int | None]  # the started pid -> the pid to SIGTERM, or None for the group


@dataclass(frozen=True)
class Limits:
    timeout_seconds: float
    idle_timeout_seconds: float
    kill_grace_seconds: float
    line_bytes: int  # longest line kept in memory; the rest is counted and dropped


@dataclass(frozen=True)
class ProcessOutcome:
    exit_code: int | None
    timed_out: bool
    idle_timed_out: bool
    output_bytes: int
    stopped: bool = False  # the caller's stop event ended the run


class Activity:
    """When output that shows progress last arrived, and how much output arrived in all."""

    def __init__(self, now: float) -> None:
        self.last = now
        self.bytes = 0

    def saw(self, count: int) -> None:
        self.bytes += count

    def progressed(self) -> None:
        self.last = asyncio.get_running_loop().time()


class LineSplitter:
    """Splits a byte stream into lines, keeping at most ``limit`` bytes of each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.buffer = bytearray()
        self.dropped = 0

    def push(self, data: bytes) -> list[tuple[bytes, int]]:
        lines = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            self._append(data[start:end])
            lines.append(self._take())
            start = end + 1
        self._append(data[start:])
        return lines

    def flush(self) -> list[tuple[bytes, int]]:
        return [self._take()] if self.buffer or self.dropped else []

    def _append(self, chunk: bytes) -> None:
        room = max(self.limit - len(self.buffer), 0)
        self.buffer += chunk[:room]
        self.dropped += max(len(chunk) - room, 0)

    def _take(self) -> tuple[bytes, int]:
        line = bytes(self.buffer).removesuffix(b"\r")
        dropped = self.dropped
        self.buffer.clear()
        self.dropped = 0
        return line, dropped


async def run_process(
    argv: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    stdin_data: bytes | None,
    on_stdout: LineHandler,
    on_stderr: LineHandler,
    limits: Limits,
    stop_target: StopTarget | None = None,
    stop: asyncio.Event | None = None,
) -> ProcessOutcome:
    """Run ``argv`` to the end, to a limit or until ``stop`` is set; raises OSError if it cannot
    start. ``stop_target`` names the process that gets the SIGTERM of a stop (a sandbox's init)
    instead of the group."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE if stdin_data is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    activity = Activity(asyncio.get_running_loop().time())
    pumps = asyncio.gather(
        _pump(proc.stdout, on_stdout, activity, limits.line_bytes),
        _pump(proc.stderr, on_stderr, activity, limits.line_bytes),
    )
    feeder = None
    if stdin_data is not None:
        feeder = asyncio.ensure_future(_feed_stdin(proc, stdin_data))
    stop = stop or asyncio.Event()
    try:
        timed_out, idle_timed_out = await _wait_for_exit(proc, activity, limits, stop)
    finally:
        grace = min(limits.kill_grace_seconds, STOP_GRACE_SECONDS) if stop.is_set() else limits.kill_grace_seconds
        await _complete_despite_cancellation(_clean_up(proc, pumps, feeder, grace, stop_target))
    return ProcessOutcome(proc.returncode, timed_out, idle_timed_out, activity.bytes, stop.is_set())


async def _complete_despite_cancellation(cleanup: Awaitable[None]) -> None:
    """Run ``cleanup`` to its end; a cancellation arriving meanwhile is re-raised afterwards."""
    task = asyncio.ensure_future(cleanup)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    task.result()


async def _clean_up(
    proc: asyncio.subprocess.Process, pumps: asyncio.Future, feeder: asyncio.Future | None, grace: float,
    stop_target: StopTarget | None,
) -> None:
    await _stop_group(proc, grace, stop_target)
    await _reap(proc)
    await _drain(proc, pumps)
    if feeder is not None:
        feeder.cancel()


async def _pump(
    reader: asyncio.StreamReader | None, handle: LineHandler, activity: Activity, limit: int
) -> None:
    if reader is None:
        return
    splitter = LineSplitter(limit)
    while data := await reader.read(READ_CHUNK_BYTES):
        activity.saw(len(data))
        lines = splitter.push(data)
        progressed = not lines  # part of a line is progress
        for line, dropped in lines:
            progressed |= await handle(line, dropped) is not False
        if progressed:
            activity.progressed()
    for line, dropped in splitter.flush():
        await handle(line, dropped)


async def _feed_stdin(proc: asyncio.subprocess.Process, data: bytes) -> None:
    assert proc.stdin is not None
    try:
        proc.stdin.write(data)
        await proc.stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        pass  # the process does not read its stdin; that is its business
    finally:
        proc.stdin.close()


async def _wait_for_exit(
    proc: asyncio.subprocess.Process, activity: Activity, limits: Limits, stop: asyncio.Event
) -> tuple[bool, bool]:
    """Wait for the exit or the stop event; returns (timed_out, idle_timed_out)."""
    loop = asyncio.get_running_loop()
    deadline = _deadline(loop.time(), limits.timeout_seconds)
    exited = asyncio.ensure_future(proc.wait())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        while not exited.done() and not stopped.done():
            now = loop.time()
            idle_deadline = _deadline(activity.last, limits.idle_timeout_seconds)
            if now >= deadline:
                return True, False
            if now >= idle_deadline:
                return False, True
            wait = min(deadline, idle_deadline) - now
            await asyncio.wait({exited, stopped}, timeout=None if math.isinf(wait) else wait,
                               return_when=asyncio.FIRST_COMPLETED)
        return False, False
    finally:
        exited.cancel()
        stopped.cancel()


def _deadline(start: float, seconds: float) -> float:
    return start + seconds if seconds and seconds > 0 else math.inf


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


async def _stop_group(proc: asyncio.subprocess.Process, grace: float, stop_target: StopTarget | None) -> None:
    """SIGTERM the group (or the stop target), give the leader ``grace`` seconds, then SIGKILL the group."""
    target = stop_target(proc.pid) if stop_target is not None and proc.returncode is None else None
    if target is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signal.SIGTERM)
    elif not _signal_group(proc.pid, signal.SIGTERM):
        return  # nothing of the group is left
    if proc.returncode is None:
        try:
            await asyncio.wait_for(asyncio.shield(proc.wait()), grace)
        except asyncio.TimeoutError:
            pass
    _signal_group(proc.pid, signal.SIGKILL)


async def _reap(proc: asyncio.subprocess.Process) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), REAP_SECONDS)
    except asyncio.TimeoutError:
        logger.warning("agent process %s did not exit after SIGKILL", proc.pid)


async def _drain(proc: asyncio.subprocess.Process, pumps: asyncio.Future) -> None:
    """Read what is left in the pipes; give up if a runaway process still holds them."""
    try:
        await asyncio.wait_for(asyncio.shield(pumps), DRAIN_SECONDS)
        return
    except asyncio.TimeoutError:
        logger.warning("agent output pipes still open after exit of %s; closing them", proc.pid)
    except Exception:  # noqa: BLE001 - a failing line handler must not leak the process
        logger.exception("reading agent output failed")
        return
    pumps.cancel()
    try:
        await pumps
    except BaseException:  # noqa: BLE001 - cancelled on purpose
        pass
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        transport.close()
