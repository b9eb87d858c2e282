"""Several web processes on one port: every delivery recorded once and its job run by the main
process's worker, whichever process took it; `/metrics` counts them all; the other web processes
stop when the main one is killed, and one that dies is started again."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from bot.db import make_engine
from bot.webhooks import github_signature
from tests.conftest import FIXTURES
from tests.test_service import ROOT, _wait_healthy, free_port

SECRET = "web-processes-secret"
INSTALLATION = (FIXTURES / "github-webhooks/installation/created.payload.json").read_bytes()
DELIVERIES = 120


@asynccontextmanager
async def service(data_dir: Path, database_url: str, web_processes: int = 2):
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTRY_")}
    env.update(AGENTRY_WEBHOOK_SECRET=SECRET, AGENTRY_PORT=str(port), AGENTRY_DATA_DIR=str(data_dir),
               AGENTRY_DATABASE_URL=database_url, AGENTRY_LOG_LEVEL="warning",
               AGENTRY_WEB_PROCESSES=str(web_processes))
    main = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", cwd=ROOT, env=env)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            await _wait_healthy(http, f"http://127.0.0.1:{port}")
        await until(lambda: len(web_processes_of(main.pid)) == web_processes - 1)
        await until_each_answers(f"http://127.0.0.1:{port}", data_dir, web_processes)
        yield main, f"http://127.0.0.1:{port}"
    finally:
        others = web_processes_of(main.pid)
        if main.returncode is None:
            main.terminate()
            await main.wait()
        await until(lambda: not any(alive(pid) for pid in others))


async def until_each_answers(base: str, data_dir: Path, web_processes: int) -> None:
    """Until every web process has answered a request (each then keeps its metrics in a file of its own)."""
    async def answered() -> int:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            await (await http.get(f"{base}/health")).read()
        return len(list((data_dir / "metrics").glob("counter_*.db")))

    for _ in range(400):
        if web_processes == 1 or await answered() == web_processes:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("a web process never answered")


def refuses(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def web_processes_of(pid: int) -> list[int]:
    """The `python -m bot web` children of a process."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        children += [int(child) for child in task.read_text().split()]
    return [child for child in children if b"\0web\0" in _cmdline(child)]


def alive(pid: int) -> bool:
    return bool(_cmdline(pid))  # a process that ended, even unreaped, has none


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


async def until(condition, seconds: float = 20) -> None:
    for _ in range(int(seconds * 20)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("not within the time allowed")


async def deliver(base: str, number: int) -> int:
    headers = {"X-GitHub-Event": "installation", "X-Hub-Signature-256": github_signature(SECRET, INSTALLATION),
               "Content-Type": "application/json", "X-GitHub-Delivery": f"spread-{number}"}
    connector = aiohttp.TCPConnector(force_close=True)  # a connection each: the kernel spreads them over the processes
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.post(f"{base}/webhooks/github", data=INSTALLATION, headers=headers) as response:
            return response.status


async def job_statuses(database_url: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as connection:
            return list((await connection.execute(text("SELECT status FROM queued_jobs"))).scalars())
    finally:
        await engine.dispose()


def counted(metrics: str, outcome: str) -> float:
    pattern = rf'^agentry_webhook_deliveries_total{{forge="github",outcome="{outcome}"}} (\S+)$'
    return sum(float(value) for value in re.findall(pattern, metrics, re.MULTILINE))


@pytest.mark.timeout(120)
async def test_deliveries_taken_by_any_web_process_are_recorded_once_run_and_counted(tmp_path, database_url):
    data = tmp_path / "data"
    async with service(data, database_url) as (_main, base):
        statuses = [await status for status in asyncio.as_completed([deliver(base, number) for number in range(DELIVERIES)])]
        again = await asyncio.gather(*(deliver(base, number) for number in range(0, DELIVERIES, 10)))
        assert sorted(statuses) == [202] * DELIVERIES and again == [200] * (DELIVERIES // 10)

        async def all_done() -> bool:
            return (await job_statuses(database_url)).count("done") == DELIVERIES

        for _ in range(400):
            if await all_done():
                break
            await asyncio.sleep(0.05)
        assert await all_done(), "jobs recorded by a web process were not run by the main one's worker"
        assert len(list((data / "metrics").glob("counter_*.db"))) == 2, "one web process took every delivery"
        async with aiohttp.ClientSession() as http:
            metrics = [await (await http.get(f"{base}/metrics")).text() for _ in range(4)]
        assert {counted(text, "accepted") for text in metrics} == {DELIVERIES}
        assert {counted(text, "duplicate") for text in metrics} == {DELIVERIES // 10}


@pytest.mark.timeout(60)
async def test_the_other_web_processes_stop_when_the_main_one_is_killed(tmp_path, database_url):
    async with service(tmp_path / "data", database_url, web_processes=3) as (main, base):
        others = web_processes_of(main.pid)
        main.send_signal(signal.SIGKILL)
        await main.wait()
        await until(lambda: not any(alive(pid) for pid in others))
        with pytest.raises(aiohttp.ClientConnectionError):
            async with aiohttp.ClientSession() as http:
                await http.get(f"{base}/health")


@pytest.mark.timeout(60)
async def test_a_web_process_that_dies_is_started_again(tmp_path, database_url):
    async with service(tmp_path / "data", database_url) as (main, base):
        [first] = web_processes_of(main.pid)
        os.kill(first, signal.SIGKILL)
        await until(lambda: len(web_processes_of(main.pid)) == 1 and web_processes_of(main.pid) != [first])
        assert await deliver(base, 1) == 202


@pytest.mark.timeout(60)
async def test_a_second_service_on_the_port_is_refused(tmp_path, database_url):
    async with service(tmp_path / "data", database_url) as (_main, base):
        env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTRY_")}
        env.update(AGENTRY_WEBHOOK_SECRET=SECRET, AGENTRY_PORT=base.rsplit(":", 1)[1],
                   AGENTRY_DATA_DIR=str(tmp_path / "other"), AGENTRY_LOG_LEVEL="warning")
        second = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", cwd=ROOT, env=env,
                                                     stderr=asyncio.subprocess.PIPE)
        _, stderr = await asyncio.wait_for(second.communicate(), 30)
        assert second.returncode == 2 and b"cannot listen on" in stderr
