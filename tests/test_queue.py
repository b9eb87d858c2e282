"""Jobs run once, survive a lost queue, and run on the embedded queue and on real Redis alike."""

import json

from sqlmodel import select

from bot import store
from bot.models import Event, QueuedJob
from bot.queue import HANDLE_INSTALLATION, delivery_job
from jobs.maintenance import redrive_lost_jobs
from tests.conftest import FIXTURES, run_jobs

INSTALLATION = json.loads((FIXTURES / "github-webhooks/installation/created.payload.json").read_text())


async def accept_installation(deps, delivery_id: str, *, wake: bool = True):
    from bot.models import WebhookDelivery

    job = delivery_job(HANDLE_INSTALLATION, delivery_id)
    delivery = WebhookDelivery(delivery_id=delivery_id, event="installation", action="created", payload=INSTALLATION)
    async with deps.sessions() as session:
        fresh = await store.record_delivery(session, delivery, [job])
    if wake:
        await deps.queue.wake(fresh)
    return job


async def events(deps) -> list[str]:
    async with deps.sessions() as session:
        return [event.event_type for event in (await session.exec(select(Event).order_by(Event.id))).all()]


async def job_state(deps, job_id: str) -> QueuedJob:
    async with deps.sessions() as session:
        return await session.get(QueuedJob, job_id)


async def test_a_burst_worker_runs_the_queued_job(any_deps):
    job = await accept_installation(any_deps, "q-1")
    await run_jobs(any_deps)
    assert await events(any_deps) == ["project_registered"]
    state = await job_state(any_deps, job.job_id)
    assert (state.status, state.attempts) == ("done", 1)


async def test_waking_a_finished_job_again_does_nothing(any_deps):
    job = await accept_installation(any_deps, "q-2")
    await run_jobs(any_deps)
    await any_deps.queue.wake([job])
    await run_jobs(any_deps)
    assert await events(any_deps) == ["project_registered"]
    assert (await job_state(any_deps, job.job_id)).attempts == 1


async def test_a_job_lost_with_its_queue_is_redriven(any_deps, monkeypatch):
    job = await accept_installation(any_deps, "q-3", wake=False)
    monkeypatch.setattr("jobs.maintenance.QUEUED_GRACE_MINUTES", 0)
    assert await redrive_lost_jobs(any_deps) == 1
    await run_jobs(any_deps)
    assert await events(any_deps) == ["project_registered"]
    assert (await job_state(any_deps, job.job_id)).status == "done"


async def test_a_job_still_in_the_queue_is_not_redriven_twice(any_deps, monkeypatch):
    await accept_installation(any_deps, "q-4")
    monkeypatch.setattr("jobs.maintenance.QUEUED_GRACE_MINUTES", 0)
    assert await redrive_lost_jobs(any_deps) == 0


async def test_a_job_that_raises_is_recorded_as_failed(deps):
    from jobs.tracking import tracked

    async def broken_job(ctx, delivery_id):
        raise RuntimeError("boom")

    async with deps.sessions() as session:
        await store.record_jobs(session, [delivery_job("broken_job", "q-5")])
        await session.commit()
    await tracked(broken_job)({"deps": deps, "job_id": "broken_job:q-5"}, "q-5")
    state = await job_state(deps, "broken_job:q-5")
    assert state.status == "failed" and "boom" in state.error


async def test_two_workers_on_real_redis_run_a_job_once(redis_deps):
    import asyncio

    from jobs.worker import embedded_worker

    await accept_installation(redis_deps, "q-6")
    await asyncio.gather(embedded_worker(redis_deps, burst=True).main(), embedded_worker(redis_deps, burst=True).main())
    assert await events(redis_deps) == ["project_registered"]


async def test_job_log_lines_carry_the_ids_of_the_work(deps):
    import io
    import json
    import logging

    from bot.logs import JsonFormatter
    from jobs.tracking import tracked

    async def noisy_job(ctx, step_id):
        logging.getLogger("agentry.test").info("working")

    from bot.queue import execute_step_job

    job = execute_step_job(42, 1)
    async with deps.sessions() as session:
        await store.record_jobs(session, [job])
        await session.commit()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("agentry.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        await tracked(noisy_job)({"deps": deps, "job_id": job.job_id}, 42)
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue().splitlines()[0])
    assert (line["msg"], line["job_id"], line["step_id"]) == ("working", job.job_id, 42)
