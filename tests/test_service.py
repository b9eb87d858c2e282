"""Health, metrics, the command line, and the serve command end to end."""

import asyncio
import hashlib
import hmac
import os
import re
import socket
import sys
from pathlib import Path

import aiohttp

from tests.conftest import FIXTURES, run_jobs

ROOT = Path(__file__).resolve().parent.parent


async def test_health_is_ok_with_a_working_database_and_queue(client):
    response = await client.get("/health")
    assert response.status == 200
    assert await response.json() == {"status": "ok", "checks": {"database": "ok", "queue": "ok", "sandbox": "ok"}}


async def test_health_is_degraded_when_the_queue_is_down(client, deps):
    deps.queue.redis.connection_pool.connection_kwargs["server"].connected = False
    response = await client.get("/health")
    body = await response.json()
    assert response.status == 503 and body["status"] == "degraded"
    assert body["checks"]["database"] == "ok" and body["checks"]["queue"].startswith("error")
    deps.queue.redis.connection_pool.connection_kwargs["server"].connected = True


async def test_metrics_count_requests_deliveries_jobs_and_queue_depth(client, deps):
    from tests.conftest import post_webhook
    import json

    payload = json.loads((FIXTURES / "github-webhooks/installation/created.payload.json").read_text())
    await post_webhook(client, "installation", payload, "m-1")
    await run_jobs(deps)
    text = await (await client.get("/metrics")).text()
    assert 'agentry_http_requests_total{method="POST",route="/webhooks/github",status="202"} 1.0' in text
    assert 'agentry_webhook_deliveries_total{forge="github",outcome="accepted"} 1.0' in text
    assert 'agentry_jobs_total{job="handle_installation_job",outcome="ok"} 1.0' in text
    assert "agentry_queue_depth 0.0" in text
    assert "agentry_http_request_seconds_bucket" in text


def run_cli(*args: str, env: dict | None = None):
    import subprocess

    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_help_lists_the_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("serve", "worker", "migrate"):
        assert command in result.stdout


def test_a_missing_setting_stops_start_up_with_one_line():
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTRY_")}
    result = run_cli("serve", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "AGENTRY_WEBHOOK_SECRET" in lines[0]


def test_migrate_brings_an_empty_sqlite_database_to_the_latest_schema(tmp_path):
    env = {**os.environ, "AGENTRY_DATA_DIR": str(tmp_path), "AGENTRY_WEBHOOK_SECRET": "x"}
    env.pop("AGENTRY_DATABASE_URL", None)
    assert run_cli("migrate", env=env).returncode == 0
    import sqlite3

    tables = {row[0] for row in sqlite3.connect(tmp_path / "agentry.db").execute("select name from sqlite_master")}
    assert {"projects", "protocol_runs", "step_runs", "events", "codex_runs", "run_artifacts", "clarifications",
            "webhook_deliveries", "queued_jobs", "messages", "alembic_version"} <= tables


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_serve_in_dev_mode_accepts_a_signed_webhook_and_its_job_runs(tmp_path):
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTRY_")}
    env.update(AGENTRY_DEV_MODE="1", AGENTRY_PORT=str(port), AGENTRY_DATA_DIR=str(tmp_path))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE
    )
    try:
        secret = await asyncio.wait_for(_read_secret(process.stderr), 30)
        base = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            await _wait_healthy(http, base)
            body = (FIXTURES / "github-webhooks/installation/created.payload.json").read_bytes()
            signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
            headers = {"X-GitHub-Event": "installation", "X-GitHub-Delivery": "e2e-1", "X-Hub-Signature-256": signature,
                       "Content-Type": "application/json"}
            async with http.post(f"{base}/webhooks/github", data=body, headers=headers) as response:
                assert response.status == 202
            await _wait_for_job(http, base)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 15)
    import sqlite3

    events = sqlite3.connect(tmp_path / "agentry.db").execute("select event_type from events").fetchall()
    assert events == [("project_registered",)]


async def _read_secret(stream) -> str:
    while line := await stream.readline():
        match = re.search(rb"webhook secret for this run: (\w+)", line)
        if match:
            return match.group(1).decode()
    raise AssertionError("serve printed no webhook secret")


async def _wait_healthy(http, base: str) -> None:
    for _ in range(100):
        try:
            async with http.get(f"{base}/health") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("service never became healthy")


async def _wait_for_job(http, base: str) -> None:
    done = 'agentry_jobs_total{job="handle_installation_job",outcome="ok"} 1.0'
    for _ in range(100):
        async with http.get(f"{base}/metrics") as response:
            if done in await response.text():
                return
        await asyncio.sleep(0.1)
    raise AssertionError("the webhook's job never ran")


async def test_an_unhandled_error_is_a_json_500_logged_and_counted(aiohttp_client, caplog, deps):
    from aiohttp import web

    from handlers.keys import DEPS
    from handlers.web import measured_with_json_errors

    async def broken(request):
        raise RuntimeError("a bug")

    app = web.Application(middlewares=[measured_with_json_errors])
    app[DEPS] = deps
    app.router.add_get("/broken", broken)
    client = await aiohttp_client(app)
    response = await client.get("/broken")
    assert response.status == 500 and response.content_type == "application/json"
    assert "internal error" in (await response.json())["error"]
    assert any("a bug" in (record.exc_text or str(record.exc_info)) for record in caplog.records)
    assert 'agentry_http_requests_total{method="GET",route="/broken",status="500"} 1.0' in \
        deps.metrics.exposition().decode()
