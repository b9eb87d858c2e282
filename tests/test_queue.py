"""Jobs run once, survive a lost queue, and run on the embedded queue and on real Redis alike."""

import json

from sqlmodel import select

from bot import store
from bot.delivery_tables import delivery_tables
from bot.maintenance import redrive_lost_jobs
from bot.models import Event, QueuedJob
from bot.queue import HANDLE_INSTALLATION, delivery_job
from tests.conftest import FIXTURES, run_jobs

INSTALLATION = json.loads((FIXTURES / "github-webhooks/installation/created.payload.json").read_text())


async def accept_installation(deps, delivery_id: str, *, wake: bool = True):
    from bot.models import IncomingDelivery
    from bot.statuses import DeliveryStatus

    job = delivery_job(HANDLE_INSTALLATION, delivery_id)
    delivery = IncomingDelivery(delivery_id=delivery_id, forge="github", event="installation", action="created",
                                status=DeliveryStatus.ACCEPTED, payload_json=json.dumps(INSTALLATION))
    tables = delivery_tables(deps.engine, deps.settings.database_url)
    [fresh] = await tables.record([(delivery, [job])])
    await tables.close()
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
    monkeypatch.setattr("bot.maintenance.QUEUED_GRACE_MINUTES", 0)
    assert await redrive_lost_jobs(any_deps) == 1
    await run_jobs(any_deps)
    assert await events(any_deps) == ["project_registered"]
    assert (await job_state(any_deps, job.job_id)).status == "done"


async def test_a_job_still_in_the_queue_is_not_redriven_twice(any_deps, monkeypatch):
    await accept_installation(any_deps, "q-4")
    monkeypatch.setattr("bot.maintenance.QUEUED_GRACE_MINUTES", 0)
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


async def test_a_job_whose_lease_is_taken_over_stops_and_writes_nothing_more(deps, monkeypatch):
    import asyncio

    from sqlmodel import update

    from jobs import tracking

    monkeypatch.setattr(tracking, "RENEW_SECONDS", 0.05)
    reached_the_end = asyncio.Event()

    async def slow_job(ctx, delivery_id):
        async with deps.sessions() as session:  # another worker claims the job meanwhile
            await session.exec(update(QueuedJob).where(QueuedJob.job_id == "slow_job:q-7")
                               .values(worker_id="another-host:1", attempts=QueuedJob.attempts + 1))
            await session.commit()
        await asyncio.sleep(5)
        reached_the_end.set()

    async with deps.sessions() as session:
        await store.record_jobs(session, [delivery_job("slow_job", "q-7")])
        await session.commit()
    await asyncio.wait_for(tracking.tracked(slow_job)({"deps": deps, "job_id": "slow_job:q-7"}, "q-7"), 3)
    state = await job_state(deps, "slow_job:q-7")
    assert not reached_the_end.is_set()
    assert (state.status, state.worker_id, state.finished_at) == ("running", "another-host:1", None)


async def test_a_worker_takes_only_the_agent_jobs_it_has_slots_for():
    import asyncio

    from arq.constants import in_progress_key_prefix
    from arq.worker import func

    from bot.queue import embedded_redis
    from jobs.worker import ResilientWorker

    release = asyncio.Event()

    async def waits(ctx, *args):
        await release.wait()

    functions = [func(waits, name=name) for name in ("execute_step_job", "report_protocol_job")]
    redis = embedded_redis()
    worker = ResilientWorker(functions=functions, redis_pool=redis, handle_signals=False, burst=True, agent_slots=1)
    ids = ["execute_step_job:9:1", "execute_step_job:1:1", "execute_step_job:2:1", "report_protocol_job:1:x"]
    for job_id in ids:
        await redis.enqueue_job(job_id.split(":")[0], _job_id=job_id)
    await redis.set(in_progress_key_prefix + "execute_step_job:9:1", b"1")  # another worker runs it
    try:
        await worker.start_jobs([job_id.encode() for job_id in ids])
        assert sorted(worker.tasks) == ["execute_step_job:1:1", "report_protocol_job:1:x"]
        assert await redis.zscore(worker.queue_name, "execute_step_job:2:1")  # left for another worker
    finally:
        release.set()
        await asyncio.gather(*worker.tasks.values())
        await redis.aclose()


async def test_an_urgent_job_goes_before_the_jobs_queued_earlier():
    from bot.queue import Job, JobQueue, embedded_redis

    queue = JobQueue(embedded_redis())
    try:
        await queue.wake([Job("execute_step_job", (1,), "1:1"), Job("execute_step_job", (2,), "2:1")])
        await queue.wake([Job("execute_step_job", (3,), "3:2", urgent=True)])
        order = [job_id.decode() for job_id in await queue.redis.zrange(queue.queue_name, 0, -1)]
        assert order == ["execute_step_job:3:2", "execute_step_job:1:1", "execute_step_job:2:1"]
        assert await queue.is_known("execute_step_job:3:2")
    finally:
        await queue.close()


async def test_a_report_asked_for_while_one_waits_is_that_one_and_one_asked_for_while_it_runs_is_new(any_deps):
    from datetime import timedelta

    from bot.queue import report_protocol_job

    async def record(*jobs):
        async with any_deps.sessions() as session:
            fresh = await store.record_jobs(session, list(jobs))
            await session.commit()
            return fresh

    first, = await record(report_protocol_job(41, "step_started"))
    assert await record(report_protocol_job(41, "step_settled"), report_protocol_job(41, "ci")) == []
    other = await record(report_protocol_job(42, "planned"))
    async with any_deps.sessions() as session:
        assert await store.start_job(session, first.job_id, worker_id="w:1", lease=timedelta(minutes=1))
    again = await record(report_protocol_job(41, "step_settled"))
    assert len(other) == 1 and len(again) == 1 and again[0].job_id != first.job_id
