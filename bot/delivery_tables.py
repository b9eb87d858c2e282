"""Deliveries and their jobs written straight through the database driver, a batch at a time.

Intake writes thousands of rows a second, and through the ORM each row cost more CPU than the rest
of its request. The statements are still made from the tables' declarations, compiled once for the
database, and each value goes through its column type's own bind processor, so a row is stored as
the ORM would store it. SQLite is written on a connection and thread of its own, holding a lock file
across each transaction so that the web processes take turns without SQLite's busy-wait sleeps;
PostgreSQL takes a batch in one statement (its rows as arrays, unnested), on a pooled connection.

A delivery id seen before is a duplicate, unless it was refused as invalid: a redelivery after an
upgrade that reads it replaces that row. A job id seen before, or given twice, is a duplicate.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import JSON, Table, Text, bindparam, cast, func, null, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from bot import db, store
from bot.models import IncomingDelivery, QueuedJob, WebhookDelivery
from bot.queue import Job
from bot.statuses import DeliveryStatus

log = logging.getLogger("agentry.intake")

Batch = Sequence[tuple[IncomingDelivery, Sequence[Job]]]
CHECKPOINT_SECONDS = 0.5
DELIVERY_COLUMNS = ("delivery_id", "forge", "event", "action", "status", "repo", "installation_id", "payload", "error",
                    "received_at")
JOB_COLUMNS = ("job_id", "function", "args", "status", "attempts", "delivery_id", "project_id", "protocol_run_id",
               "step_run_id", "enqueued_at")
REPLACEABLE = {"replaceable": DeliveryStatus.INVALID}  # the status of a stored delivery its redelivery replaces


class DeliveryTables(Protocol):
    async def record(self, batch: Batch) -> list[list[Job] | None]:
        """Stores the deliveries and their jobs in one transaction; for each delivery, the jobs that
        were new, or None when it is a duplicate (of one stored, or of one before it in the batch)."""
        ...

    async def close(self) -> None: ...


def delivery_tables(engine: AsyncEngine, database_url: str) -> DeliveryTables:
    if engine.dialect.name == "postgresql":
        return PostgresDeliveryTables(engine)
    return SqliteDeliveryTables(db.sqlite_path(database_url))


@dataclass(frozen=True)
class Prepared:
    """A compiled statement with positional parameters, and how each value is made ready for the driver."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Callable[[Any], Any] | None, ...]

    @classmethod
    def of(cls, statement: ClauseElement, dialect: Dialect) -> Prepared:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        names = tuple(compiled.positiontup or ())
        binds = {bind.key: bind for bind in compiled.binds.values()}
        return cls(str(compiled), tuple(name.removeprefix(NEW) for name in names),
                   tuple(binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names))

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """The statement's parameters from values named by column (and `replaceable`)."""
        return tuple(values[name] if process is None else process(values[name])
                     for process, name in zip(self.processors, self.names))


NEW = "new_"  # a value's parameter is its column's name after this (a column's own name is SQLAlchemy's)
JSON_COLUMNS = frozenset({"payload", "args"})  # given as JSON text, stored as it is


def _new(table: Table, name: str) -> Any:
    return bindparam(NEW + name, type_=Text if name in JSON_COLUMNS else table.c[name].type)


def _job_values(job: Job) -> dict[str, Any]:
    if job.coalesce:
        raise ValueError(f"{job.function}: a job that coalesces is not queued by intake")
    return store.job_row(job) | {"args": json.dumps(list(job.args))}  # JSON text, as the payload is


def _upsert_deliveries(insert: Any, table: Table) -> Any:
    """New deliveries go in; one whose id is stored as invalid is replaced; the ids written come back."""
    replaced = {name: insert.excluded[name] for name in DELIVERY_COLUMNS if name != "delivery_id"}
    return insert.on_conflict_do_update(
        index_elements=["delivery_id"], set_={**replaced, "processed_at": null()},
        where=table.c.status == bindparam("replaceable", type_=table.c.status.type),
    ).returning(table.c.delivery_id)


def _outcome(batch: Batch, written: set[str], new_jobs: set[str]) -> list[list[Job] | None]:
    seen: set[str] = set()
    outcome: list[list[Job] | None] = []
    for delivery, jobs in batch:
        first = delivery.delivery_id not in seen
        seen.add(delivery.delivery_id)
        if not (first and delivery.delivery_id in written):
            outcome.append(None)
            continue
        fresh = []
        for job in jobs:
            if job.job_id in new_jobs:
                fresh.append(job)
                new_jobs.discard(job.job_id)  # a job id given twice is new once
        outcome.append(fresh)
    return outcome


def _firsts(batch: Batch) -> list[tuple[IncomingDelivery, Sequence[Job]]]:
    """Each delivery id's first delivery of the batch."""
    firsts: dict[str, tuple[IncomingDelivery, Sequence[Job]]] = {}
    for delivery, jobs in batch:
        firsts.setdefault(delivery.delivery_id, (delivery, jobs))
    return list(firsts.values())


class SqliteDeliveryTables:
    def __init__(self, path: str) -> None:
        self._path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery-tables")
        self._connection: sqlite3.Connection | None = None
        self._lock: int | None = None
        self._checkpoints = ThreadPoolExecutor(max_workers=1, thread_name_prefix="delivery-checkpoints")
        self._checkpointing = threading.Lock()
        self._checkpointing_connection: sqlite3.Connection | None = None
        self._checkpointed_at = 0.0
        self._closed = False
        dialect = sqlite.dialect()
        deliveries, jobs = store.table_of(WebhookDelivery), store.table_of(QueuedJob)
        self._deliveries = Prepared.of(_upsert_deliveries(
            sqlite.insert(deliveries).values({name: _new(deliveries, name) for name in DELIVERY_COLUMNS}), deliveries),
            dialect)
        self._jobs = Prepared.of(sqlite.insert(jobs).values({name: _new(jobs, name) for name in JOB_COLUMNS})
                                 .on_conflict_do_nothing(index_elements=["job_id"]).returning(jobs.c.job_id), dialect)

    async def record(self, batch: Batch) -> list[list[Job] | None]:
        return await asyncio.get_running_loop().run_in_executor(self._thread, self._record, batch)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown()
        self._checkpoints.shutdown()
        if self._checkpointing_connection is not None:
            self._checkpointing_connection.close()

    def _record(self, batch: Batch) -> list[list[Job] | None]:
        connection, lock = self._opened()
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            connection.execute("BEGIN IMMEDIATE")
            try:
                written, new_jobs = self._write(connection, _firsts(batch))
                connection.execute("COMMIT")
            except BaseException:
                connection.execute("ROLLBACK")
                raise
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
        self._checkpoint_soon()
        return _outcome(batch, written, new_jobs)

    def _checkpoint_soon(self) -> None:
        """A commit that moves the log into the database file (every 1,000 pages, by default) took
        tens of milliseconds, and every request of its batch waited for it: the writer's connection
        does not, and a thread of its own does it without holding up writers, twice a second."""
        now = time.monotonic()
        if self._checkpointing.locked() or now - self._checkpointed_at < CHECKPOINT_SECONDS:
            return
        self._checkpointed_at = now
        self._checkpoints.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        with self._checkpointing:
            try:
                if self._checkpointing_connection is None:
                    self._checkpointing_connection = sqlite3.connect(self._path, isolation_level=None,
                                                                     check_same_thread=False)
                self._checkpointing_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error:
                log.warning("could not checkpoint the SQLite log", exc_info=True)

    def _write(self, connection: sqlite3.Connection,
               firsts: list[tuple[IncomingDelivery, Sequence[Job]]]) -> tuple[set[str], set[str]]:
        written: set[str] = set()
        new_jobs: set[str] = set()
        for delivery, jobs in firsts:
            values = delivery.row() | REPLACEABLE
            if connection.execute(self._deliveries.sql, self._deliveries.parameters(values)).fetchone():
                written.add(delivery.delivery_id)
                for job in jobs:
                    if connection.execute(self._jobs.sql, self._jobs.parameters(_job_values(job))).fetchone():
                        new_jobs.add(job.job_id)
        return written, new_jobs

    def _opened(self) -> tuple[sqlite3.Connection, int]:
        if self._connection is None or self._lock is None:
            self._connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            db.sqlite_pragmas(self._connection, None)
            self._connection.execute("PRAGMA wal_autocheckpoint=0")
            self._lock = os.open(self._path + ".intake-lock", os.O_RDWR | os.O_CREAT, 0o600)
        return self._connection, self._lock

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
        if self._lock is not None:
            os.close(self._lock)
        self._connection = self._lock = None


class PostgresDeliveryTables:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        dialect = engine.dialect
        deliveries, jobs = store.table_of(WebhookDelivery), store.table_of(QueuedJob)
        self._deliveries = Prepared.of(_upsert_deliveries(
            postgresql.insert(deliveries).from_select(list(DELIVERY_COLUMNS), _unnested(deliveries, DELIVERY_COLUMNS)),
            deliveries), dialect)
        self._jobs = Prepared.of(
            postgresql.insert(jobs).from_select(list(JOB_COLUMNS), _unnested(jobs, JOB_COLUMNS))
            .on_conflict_do_nothing(index_elements=["job_id"]).returning(jobs.c.job_id), dialect)

    async def record(self, batch: Batch) -> list[list[Job] | None]:
        # Rows in key order: batches in flight together then lock the keys they share in one order.
        firsts = sorted(_firsts(batch), key=lambda first: first[0].delivery_id)
        async with self._engine.connect() as connection:
            raw = (await connection.get_raw_connection()).driver_connection
            assert raw is not None
            async with raw.transaction():
                written = await _written(raw, self._deliveries, [delivery.row() for delivery, _ in firsts],
                                         "delivery_id", REPLACEABLE)
                jobs = sorted((_job_values(job) for delivery, jobs in firsts if delivery.delivery_id in written
                               for job in jobs), key=lambda row: row["job_id"])
                new_jobs = await _written(raw, self._jobs, jobs, "job_id") if jobs else set()
        return _outcome(batch, written, new_jobs)

    async def close(self) -> None:
        return None


async def _written(raw: Any, prepared: Prepared, rows: list[dict[str, Any]], key: str,
                   constants: Mapping[str, Any] | None = None) -> set[str]:
    """Runs a statement of unnested arrays on the rows; the keys of the rows it wrote."""
    columns = {name: [row[name] for row in rows] for name in rows[0]} | dict(constants or {})
    return {record[key] for record in await raw.fetch(prepared.sql, *prepared.parameters(columns))}


def _unnested(table: Table, names: Sequence[str]) -> Any:
    """A SELECT of one row per element of the arrays bound for `names`, each of its column's type."""
    def column(name: str) -> Any:
        if name in JSON_COLUMNS:
            return cast(func.unnest(bindparam(NEW + name, type_=postgresql.ARRAY(Text))), JSON)
        return func.unnest(bindparam(NEW + name, type_=postgresql.ARRAY(table.c[name].type)))

    return select(*(column(name) for name in names))
