"""Several processes serving HTTP on one port together, so that intake has every core.

`serve` is the main web process: it runs the embedded worker and the maintenance job (without
Redis) and starts the other web processes (`python -m bot web`), each listening on the same address
(SO_REUSEPORT: the kernel spreads the connections over them). They serve the same application, with
no worker. Each is joined to the main process by a socket pair: over it a web process relays queue
wake-ups when the queue is the main process's embedded one, and when the main process goes, even
killed, its end closes and the web process stops. One that dies is started again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from bot.queue import JobQueue, wake_relayed

log = logging.getLogger("agentry.web")

BACKLOG = 1024
RESTART_DELAY_SECONDS = 1.0
STOP_SECONDS = 30.0  # a web process finishing its requests and writes before it is killed


def listening_socket(host: str, port: int, *, shared: bool) -> socket.socket:
    """The listening socket of a web process; `shared` lets the other web processes bind it too."""
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    return socket.create_server((host, port), family=family, backlog=BACKLOG, reuse_port=shared)


def metrics_directory(data_dir: Path) -> Path:
    return data_dir / "metrics"


def fresh_metrics_directory(data_dir: Path) -> Path:
    """Where the web processes keep their metrics, emptied of an earlier run's."""
    directory = metrics_directory(data_dir)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(mode=0o700, parents=True)
    return directory


class WebProcesses:
    """The web processes beside the main one, kept running while it runs."""

    def __init__(self, count: int, environment: Mapping[str, str], queue: JobQueue | None) -> None:
        self._count = count
        self._environment = dict(environment)
        self._queue = queue  # the embedded queue they wake, or None when they reach Redis themselves
        self._processes: set[asyncio.subprocess.Process] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._keep(number), name=f"web-process-{number}")
                       for number in range(1, self._count)]

    async def stop(self) -> None:
        self._stopping = True
        for process in self._processes:
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(process.wait() for process in self._processes)), STOP_SECONDS)
        except TimeoutError:
            for process in self._processes:
                process.kill()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _keep(self, number: int) -> None:
        while not self._stopping:
            code = await self._run_one()
            if self._stopping:
                return
            log.warning("web process %d exited with %s; starting it again", number, code)
            await asyncio.sleep(RESTART_DELAY_SECONDS)

    async def _run_one(self) -> int:
        ours, theirs = socket.socketpair()
        try:
            with theirs:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "bot", "web", "--channel", str(theirs.fileno()),
                    pass_fds=[theirs.fileno()], env=self._environment)
        except BaseException:
            ours.close()
            raise
        self._processes.add(process)
        reader, writer = await asyncio.open_unix_connection(sock=ours)
        relay = asyncio.create_task(wake_relayed(self._queue, reader)) if self._queue else None
        try:
            return await process.wait()
        finally:
            self._processes.discard(process)
            if relay is not None:
                relay.cancel()
            writer.close()


async def stop_when_main_process_goes(channel: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """In a web process: a graceful stop (as on SIGTERM) once the main process's end of the channel
    closes. `writer` is the channel's other half, held here so that it is not closed with the last
    reference to it."""
    try:
        while await channel.read(4096):
            pass
    finally:
        writer.close()
    log.info("the main web process is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)
