"""Pagination through large tables: 10,000 protocol runs, 100,000 events, 10,000 runs."""

import json
from datetime import timedelta

import pytest
from sqlalchemy import insert

from bot.models import CodexRun, Event, Project, ProtocolRun, StepRun, utcnow

PROTOCOLS, EVENTS, RUNS = 10_000, 100_000, 10_000


async def bulk(deps, model, rows, batch=5000):
    async with deps.sessions() as session:
        for start in range(0, len(rows), batch):
            await session.execute(insert(model), rows[start:start + batch])
        await session.commit()


async def seed(deps) -> int:
    now = utcnow()
    await bulk(deps, Project, [{"id": 1, "name": "big", "base_branch": "main", "active": True, "secrets": {},
                                "default_models": {}, "status": "ready", "created_at": now, "updated_at": now}])
    await bulk(deps, ProtocolRun, [
        {"id": index, "project_id": 1, "protocol_name": f"p{index}", "status": "running", "kind": "run",
         "base_branch": "main", "policy": {}, "state": {}, "tokens_used": 0, "check_run_completed": False,
         "created_at": now, "updated_at": now} for index in range(1, PROTOCOLS + 1)])
    await bulk(deps, StepRun, [
        {"protocol_run_id": 1, "step_index": index, "step_name": f"s{index}", "step_type": "code", "status": "pending",
         "retries": 0, "qa_policy": "full", "depends_on": [], "policy": {}, "state": {}, "tokens_used": 0,
         "created_at": now, "updated_at": now} for index in range(30)])
    await bulk(deps, Event, [
        {"project_id": 1, "protocol_run_id": index % PROTOCOLS + 1, "event_type": "note", "message": str(index),
         "meta": {}, "created_at": now} for index in range(EVENTS)])
    await bulk(deps, CodexRun, [
        {"run_id": f"run{index:06d}", "job_type": "execute_step_job", "run_kind": "exec", "status": "succeeded",
         "project_id": 1, "protocol_run_id": index % PROTOCOLS + 1, "attempt": 1, "queue": "default", "params": {},
         "result": {}, "cost_tokens": 0, "created_at": now - timedelta(seconds=index % 2000)}
        for index in range(RUNS)])
    return PROTOCOLS


async def walk(api, path: str, limit: int, key: str, pages: int | None = None) -> list:
    seen, cursor = [], None
    while True:
        separator = "&" if "?" in path else "?"
        url = f"{path}{separator}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        response = await api.get(url)
        assert response.status == 200, await response.text()
        seen += [item[key] for item in await response.json()]
        cursor = response.headers.get("X-Next-Cursor")
        if cursor is None or (pages is not None and len(seen) >= pages * limit):
            return seen


@pytest.mark.timeout(600)
async def test_pages_cover_large_tables_exactly_once(api):
    await seed(api.deps)
    protocol_ids = await walk(api, "/projects/1/protocols", 500, "id")
    assert protocol_ids == list(range(PROTOCOLS, 0, -1))
    assert await walk(api, "/protocols?status=running", 500, "id", pages=3) == list(range(PROTOCOLS, PROTOCOLS - 1500, -1))
    run_ids = await walk(api, "/codex/runs", 500, "run_id")
    assert len(run_ids) == RUNS and len(set(run_ids)) == RUNS
    timeline = await walk(api, "/protocols/7/events", 3, "message")
    assert timeline == [str(index) for index in range(6, EVENTS, PROTOCOLS)]
    recent = await walk(api, "/events?project_id=1", 500, "id", pages=4)
    assert recent == sorted(recent, reverse=True) and len(set(recent)) == 2000
    steps = await walk(api, "/protocols/1/steps", 7, "step_index")
    assert steps == list(range(30))
    assert len(await walk(api, "/codex/runs?protocol_run_id=5", 100, "run_id")) == RUNS // PROTOCOLS


async def test_a_generic_paginator_walks_every_list_to_its_end(api):
    """What a dashboard does: every GET that answers a list, followed by its X-Next-Cursor
    (`?cursor=`) two items at a time, ends, and sees each item once."""
    from handlers.api import ROUTES
    from bot.models import Message
    from tests.api_support import add, project, protocol, run, steps

    owner = await project(api.deps)
    work = await protocol(api.deps, owner)
    [step, *_] = await steps(api.deps, work, "completed", "pending", "pending")
    await add(api.deps, *[Message(project_id=owner.id, protocol_run_id=work.id if n % 2 else None, type="USER",
                                  body=f"note {n}", meta={}) for n in range(7)])
    await add(api.deps, *[Event(project_id=owner.id, protocol_run_id=work.id, event_type="note", message=str(n),
                                meta={}) for n in range(5)])
    for n in range(5):
        await run(api.deps, project_id=owner.id, protocol_run_id=work.id, step_run_id=step.id)
    ids = {"project_id": owner.id, "protocol_id": work.id, "step_id": step.id}
    walked = []
    for route in ROUTES:
        if route.method != "GET" or not set(route.path_params) <= set(ids) or route.path.endswith(("/stream", "/ws")):
            continue
        path = route.path.format(**{name: ids[name] for name in route.path_params})
        first = await api.get(path)
        if first.status != 200 or not isinstance(await first.json(), list):
            continue
        if not route.paginated:  # a short, whole list (the engines, the queues)
            assert "X-Next-Cursor" not in first.headers, route.path
            walked.append((route.path, len(await first.json())))
            continue
        items, cursor, pages = [], None, 0
        while pages < 100:
            response = await api.get(f"{path}?limit=2" + (f"&cursor={cursor}" if cursor else ""))
            assert response.status == 200, (path, await response.text())
            items += await response.json()
            pages += 1
            cursor = response.headers.get("X-Next-Cursor")
            if cursor is None:
                break
        assert cursor is None, f"{route.path}: still a next page after {pages} pages"
        assert len({json.dumps(item, sort_keys=True) for item in items}) == len(items), f"{route.path} repeats items"
        walked.append((route.path, len(items)))
    counts = dict(walked)
    assert counts["/projects/{project_id}/messages"] == 7 and counts["/protocols/{protocol_id}/messages"] == 3
    assert counts["/protocols/{protocol_id}/events"] >= 5 and counts["/protocols/{protocol_id}/runs"] == 5
    assert len(walked) >= 10, walked
