"""One writer of webhook deliveries per process, committing concurrent deliveries together.

A request hands its delivery and jobs over and waits for the commit; the writer takes everything
that has arrived, writes it in one transaction (`bot.delivery_tables`) and answers each request.
While it writes, new deliveries gather for the next batch: when the load is light every delivery is
written at once, under load a commit carries many. So SQLite has one writer of deliveries per web
process (they take turns through a lock file) instead of a pool of connections contending for its
lock, and every request is answered after its commit.
PostgreSQL takes several batches at once (`in_flight`): while one waits on the database the next
is written, so intake is not held to one round trip at a time.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from bot.delivery_tables import DeliveryTables
from bot.models import IncomingDelivery
from bot.queue import Job, JobQueue

log = logging.getLogger("agentry.intake")

MAX_BATCH = 256
WINDOW_SECONDS = 0.002  # how long a delivery may wait for others to share its commit
IN_FLIGHT = {"sqlite": 1, "postgresql": 4}  # batches written at once, by database


@dataclass
class _Pending:
    delivery: IncomingDelivery
    jobs: list[Job]
    answer: asyncio.Future[list[Job] | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    since: float = field(default_factory=lambda: asyncio.get_running_loop().time())


class DeliveryWriter:
    def __init__(self, tables: DeliveryTables, queue: JobQueue, *, window: float = WINDOW_SECONDS,
                 max_batch: int = MAX_BATCH, in_flight: int = 1) -> None:
        self._tables = tables
        self._queue = queue
        self._window = window
        self._max_batch = max_batch
        self._slots = asyncio.Semaphore(in_flight)
        self._writes: set[asyncio.Task[None]] = set()
        self._pending: list[_Pending] = []
        self._arrived = asyncio.Event()
        self._batch_ready: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def record(self, delivery: IncomingDelivery, jobs: list[Job]) -> list[Job] | None:
        """Records the delivery with its jobs once committed; the jobs that were new, or None when the
        delivery id was seen before. A request that goes away does not take its delivery with it."""
        pending = _Pending(delivery, jobs)
        self._pending.append(pending)
        self._arrived.set()
        if len(self._pending) >= self._max_batch:
            self._stop_gathering()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="delivery-writer")
        return await asyncio.shield(pending.answer)

    async def close(self) -> None:
        """Writes what is waiting, then stops."""
        self._closing = True
        self._arrived.set()
        self._stop_gathering()
        if self._task is not None:
            await self._task
        await asyncio.gather(*self._writes)
        while self._pending:
            await self._write(self._take())
        await self._tables.close()

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self._pending:
                await self._slots.acquire()  # a batch gathers while the writes before it are under way
                if not self._closing:
                    await self._gathered()
                write = asyncio.create_task(self._write_in_slot(self._take()))
                self._writes.add(write)
                write.add_done_callback(self._writes.discard)
            if self._closing:
                return

    async def _write_in_slot(self, batch: list[_Pending]) -> None:
        try:
            await self._write(batch)
        finally:
            self._slots.release()

    async def _gathered(self) -> None:
        """Waits until the oldest delivery waiting has waited the window, or a batch is full (one
        timer per batch: a `wait_for` per arrival cost more than the write of a delivery)."""
        loop = asyncio.get_running_loop()
        left = self._pending[0].since + self._window - loop.time()
        if left <= 0 or len(self._pending) >= self._max_batch:
            return
        self._batch_ready = ready = loop.create_future()
        timer = loop.call_later(left, self._stop_gathering)
        try:
            await ready
        finally:
            timer.cancel()
            self._batch_ready = None

    def _stop_gathering(self) -> None:
        if self._batch_ready is not None and not self._batch_ready.done():
            self._batch_ready.set_result(None)

    def _take(self) -> list[_Pending]:
        batch, self._pending = self._pending[:self._max_batch], self._pending[self._max_batch:]
        return batch

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            results = await self._tables.record([(item.delivery, item.jobs) for item in batch])
        except asyncio.CancelledError:  # the loop is going away: the batch waits for `close`
            self._pending[:0] = batch
            raise
        except Exception as exc:
            if len(batch) > 1:  # one bad delivery must not fail the others: each on its own
                for item in batch:
                    await self._write([item])
                return
            log.exception("could not record delivery %s", batch[0].delivery.delivery_id)
            _answer(batch[0], exception=exc)
            return
        await self._queue.wake([job for result in results for job in result or ()])
        for item, result in zip(batch, results):
            _answer(item, result=result)


def _answer(item: _Pending, *, result: list[Job] | None = None, exception: BaseException | None = None) -> None:
    if item.answer.done():
        return
    if exception is not None:
        item.answer.set_exception(exception)
    else:
        item.answer.set_result(result)
