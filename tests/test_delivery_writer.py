"""The delivery writer: concurrent deliveries share commits, duplicates are told apart even within one
batch, one bad delivery fails alone, and closing writes what is still waiting."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func
from sqlmodel import select

from bot.delivery_tables import delivery_tables
from bot.delivery_writer import DeliveryWriter
from bot.models import IncomingDelivery, QueuedJob, WebhookDelivery
from bot.queue import HANDLE_INSTALLATION, delivery_job
from bot.statuses import DeliveryStatus


def incoming(delivery_id: str, **overrides) -> IncomingDelivery:
    fields = dict(delivery_id=delivery_id, forge="github", event="installation", status=DeliveryStatus.ACCEPTED,
                  payload_json='{"action": "created"}', action="created")
    return IncomingDelivery(**{**fields, **overrides})


async def count(deps, model) -> int:
    async with deps.sessions() as session:
        return (await session.exec(select(func.count()).select_from(model))).one()


class Counted:
    """The delivery tables, counting their transactions."""

    def __init__(self, deps) -> None:
        self.tables = delivery_tables(deps.engine, deps.settings.database_url)
        self.transactions = 0

    async def record(self, batch):
        self.transactions += 1
        return await self.tables.record(batch)

    async def close(self) -> None:
        await self.tables.close()


def writer_of(deps, **options) -> DeliveryWriter:
    return DeliveryWriter(delivery_tables(deps.engine, deps.settings.database_url), deps.queue, **options)


async def test_concurrent_deliveries_share_commits_and_each_learns_its_fate(deps):
    tables = Counted(deps)
    writer = DeliveryWriter(tables, deps.queue)
    ids = [f"w-{number % 40}" for number in range(60)]  # 20 of them a second time, at the same moment
    results = await asyncio.gather(*(writer.record(incoming(delivery_id), [delivery_job(HANDLE_INSTALLATION, delivery_id)])
                                     for delivery_id in ids))
    await writer.close()
    assert all(result is not None and len(result) == 1 for result in results[:40])
    assert results[40:] == [None] * 20
    assert await count(deps, WebhookDelivery) == 40 and await count(deps, QueuedJob) == 40
    assert tables.transactions < 10  # 60 deliveries, a handful of transactions


async def test_a_delivery_the_database_refuses_fails_alone(deps):
    writer = writer_of(deps)
    good = [writer.record(incoming(f"good-{number}"), []) for number in range(5)]
    bad = writer.record(incoming("bad", event=None), [])  # NOT NULL
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    await writer.close()
    assert results[:5] == [[]] * 5
    assert isinstance(results[5], Exception)
    assert await count(deps, WebhookDelivery) == 5


async def test_a_delivery_refused_as_invalid_is_replaced_when_it_comes_again(deps):
    writer = writer_of(deps)
    assert await writer.record(incoming("again", status=DeliveryStatus.INVALID, error="bad shape"), []) == []
    assert await writer.record(incoming("again"), []) == []
    assert await writer.record(incoming("again"), []) is None
    await writer.close()
    async with deps.sessions() as session:
        [row] = (await session.exec(select(WebhookDelivery))).all()
    assert (row.status, row.error, row.payload) == (DeliveryStatus.ACCEPTED, None, {"action": "created"})


@pytest.mark.timeout(30)
async def test_closing_writes_what_is_waiting(deps):
    writer = writer_of(deps, window=10)  # nothing would be written for 10 s
    waiting = [asyncio.create_task(writer.record(incoming(f"late-{number}"), [])) for number in range(3)]
    await asyncio.sleep(0.05)
    await writer.close()
    assert [await task for task in waiting] == [[]] * 3
    assert await count(deps, WebhookDelivery) == 3


async def test_intake_refuses_a_job_that_coalesces(deps):
    from bot.queue import report_protocol_job

    writer = writer_of(deps)
    with pytest.raises(ValueError, match="coalesces"):
        await writer.record(incoming("coalescing"), [report_protocol_job(1, "intake")])
    await writer.close()
    assert await count(deps, WebhookDelivery) == 0


async def test_intake_stores_times_as_the_orm_does(deps):
    """A job queued by intake and one queued through the ORM read back alike (on SQLite the driver's
    own conversion would have kept a UTC offset the ORM drops)."""
    from bot import store

    writer = writer_of(deps)
    await writer.record(incoming("timed"), [delivery_job(HANDLE_INSTALLATION, "timed")])
    await writer.close()
    async with deps.sessions() as session:
        await store.record_jobs(session, [delivery_job(HANDLE_INSTALLATION, "by-the-orm")])
        await session.commit()
        jobs = (await session.exec(select(QueuedJob).order_by(QueuedJob.job_id))).all()
        latest = max(job.enqueued_at for job in jobs)  # a naive and an aware time would not compare
        stored = (await session.exec(select(func.count()).select_from(QueuedJob)
                                     .where(QueuedJob.enqueued_at <= latest))).one()
    assert stored == 2  # compared in the database as times, not as differently written text


async def test_a_job_given_twice_by_one_delivery_is_new_once(deps):
    writer = writer_of(deps)
    job = delivery_job(HANDLE_INSTALLATION, "twice")
    assert await writer.record(incoming("twice"), [job, job]) == [job]
    await writer.close()
