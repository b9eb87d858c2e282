"""The states a dashboard could reach that the state machine did not allow, one test each: driven
over the REST API with the `command` engine on a real git remote, the jobs run by a real worker."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import col, select

from bot.models import Clarification, CodexRun, ProtocolRun, QueuedJob, StepRun
from bot.steps.outcome import Review
from bot.steps.quality import settle_quality
from tests.api_support import AUTH, API_TOKEN, Api, add, project, protocol, steps
from tests.conftest import run_jobs
from tests.flow_support import agent_script, flow_deps

GREETING = "Create GREETING.md saying hello"
LINK = "Mention GREETING.md in the README"  # a step given beside a plan that writes GREETING.md itself


@pytest.fixture
async def api(aiohttp_client, settings_env, github, tmp_path):
    from handlers.web import make_app

    deps = await flow_deps({**settings_env, "AGENTRY_API_TOKEN": API_TOKEN}, github, agent_script(tmp_path))
    yield Api(await aiohttp_client(make_app(deps)), deps)
    await deps.close()


async def new_protocol(api: Api, remote, **fields) -> dict:
    row = await project(api.deps, git_url=str(remote))
    response = await api.post(f"/projects/{row.id}/protocols", {"protocol_name": "greet", **fields})
    assert response.status == 200, await response.text()
    return await response.json()


async def add_step(api: Api, protocol_id: int, index: int, prompt: str = GREETING) -> dict:
    body = {"step_index": index, "step_name": f"given {index}", "step_type": "code", "prompt": prompt,
            "qa_policy": "skip"}
    response = await api.post(f"/protocols/{protocol_id}/steps", body)
    assert response.status == 200, await response.text()
    return await response.json()


async def state(api: Api, protocol_id: int) -> tuple[str, list[tuple[int, str, str]]]:
    async with api.deps.sessions() as session:
        row = await session.get(ProtocolRun, protocol_id)
        rows = (await session.exec(select(StepRun).where(StepRun.protocol_run_id == protocol_id)
                                   .order_by(col(StepRun.step_index)))).all()
    return row.status, [(step.step_index, step.step_name, step.status) for step in rows]


async def failed_jobs(api: Api) -> list[tuple[str, str | None]]:
    async with api.deps.sessions() as session:
        rows = (await session.exec(select(QueuedJob).where(QueuedJob.status != "done"))).all()
    return [(row.function, row.error) for row in rows]


@pytest.mark.timeout(120)
async def test_starting_a_protocol_with_api_created_steps_runs_them_without_a_plan(api, remote):
    created = await new_protocol(api, remote)
    await add_step(api, created["id"], 0)
    response = await api.post(f"/protocols/{created['id']}/actions/start")
    body = await response.json()
    assert response.status == 200 and body["message"] == "Protocol started", body
    assert body["job"]["job_type"] == "execute_step_job"
    await run_jobs(api.deps)
    assert await state(api, created["id"]) == ("completed", [(0, "given 0", "completed")])
    assert await failed_jobs(api) == []


@pytest.mark.timeout(120)
async def test_a_plan_for_a_protocol_that_has_steps_adds_its_steps_after_them(api, remote):
    created = await new_protocol(api, remote)
    start = await api.post(f"/protocols/{created['id']}/actions/start")
    assert (await start.json())["job"]["job_type"] == "plan_protocol_job"
    await add_step(api, created["id"], 0, LINK)  # while the plan is being made
    await run_jobs(api.deps)
    status, rows = await state(api, created["id"])
    assert [(index, name) for index, name, _ in rows] == [(0, "given 0"), (1, "Write greeting"), (2, "Link it")]
    assert status == "completed" and {row[2] for row in rows} == {"completed"}
    assert await failed_jobs(api) == []


@pytest.mark.timeout(120)
async def test_a_protocol_blocked_by_a_failed_plan_with_pending_steps_can_be_replanned(api, remote):
    created = await new_protocol(api, remote, description="FAIL THE FIRST PLAN")
    await api.post(f"/protocols/{created['id']}/actions/start")
    await add_step(api, created["id"], 0, LINK)
    await run_jobs(api.deps)
    status, rows = await state(api, created["id"])
    assert status == "blocked" and rows == [(0, "given 0", "pending")]
    retry = await api.post(f"/protocols/{created['id']}/actions/retry_latest")
    body = await retry.json()
    assert retry.status == 200 and body["job"]["job_type"] == "plan_protocol_job", body
    await run_jobs(api.deps)
    status, rows = await state(api, created["id"])
    assert status == "completed" and [name for _, name, _ in rows] == ["given 0", "Write greeting", "Link it"]


async def test_a_qa_pass_on_a_blocked_protocol_moves_it_on(api, remote):
    row = await project(api.deps, git_url=str(remote))
    blocked = await protocol(api.deps, row, status="blocked")
    _, waiting = await steps(api.deps, blocked, "completed", "needs_qa")
    await settle_quality(api.deps, waiting.id, Review("PASS", "does what it says"))
    assert await state(api, blocked.id) == ("completed", [(0, "step 1", "completed"), (1, "step 2", "completed")])


async def test_a_blocking_clarification_stops_a_planned_protocol_from_starting(api, remote):
    row = await project(api.deps, git_url=str(remote))
    planned = await protocol(api.deps, row, status="planned", kind="run")
    await steps(api.deps, planned, "pending")
    await add(api.deps, Clarification(project_id=row.id, protocol_run_id=planned.id, key="db",
                                      question="Which database?", blocking=True))
    start = await api.post(f"/protocols/{planned.id}/actions/start")
    body = await start.json()
    assert start.status == 200 and body["job"] is None, body
    assert await state(api, planned.id) == ("paused", [(0, "step 1", "pending")])
    answer = await api.post(f"/protocols/{planned.id}/clarifications/db", {"answer": "PostgreSQL"})
    assert answer.status == 200
    assert (await state(api, planned.id))[0] == "running"
    async with api.deps.sessions() as session:
        queued = (await session.exec(select(QueuedJob.function).where(QueuedJob.status == "queued"))).all()
    assert "execute_step_job" in queued


@pytest.mark.timeout(60)
async def test_runs_waiting_for_an_agent_slot_are_queued_until_they_hold_one(api, remote):
    created = await new_protocol(api, remote)
    await add_step(api, created["id"], 0)
    slots = api.deps.agent_slots
    held = 0
    while not slots.locked():
        await slots.acquire()
        held += 1
    await api.post(f"/protocols/{created['id']}/actions/start")
    worker = asyncio.create_task(run_jobs(api.deps))
    try:
        run = await _first_run(api)
        await asyncio.sleep(0.3)
        assert (await _reload(api, run)).status == "queued"
        listed = await (await api.get(f"/protocols/{created['id']}/runs", headers=AUTH)).json()
        assert [item["status"] for item in listed] == ["queued"]
    finally:
        for _ in range(held):
            slots.release()
    await asyncio.wait_for(worker, 60)
    finished = await _reload(api, run)
    assert finished.status == "succeeded" and finished.started_at >= run.created_at


async def _first_run(api: Api) -> CodexRun:
    for _ in range(400):
        async with api.deps.sessions() as session:
            run = (await session.exec(select(CodexRun))).first()
        if run is not None:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError("no run was started")


async def _reload(api: Api, run: CodexRun) -> CodexRun:
    async with api.deps.sessions() as session:
        return await session.get(CodexRun, run.run_id)
