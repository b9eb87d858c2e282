"""A 202 means recorded: `kill -9` of the service in the middle of a burst loses no delivery it
answered 202, nor the jobs it queued for it (on SQLite, and on PostgreSQL when configured), whether
one web process or two took them."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp
import pytest
from sqlalchemy import text

from bot.db import make_engine
from bot.webhooks import github_signature
from tests.conftest import FIXTURES
from tests.test_service import ROOT, _wait_healthy, free_port
from tests.test_web_processes import refuses, until, until_each_answers

SECRET = "durability-secret"
INSTALLATION = (FIXTURES / "github-webhooks/installation/created.payload.json").read_bytes()
SENDERS = 16


async def send_until_stopped(http: aiohttp.ClientSession, url: str, sender: int, answered: list[str],
                             stop: asyncio.Event) -> None:
    headers = {"X-GitHub-Event": "installation", "X-Hub-Signature-256": github_signature(SECRET, INSTALLATION),
               "Content-Type": "application/json"}
    number = 0
    while not stop.is_set():
        number += 1
        delivery = f"durable-{sender}-{number}"
        try:
            async with http.post(url, data=INSTALLATION, headers={**headers, "X-GitHub-Delivery": delivery}) as response:
                if response.status == 202:
                    answered.append(delivery)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return  # the service is gone


async def recorded(database_url: str) -> tuple[set[str], set[str]]:
    engine = make_engine(database_url)
    try:
        async with engine.connect() as connection:
            deliveries = (await connection.execute(text("SELECT delivery_id FROM webhook_deliveries"))).scalars()
            jobs = (await connection.execute(text("SELECT delivery_id FROM queued_jobs"))).scalars()
            return set(deliveries), set(jobs)
    finally:
        await engine.dispose()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("web_processes", [1, 2])
async def test_a_killed_service_has_recorded_every_delivery_it_answered_202(tmp_path, database_url, web_processes):
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTRY_")}
    env.update(AGENTRY_WEBHOOK_SECRET=SECRET, AGENTRY_PORT=str(port), AGENTRY_DATA_DIR=str(tmp_path / "data"),
               AGENTRY_DATABASE_URL=database_url, AGENTRY_LOG_LEVEL="warning",
               AGENTRY_WEB_PROCESSES=str(web_processes))
    service = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", cwd=ROOT, env=env)
    answered: list[str] = []
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as http:
            await _wait_healthy(http, f"http://127.0.0.1:{port}")
            await until_each_answers(f"http://127.0.0.1:{port}", tmp_path / "data", web_processes)
            stop = asyncio.Event()
            senders = [asyncio.create_task(send_until_stopped(http, f"http://127.0.0.1:{port}/webhooks/github", sender,
                                                              answered, stop)) for sender in range(SENDERS)]
            while len(answered) < 300:
                await asyncio.sleep(0.01)
            service.send_signal(signal.SIGKILL)  # mid-burst: requests are in flight, some of them mid-commit
            await service.wait()
            stop.set()
            await asyncio.gather(*senders)
    finally:
        if service.returncode is None:
            service.kill()
            await service.wait()
    await until(lambda: refuses(port))  # the other web process stopped with the main one
    deliveries, jobs = await recorded(database_url)
    assert len(answered) >= 300
    assert set(answered) <= deliveries, f"answered 202 but lost: {sorted(set(answered) - deliveries)[:5]}"
    assert set(answered) <= jobs, f"answered 202 but its job was lost: {sorted(set(answered) - jobs)[:5]}"
