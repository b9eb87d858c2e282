"""REST API latency with 10,000 protocol runs, 100,000 events and 30,000 runs.

Seeds a fresh database, serves the application in this process on 127.0.0.1, and prints p50/p99
latency of the dashboard's hot reads (sequential requests over a keep-alive connection).

    python bench/api.py                                            # SQLite in a temporary directory
    python bench/api.py --database postgresql+asyncpg://user@host/db   # an empty PostgreSQL database
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot import db  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.deps import open_deps  # noqa: E402
from bot.models import CodexRun, Event, Project, ProtocolRun, StepRun, utcnow  # noqa: E402
from handlers.web import make_app  # noqa: E402

TOKEN = "bench-token"
PROTOCOLS, STEPS_PER_PROTOCOL, EVENTS, RUNS = 10_000, 5, 100_000, 30_000


async def bulk(deps, model, rows: list[dict], batch: int = 5000) -> None:
    async with deps.sessions() as session:
        for start in range(0, len(rows), batch):
            await session.execute(insert(model), rows[start:start + batch])
        await session.commit()


async def seed(deps) -> None:
    now = utcnow()
    base = {"created_at": now, "updated_at": now}
    await bulk(deps, Project, [{"id": index, "name": f"p{index}", "base_branch": "main", "active": True, "secrets": {},
                                "default_models": {}, "status": "ready", **base} for index in range(1, 11)])
    await bulk(deps, ProtocolRun, [
        {"id": index, "project_id": index % 10 + 1, "protocol_name": f"p{index}", "status": "running", "kind": "run",
         "base_branch": "main", "policy": {}, "runtime_state": {}, "tokens_used": 0, "check_run_completed": False,
         **base} for index in range(1, PROTOCOLS + 1)])
    await bulk(deps, StepRun, [
        {"protocol_run_id": protocol, "step_index": index, "step_name": f"s{index}", "step_type": "code",
         "status": "pending", "retries": 0, "qa_policy": "full", "depends_on": [], "policy": {}, "runtime_state": {},
         "tokens_used": 0, "prompt": "do the thing " * 20, **base}
        for protocol in range(1, PROTOCOLS + 1) for index in range(STEPS_PER_PROTOCOL)])
    await bulk(deps, Event, [
        {"project_id": index % 10 + 1, "protocol_run_id": index % PROTOCOLS + 1, "event_type": "note",
         "message": f"event {index}", "meta": {"n": index}, "created_at": now} for index in range(EVENTS)])
    await bulk(deps, CodexRun, [
        {"run_id": f"run{index:07d}", "job_type": "execute_step_job", "run_kind": "exec", "status": "succeeded",
         "project_id": index % 10 + 1, "protocol_run_id": index % PROTOCOLS + 1, "attempt": 1, "queue": "default",
         "params": {}, "result": {"ok": True}, "cost_tokens": 100, "created_at": now - timedelta(seconds=index)}
        for index in range(RUNS)])


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


async def measure(session: aiohttp.ClientSession, base: str, paths: list[str]) -> list[float]:
    samples = []
    for path in paths:
        started = time.perf_counter()
        async with session.get(base + path) as response:
            await response.read()
            assert response.status == 200, (path, response.status)
        samples.append(time.perf_counter() - started)
    return samples


async def main(database: str | None, requests: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        url = database or f"sqlite+aiosqlite:///{Path(scratch) / 'bench.db'}"
        await db.upgrade_in_thread(url)
        settings = Settings.from_env({"AGENTRY_DATA_DIR": scratch, "AGENTRY_DATABASE_URL": url,
                                      "AGENTRY_WEBHOOK_SECRET": "x", "AGENTRY_API_TOKEN": TOKEN})
        deps = await open_deps(settings)
        started = time.perf_counter()
        await seed(deps)
        print(f"seeded {PROTOCOLS} protocols, {PROTOCOLS * STEPS_PER_PROTOCOL} steps, {EVENTS} events, {RUNS} runs "
              f"in {time.perf_counter() - started:.1f} s ({url.split(':')[0]})")
        server = TestServer(make_app(deps), host="127.0.0.1")
        await server.start_server()
        base = str(server.make_url("")).rstrip("/")
        pick = random.Random(1)
        cases = {
            "GET /protocols/{id}/steps": [f"/protocols/{pick.randint(1, PROTOCOLS)}/steps" for _ in range(requests)],
            "GET /events?limit=50": ["/events?limit=50"] * requests,
            "GET /events?project_id=&limit=50": [f"/events?project_id={pick.randint(1, 10)}&limit=50"
                                                 for _ in range(requests)],
            "GET /codex/runs": ["/codex/runs"] * requests,
            "GET /codex/runs?protocol_run_id=": [f"/codex/runs?protocol_run_id={pick.randint(1, PROTOCOLS)}"
                                                 for _ in range(requests)],
            "GET /projects/{id}/protocols": [f"/projects/{pick.randint(1, 10)}/protocols" for _ in range(requests)],
        }
        try:
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
                for name, paths in cases.items():
                    await measure(session, base, paths[:20])  # warm up
                    p50, p99 = percentiles(await measure(session, base, paths))
                    print(f"{name:36s} p50 {p50:6.2f} ms   p99 {p99:6.2f} ms   ({len(paths)} requests)")
        finally:
            await server.close()
            await deps.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", help="an empty database's SQLAlchemy URL (default: SQLite in a temp dir)")
    parser.add_argument("--requests", type=int, default=300)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.database, arguments.requests))
