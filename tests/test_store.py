"""Data functions under concurrency: registration and step claims race safely."""

import asyncio

from sqlmodel import func, select

from bot import store
from bot.models import Project, ProtocolRun, StepRun


async def test_concurrent_registration_of_one_repository_makes_one_project(deps):
    async def register():
        async with deps.sessions() as session:
            _, created = await store.register_repo(session, forge="github", repo="octo/demo", repo_id=7,
                                                   installation_id=1, clone_url=None, default_branch="main")
            await session.commit()
            return created

    created = await asyncio.gather(*(register() for _ in range(8)))
    assert created.count(True) == 1
    async with deps.sessions() as session:
        assert (await session.exec(select(func.count()).select_from(Project))).one() == 1


async def make_step(deps) -> int:
    async with deps.sessions() as session:
        project = Project(name="demo")
        session.add(project)
        await session.flush()
        protocol = ProtocolRun(project_id=project.id, protocol_name="1-demo", status="running")
        session.add(protocol)
        await session.flush()
        step = StepRun(protocol_run_id=protocol.id, step_index=0, step_name="only")
        session.add(step)
        await session.commit()
        return step.id


async def test_of_many_claims_on_a_pending_step_exactly_one_wins(deps):
    step_id = await make_step(deps)

    async def claim():
        async with deps.sessions() as session:
            return await store.claim_step(session, step_id)

    results = await asyncio.gather(*(claim() for _ in range(10)))
    assert results.count(True) == 1


async def test_two_workers_on_real_redis_run_one_step_once(redis_deps, monkeypatch):
    """The same step queued twice (two attempts' job ids) on two workers: one agent run."""
    from bot.steps import run as step_runs
    from bot.steps.outcome import Outcome
    from jobs.worker import embedded_worker

    step_id = await make_step(redis_deps)
    runs = []

    async def fake_execute(deps, project, protocol, step):
        runs.append(step.id)
        await asyncio.sleep(0.2)
        return Outcome(ok=True)

    monkeypatch.setattr(step_runs, "run_execute", fake_execute)
    from bot.queue import execute_step_job

    await redis_deps.submit([execute_step_job(step_id, 1), execute_step_job(step_id, 2)])
    await asyncio.gather(embedded_worker(redis_deps, burst=True).main(), embedded_worker(redis_deps, burst=True).main())
    assert runs == [step_id]
