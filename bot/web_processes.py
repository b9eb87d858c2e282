"""Several processes serving HTTP on one port together, so that intake has every core.

`serve` is the main web process: it runs the embedded worker and the maintenance job (without
Redis) and starts the other web processes (`python -m bot web`), each listening on the same
address with SO_REUSEPORT, so that the kernel spreads the connections over them evenly (a socket
they all accept on would hand a burst of connections to whichever woke first). A second `serve` on
the port is still refused: the main process first binds it alone. They serve the same application,
with no worker. Each is joined to the main process by a socket pair:
over it a web process relays queue wake-ups when the queue is the main process's embedded one, and
when the main process goes, even killed, its end closes and the web process stops. One that dies
is started again.
"""

from __future__ import annotations

import asyncio
import contextlib
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
RESTART_DELAYS_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0)  # after one death in a row, two, … (then the last)
STOP_SECONDS = 30.0  # a web process finishing its requests and writes before it is killed


def listening_sockets(host: str, port: int, *, shared: bool) -> list[socket.socket]:
    """A listening socket for each address of `host` (`localhost`: IPv4 and IPv6), on one port;
    `shared`: with SO_REUSEPORT, for the web processes to bind together."""
    sockets: list[socket.socket] = []
    try:
        for family, *_, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            port = sockets[0].getsockname()[1] if sockets else port  # port 0: the first one's, for all
            if any(bound.family == family and bound.getsockname()[0] == address[0] for bound in sockets):
                continue
            sockets.append(socket.create_server((address[0], port), family=family, backlog=BACKLOG,
                                                reuse_port=shared))
    except BaseException:
        for bound in sockets:
            bound.close()
        raise
    return sockets


def claim_port(host: str, port: int) -> int:
    """The port (port 0: a free one), once no other program listens on it: bound alone first, as
    with SO_REUSEPORT a second service would otherwise quietly share it."""
    probes = listening_sockets(host, port, shared=False)
    claimed = probes[0].getsockname()[1]
    for probe in probes:
        probe.close()
    return claimed


def inherited(descriptor: int) -> socket.socket:
    """A socket passed by the main web process, kept from this process's own children."""
    passed = socket.socket(fileno=descriptor)
    passed.set_inheritable(False)
    return passed


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

    def stopping(self) -> None:
        """The main process is shutting down: none is started again, and each is asked to stop."""
        self._stopping = True
        self._signal(signal.SIGTERM)

    async def stop(self) -> None:
        self.stopping()
        try:
            await asyncio.wait_for(asyncio.gather(*(process.wait() for process in self._processes)), STOP_SECONDS)
        except TimeoutError:
            self._signal(signal.SIGKILL)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _signal(self, number: int) -> None:
        for process in self._processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):  # it ended before it was reaped
                    process.send_signal(number)

    async def _keep(self, number: int) -> None:
        deaths = 0
        while not self._stopping:
            started = asyncio.get_running_loop().time()
            code = await self._run_one()
            if self._stopping:
                return
            lived = asyncio.get_running_loop().time() - started
            deaths = 1 if lived > RESTART_DELAYS_SECONDS[-1] else deaths + 1
            delay = RESTART_DELAYS_SECONDS[min(deaths, len(RESTART_DELAYS_SECONDS)) - 1]
            log.warning("web process %d exited with %s; starting it again in %.0f s", number, code, delay)
            await asyncio.sleep(delay)

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
    except OSError:  # a relayed wake-up written after the main process went breaks the channel first
        pass
    finally:
        writer.close()
    log.info("the main web process is gone; stopping")
    os.kill(os.getpid(), signal.SIGTERM)
