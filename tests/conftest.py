"""Shared fixtures: a fresh migrated database per test (SQLite, or PostgreSQL when
AGENTRY_TEST_DATABASE_URL names a server), the service's dependencies, and signed webhooks."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bot import db
from bot.config import Settings
from bot.deps import open_deps
from bot.queue import JobQueue, connect_redis
from bot.webhooks import github_signature

pytest_plugins = ["tests.flow_support", "tests.api_support", "tests.engine_support"]

FIXTURES = Path(__file__).parent / "fixtures"
WEBHOOK_SECRET = "test-webhook-secret"
POSTGRES_URL = os.environ.get("AGENTRY_TEST_DATABASE_URL", "")
REDIS_URL = os.environ.get("AGENTRY_TEST_REDIS_URL", "")


def pytest_report_header(config):
    return f"agentry database: {'postgresql' if POSTGRES_URL else 'sqlite'}; redis: {REDIS_URL or 'none (embedded only)'}"


def load_payload(event: str, name: str) -> dict:
    return json.loads((FIXTURES / "github-webhooks" / event / name).read_text())


@pytest.fixture(scope="session")
def postgres_template():
    """Migrates one template database; each test copies it (CREATE DATABASE … TEMPLATE is fast)."""
    if not POSTGRES_URL:
        yield None
        return
    name = f"agentry_tpl_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    db.upgrade(_database_url(name))
    yield name
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(sql: str) -> None:
    import asyncpg

    url = make_url(POSTGRES_URL)
    connection = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, password=url.password, database=url.database or "postgres"
    )
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _database_url(name: str) -> str:
    return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
async def database_url(tmp_path, postgres_template):
    if postgres_template is None:
        url = f"sqlite+aiosqlite:///{tmp_path / 'agentry.db'}"
        await db.upgrade_in_thread(url)
        yield url
        return
    name = f"agentry_t_{uuid.uuid4().hex[:10]}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    yield _database_url(name)
    await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings_env(tmp_path, database_url) -> dict:
    return {
        **process_env(),
        "AGENTRY_DATA_DIR": str(tmp_path / "data"),
        "AGENTRY_DATABASE_URL": database_url,
        "AGENTRY_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "AGENTRY_GITHUB_APP_SLUG": "agentry-test",
        "AGENTRY_ALLOWED_PATHS": str(tmp_path),
        # The test agents keep their call log and signals there (the only place outside the worktree).
        "AGENTRY_SANDBOX_WRITE_PATHS": str(agent_state(tmp_path)),
    }


def process_env() -> dict[str, str]:
    """The test process's variables (PATH, HOME …) for the agents and git, without agentry's own settings."""
    return {key: value for key, value in os.environ.items() if not key.startswith("AGENTRY_")}


def agent_state(tmp_path: Path) -> Path:
    state = tmp_path / "agent-state"
    state.mkdir(exist_ok=True)
    return state


@pytest.fixture
def settings(settings_env) -> Settings:
    return Settings.from_env(settings_env)


@pytest.fixture
async def deps(settings):
    deps = await open_deps(settings)
    yield deps
    await deps.close()


async def _redis_queue() -> JobQueue:
    if not REDIS_URL:
        if os.environ.get("CI"):
            pytest.fail("AGENTRY_TEST_REDIS_URL must be set in CI")
        pytest.skip("no Redis server (set AGENTRY_TEST_REDIS_URL)")
    redis = await connect_redis(REDIS_URL)
    await redis.flushdb()
    return JobQueue(redis)


@pytest.fixture
async def redis_deps(settings):
    """Dependencies on a real Redis server (required in CI, skipped on a machine without one)."""
    deps = await open_deps(settings, queue=await _redis_queue())
    yield deps
    await deps.queue.redis.flushdb()
    await deps.close()


@pytest.fixture(params=["embedded", "redis"])
async def any_deps(request, settings):
    """The same test on the embedded in-memory queue and on a real Redis server."""
    queue = await _redis_queue() if request.param == "redis" else None
    deps = await open_deps(settings, queue=queue)
    yield deps
    if queue is not None:
        await queue.redis.flushdb()
    await deps.close()


@pytest.fixture
async def client(aiohttp_client, deps):
    from handlers.web import make_app

    return await aiohttp_client(make_app(deps))


def signed_headers(body: bytes, event: str, delivery_id: str, secret: str = WEBHOOK_SECRET) -> dict:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature-256": github_signature(secret, body),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/test",
    }


async def post_webhook(client, event: str, payload: dict, delivery_id: str | None = None):
    body = json.dumps(payload).encode()
    headers = signed_headers(body, event, delivery_id or uuid.uuid4().hex)
    return await client.post("/webhooks/github", data=body, headers=headers)


async def run_jobs(deps) -> None:
    """Runs every queued job (and the jobs they queue) to completion, then returns."""
    from jobs.worker import embedded_worker

    worker = embedded_worker(deps, burst=True)
    await worker.main()
