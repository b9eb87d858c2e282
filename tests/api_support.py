"""Fixtures and helpers the REST API tests share (this module holds no test)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from bot.config import Settings
from bot.deps import open_deps
from bot.models import CodexRun, Project, ProtocolRun, RunArtifact, StepRun

API_TOKEN = "test-api-token-0123456789"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
def api_settings(settings_env) -> Settings:
    return Settings.from_env({**settings_env, "AGENTRY_API_TOKEN": API_TOKEN})


@pytest.fixture
async def api_deps(api_settings):
    deps = await open_deps(api_settings)
    yield deps
    await deps.close()


@dataclass
class Api:
    """A client that sends the bearer token unless told otherwise."""

    client: Any
    deps: Any

    def _headers(self, headers: dict | None, auth: bool) -> dict:
        return {**(AUTH if auth else {}), **(headers or {})}

    async def get(self, path: str, *, headers: dict | None = None, auth: bool = True, **kwargs):
        return await self.client.get(path, headers=self._headers(headers, auth), **kwargs)

    async def post(self, path: str, json: Any = None, *, headers: dict | None = None, auth: bool = True, **kwargs):
        if json is not None:
            kwargs["json"] = json
        return await self.client.post(path, headers=self._headers(headers, auth), **kwargs)


@pytest.fixture
async def api(aiohttp_client, api_deps) -> Api:
    from handlers.web import make_app

    return Api(await aiohttp_client(make_app(api_deps)), api_deps)


async def add(deps, *rows):
    async with deps.sessions() as session:
        for row in rows:
            session.add(row)
        await session.commit()
    return rows[0] if len(rows) == 1 else rows


async def project(deps, **fields) -> Project:
    return await add(deps, Project(**{"name": "demo", "git_url": "/tmp/demo.git", **fields}))


async def protocol(deps, project_row: Project, **fields) -> ProtocolRun:
    row = ProtocolRun(**{"project_id": project_row.id, "protocol_name": "demo", "branch": "agent/demo", **fields})
    return await add(deps, row)


async def steps(deps, protocol_row: ProtocolRun, *statuses: str) -> list[StepRun]:
    rows = [StepRun(protocol_run_id=protocol_row.id, step_index=index, step_name=f"step {index + 1}", status=status,
                    prompt="do it") for index, status in enumerate(statuses)]
    async with deps.sessions() as session:
        session.add_all(rows)
        await session.commit()
    return rows


async def run(deps, **fields) -> CodexRun:
    return await add(deps, CodexRun(**{"job_type": "execute_step_job", "status": "running", **fields}))


async def artifact(deps, run_row: CodexRun, path: str, **fields) -> RunArtifact:
    return await add(deps, RunArtifact(**{"run_id": run_row.run_id, "name": "report.md", "path": path, **fields}))


async def reload(deps, model, key):
    async with deps.sessions() as session:
        return await session.get(model, key)
