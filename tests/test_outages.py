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
async def process(*argv: str, env: dict | None = None, log: Path | None = None):
    with open(log or os.devnull, "wb") as stderr:  # a log, so that a failure can show why a process died
        started = await asyncio.create_subprocess_exec(*argv, cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL,
                                                       stderr=stderr, start_new_session=True)
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
                process(sys.executable, "-m", "bot", "worker", env=env, log=tmp_path / "worker.log") as worker:
            await until(lambda: _is(health(), 200), 60, "the web service becoming healthy")
            redis.send_signal(signal.SIGKILL)
            await redis.wait()
            await until(lambda: _is(health(), 503), 15, "/health reporting the outage")
            await asyncio.sleep(3)
            async with process(*redis_argv(redis_port)):
                await until(lambda: _is(health(), 200), 30, "/health recovering")
                assert worker.returncode is None, (
                    f"the worker exited during the outage:\n{(tmp_path / 'worker.log').read_text()[-3000:]}")
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


TAKEOVER_AGENT = r'''
import json, os, pathlib, sys, time
state = pathlib.Path(STATE)
kind = os.environ["AGENTRY_STEP_KIND"]
sys.stdin.read()
if kind == "plan":
    print(json.dumps({"summary": "One step", "steps": [{"name": "Write", "prompt": "Write hello.txt", "qa": "skip"}]}))
    sys.exit(0)
attempt = len(list(state.glob("started-*"))) + 1
(state / f"started-{attempt}").write_text(str(time.time()))
if attempt == 1:
    time.sleep(120)  # the worker running this attempt is killed meanwhile
pathlib.Path("hello.txt").write_text("hello\n")
print("wrote hello.txt")
'''


async def test_a_step_on_a_killed_worker_is_taken_over_by_another_within_seconds(tmp_path, remote):
    state = tmp_path / "agent-state"
    state.mkdir()
    agent = tmp_path / "agent.py"
    agent.write_text(TAKEOVER_AGENT.replace("STATE", repr(str(state))))
    redis_port, web_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTRY_")}
    env.update(AGENTRY_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", AGENTRY_PORT=str(web_port),
               AGENTRY_DATA_DIR=str(tmp_path / "data"), AGENTRY_WEBHOOK_SECRET=SECRET,
               AGENTRY_DEFAULT_ENGINE="command", AGENTRY_ENGINE_COMMAND=f"{sys.executable} {agent}",
               AGENTRY_ALLOWED_PATHS=str(tmp_path), AGENTRY_SANDBOX_WRITE_PATHS=str(state),
               AGENTRY_SANDBOX_READ_PATHS=str(agent))
    base = f"http://127.0.0.1:{web_port}"
    database = tmp_path / "data" / "agentry.db"
    async with aiohttp.ClientSession() as http, process(*redis_argv(redis_port)), \
            process(sys.executable, "-m", "bot", "serve", env=env):
        async def healthy() -> bool:
            async with http.get(f"{base}/health") as response:
                return response.status == 200

        await until(healthy, 60, "the web service becoming healthy")
        async with process(sys.executable, "-m", "bot", "worker", env=env) as first, \
                process(sys.executable, "-m", "bot", "worker", env=env) as second:
            workers = {first.pid: first, second.pid: second}
            protocol_id = await _start_a_protocol(http, base, remote)
            await until(lambda: _exists(state / "started-1"), 90, "the first attempt starting")
            holder = await until(lambda: _execute_holder(database), 10, "the running job's worker")
            killed_at = time.monotonic()
            workers[holder].send_signal(signal.SIGKILL)
            await until(lambda: _exists(state / "started-2"), 30, "another worker taking the step over")
            taken_over_after = time.monotonic() - killed_at
            status = await until(lambda: _protocol_status(http, base, protocol_id, "completed"), 60,
                                 "the protocol completing")
            survivor = next(process for pid, process in workers.items() if pid != holder)
            assert survivor.returncode is None
    assert status == "completed" and taken_over_after < 15, taken_over_after
    assert sorted(path.name for path in state.glob("started-*")) == ["started-1", "started-2"]
    events = [row[0] for row in sqlite3.connect(database).execute("select message from events").fetchall()]
    assert any("the worker running it stopped; it runs again as a new attempt" in message for message in events)


async def _start_a_protocol(http, base: str, remote: Path) -> int:
    async with http.post(f"{base}/projects", json={"name": "demo", "git_url": str(remote)}) as response:
        assert response.status == 200, await response.text()
        project = await response.json()
    async with http.post(f"{base}/projects/{project['id']}/protocols",
                         json={"protocol_name": "takeover", "base_branch": "main"}) as response:
        assert response.status == 200, await response.text()
        protocol = await response.json()
    async with http.post(f"{base}/protocols/{protocol['id']}/actions/start") as response:
        assert response.status == 200, await response.text()
    return protocol["id"]


async def _exists(path: Path) -> bool:
    return path.exists()


async def _execute_holder(database: Path) -> int | None:
    row = sqlite3.connect(database).execute(
        "select worker_id from queued_jobs where function = 'execute_step_job' and status = 'running'").fetchone()
    return int(row[0].rsplit(":", 1)[1]) if row and row[0] else None


async def _protocol_status(http, base: str, protocol_id: int, wanted: str) -> str | None:
    async with http.get(f"{base}/protocols/{protocol_id}") as response:
        status = (await response.json())["status"]
    return status if status == wanted else None
