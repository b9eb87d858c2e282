"""One writer of webhook deliveries per process, committing concurrent deliveries together.

A request hands its delivery and jobs over and waits for the commit; the writer takes everything
that has arrived, writes it in one transaction (`store.record_deliveries`) and answers each request.
While it writes, new deliveries gather for the next batch: when the load is light every delivery is
written at once, under load a commit carries many. So SQLite has one writer of deliveries instead of
a pool of connections taking turns on its lock, and every request is answered after its commit.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from bot import db, store
from bot.models import IncomingDelivery
from bot.queue import Job, JobQueue

log = logging.getLogger("agentry.intake")

MAX_BATCH = 256
WINDOW_SECONDS = 0.002  # how long a delivery may wait for others to share its commit


@dataclass
class _Pending:
    delivery: IncomingDelivery
    jobs: list[Job]
    answer: asyncio.Future[list[Job] | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    since: float = field(default_factory=lambda: asyncio.get_running_loop().time())


class DeliveryWriter:
    def __init__(self, sessions: db.Sessions, queue: JobQueue, *, window: float = WINDOW_SECONDS,
                 max_batch: int = MAX_BATCH) -> None:
        self._sessions = sessions
        self._queue = queue
        self._window = window
        self._max_batch = max_batch
        self._pending: list[_Pending] = []
        self._arrived = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    async def record(self, delivery: IncomingDelivery, jobs: list[Job]) -> list[Job] | None:
        """Records the delivery with its jobs once committed; the jobs that were new, or None when the
        delivery id was seen before. A request that goes away does not take its delivery with it."""
        pending = _Pending(delivery, jobs)
        self._pending.append(pending)
        self._arrived.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="delivery-writer")
        return await asyncio.shield(pending.answer)

    async def close(self) -> None:
        """Writes what is waiting, then stops."""
        self._closing = True
        self._arrived.set()
        if self._task is not None:
            await self._task
        while self._pending:
            await self._write(self._take())

    async def _run(self) -> None:
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            while self._pending:
                if not self._closing:
                    await self._gathered()
                await self._write(self._take())
            if self._closing:
                return

    async def _gathered(self) -> None:
        """Waits until the oldest delivery waiting has waited the window, or a batch is full."""
        loop = asyncio.get_running_loop()
        while len(self._pending) < self._max_batch:
            left = self._pending[0].since + self._window - loop.time()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except TimeoutError:
                return

    def _take(self) -> list[_Pending]:
        batch, self._pending = self._pending[:self._max_batch], self._pending[self._max_batch:]
        return batch

    async def _write(self, batch: list[_Pending]) -> None:
        try:
            async with self._sessions() as session:
                results = await store.record_deliveries(session, [(item.delivery, item.jobs) for item in batch])
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
