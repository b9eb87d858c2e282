"""Faults with real processes: a Redis that stops under a web service and a worker, each test
bounded in time and cleaning up what it started."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import shutil
import signal
import socket
import sqlite3
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import FIXTURES

ROOT = Path(__file__).resolve().parent.parent
SECRET = "outage-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def redis_server() -> str:
    found = shutil.which("redis-server")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server must be installed in CI")
        pytest.skip("redis-server is not installed")
    return found


@contextlib.asynccontextmanager
async def process(*argv: str, env: dict | None = None):
    started = await asyncio.create_subprocess_exec(*argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL, start_new_session=True)
    try:
        yield started
    finally:
        if started.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(started.pid, signal.SIGKILL)
            await started.wait()


def redis_argv(port: int) -> list[str]:
    return [redis_server(), "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]


async def until(check, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if result := await check():
                return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} did not happen within {seconds} s")


async def test_a_worker_rides_out_a_redis_outage_and_runs_what_arrives_after_it(tmp_path):
    redis_port, web_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTRY_")}
    env.update(AGENTRY_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", AGENTRY_PORT=str(web_port),
               AGENTRY_DATA_DIR=str(tmp_path), AGENTRY_WEBHOOK_SECRET=SECRET)
    base = f"http://127.0.0.1:{web_port}"
    async with aiohttp.ClientSession() as http:
        async def health() -> int:
            async with http.get(f"{base}/health") as response:
                return response.status

        async with process(*redis_argv(redis_port)) as redis, \
                process(sys.executable, "-m", "bot", "serve", env=env), \
                process(sys.executable, "-m", "bot", "worker", env=env) as worker:
            await until(lambda: _is(health(), 200), 60, "the web service becoming healthy")
            redis.send_signal(signal.SIGKILL)
            await redis.wait()
            await until(lambda: _is(health(), 503), 15, "/health reporting the outage")
            await asyncio.sleep(3)
            async with process(*redis_argv(redis_port)):
                await until(lambda: _is(health(), 200), 30, "/health recovering")
                assert worker.returncode is None, "the worker exited during the outage"
                body = (FIXTURES / "github-webhooks/installation/created.payload.json").read_bytes()
                headers = {"X-GitHub-Event": "installation", "X-GitHub-Delivery": "after-outage",
                           "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest(),
                           "Content-Type": "application/json"}
                async with http.post(f"{base}/webhooks/github", data=body, headers=headers) as response:
                    assert response.status == 202
                await until(lambda: _registered(tmp_path / "agentry.db"), 30, "the worker running the new job")
                assert worker.returncode is None


async def _is(status, expected: int) -> bool:
    return await status == expected


async def _registered(database: Path) -> bool:
    rows = sqlite3.connect(database).execute("select event_type from events").fetchall()
    return ("project_registered",) in rows
