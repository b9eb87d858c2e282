"""Live feeds: events and messages over SSE and WebSocket, and a run's log over SSE.

The database is the truth across processes, so each process runs ONE shared tailer (`Hub.run`)
that reads new rows of `events` and `messages` by id and fans them out to the subscribers' queues,
and one follower per run log that is being watched. A subscriber is a queue and a filter: however
many are connected, the process queries the same. With no subscriber the tailer sleeps.

Rows committed out of id order (PostgreSQL hands out ids before commit) are caught by re-reading
the gaps the tailer skipped for a few seconds.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web
from pydantic import Field
from sqlalchemy import func
from sqlmodel import col, or_, select

from bot.models import CodexRun, Event, Message
from bot.statuses import FINISHED_RUN_STATUSES
from handlers.api import answers, resources
from handlers.api.auth import hidden_projects, visible
from handlers.api.context import REQUEST_ID
from handlers.api.errors import bad_request
from handlers.api.events import events_with_names, render_row
from handlers.api.lookups import project_or_404, protocol_or_404, run_or_404
from handlers.api.raw import path_int, path_text
from handlers.api.requests import Query, id_filter
from handlers.api.routing import Route, deps_of
from handlers.api.runs import open_registered
from handlers.keys import DEPS

log = logging.getLogger("agentry.api.feeds")

POLL_SECONDS = 0.25
HEARTBEAT_SECONDS = 15.0
GAP_SECONDS = 5.0
MAX_GAPS = 200
BATCH = 500
QUEUE_SIZE = 1000
LOG_CHUNK = 256 * 1024
STATUS_EVERY_SECONDS = 1.0
CLOSE, HEARTBEAT = object(), object()
HUB = web.AppKey("api_feed_hub", object)


@dataclass(frozen=True)
class Item:
    id: int
    data: dict
    text: str


@dataclass(frozen=True)
class Scope:
    """Which rows a subscriber wants: one project's, one protocol run's, or all."""

    project_id: int | None = None
    protocol_run_id: int | None = None
    hidden: frozenset[int] = frozenset()  # token-protected projects the subscriber has no token for

    def matches(self, data: dict) -> bool:
        wanted = all(data.get(key) == value for key, value in self._filters().items())
        return wanted and data.get("project_id") not in self.hidden

    def conditions(self, model) -> list:
        return [*(getattr(model, key) == value for key, value in self._filters().items()),
                *visible(col(model.project_id), self.hidden)]

    def _filters(self) -> dict:
        return {key: value for key, value in (("project_id", self.project_id),
                                              ("protocol_run_id", self.protocol_run_id)) if value is not None}


class Subscriber:
    def __init__(self, channel: str, scope: Scope) -> None:
        self.channel = channel
        self.scope = scope
        self.queue: asyncio.Queue = asyncio.Queue(QUEUE_SIZE)
        self.overflowed = False

    def offer(self, item: Any) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.overflowed = True  # the client reconnects with Last-Event-ID and replays from the database


# --- tables --------------------------------------------------------------------------------------


@dataclass
class Table:
    """One tailed table: how to read its rows after an id, and who listens."""

    read: Callable[[Any, list], Awaitable[list[Item]]]  # (session, conditions) -> items by id
    model: type
    subscribers: set = field(default_factory=set)
    cursor: int | None = None
    gaps: dict = field(default_factory=dict)  # id -> monotonic deadline
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


async def read_events(session, conditions: list) -> list[Item]:
    statement = events_with_names().where(*conditions).order_by(col(Event.id)).limit(BATCH)
    return [_item(render_row(row)) for row in (await session.exec(statement)).all()]


async def read_messages(session, conditions: list) -> list[Item]:
    statement = select(Message).where(*conditions).order_by(col(Message.id)).limit(BATCH)
    return [_item(resources.Message.of(message)) for message in (await session.exec(statement)).all()]


def _item(data: dict) -> Item:
    return Item(data["id"], data, json.dumps(data, default=str))


# --- the hub -------------------------------------------------------------------------------------


class Hub:
    def __init__(self, sessions, data_dir, *, poll_seconds: float = POLL_SECONDS) -> None:
        self.sessions = sessions
        self.data_dir = data_dir
        self.poll_seconds = poll_seconds
        self.tables = {"events": Table(read_events, Event), "messages": Table(read_messages, Message)}
        self.followers: dict[str, LogFollower] = {}
        self.polls = 0
        self.closed = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._last_heartbeat = time.monotonic()

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="api-feed-tailer")

    async def close(self) -> None:
        self.closed = True
        self._wake.set()
        for subscriber in self.all_subscribers():
            subscriber.offer(CLOSE)
        for follower in list(self.followers.values()):
            follower.stop()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def all_subscribers(self) -> list[Subscriber]:
        tables = [subscriber for table in self.tables.values() for subscriber in table.subscribers]
        return tables + [subscriber for follower in self.followers.values() for subscriber in follower.subscribers]

    async def subscribe(self, channel: str, scope: Scope) -> tuple[Subscriber, int]:
        """A new subscriber and the last id it will not get live (replay up to it from the database)."""
        table = self.tables[channel]
        async with table.lock:
            if table.cursor is None:
                table.cursor = await self._max_id(table.model)
                table.gaps = {}
            subscriber = Subscriber(channel, scope)
            table.subscribers.add(subscriber)
            snapshot = table.cursor
        self._wake.set()
        return subscriber, snapshot

    def unsubscribe(self, subscriber: Subscriber) -> None:
        table = self.tables[subscriber.channel]
        table.subscribers.discard(subscriber)
        if not table.subscribers:
            table.cursor = None

    async def backlog(self, channel: str, scope: Scope, after: int, upto: int) -> list[Item]:
        table = self.tables[channel]
        conditions = [*scope.conditions(table.model), col(table.model.id) > after, col(table.model.id) <= upto]
        async with self.sessions() as session:
            return await table.read(session, conditions)

    async def _max_id(self, model) -> int:
        async with self.sessions() as session:
            return (await session.exec(select(func.max(model.id)))).one() or 0

    async def run(self) -> None:
        while not self.closed:
            if not any(table.subscribers for table in self.tables.values()):
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                busy = await self._poll_all()
            except Exception:  # the database is away: try again, more slowly
                log.exception("feed tailer could not read")
                busy = False
                await asyncio.sleep(self.poll_seconds * 8)
            self._heartbeat_when_due()
            if not busy:
                await asyncio.sleep(self.poll_seconds)

    async def _poll_all(self) -> bool:
        busy = False
        for table in self.tables.values():
            if table.subscribers and table.cursor is not None:
                busy = await self._poll(table) or busy
        return busy

    async def _poll(self, table: Table) -> bool:
        self.polls += 1
        cursor, gaps = table.cursor, list(table.gaps)
        wanted = col(table.model.id) > cursor
        async with self.sessions() as session:
            items = await table.read(session, [or_(wanted, col(table.model.id).in_(gaps)) if gaps else wanted])
        if table.cursor != cursor:  # every subscriber left meanwhile, or a new tail started
            return False
        self._advance(table, items)
        for item in items:
            for subscriber in list(table.subscribers):
                if subscriber.scope.matches(item.data):
                    subscriber.offer(item)
        return len(items) >= BATCH

    @staticmethod
    def _advance(table: Table, items: list[Item]) -> None:
        now = time.monotonic()
        table.gaps = {gap: deadline for gap, deadline in table.gaps.items() if deadline > now}
        for item in items:
            if table.gaps.pop(item.id, None) is None and item.id > table.cursor:
                skipped = range(max(table.cursor + 1, item.id - MAX_GAPS), item.id)
                table.gaps.update({gap: now + GAP_SECONDS for gap in skipped})
                table.cursor = item.id

    def _heartbeat_when_due(self) -> None:
        if time.monotonic() - self._last_heartbeat >= HEARTBEAT_SECONDS:
            self._last_heartbeat = time.monotonic()
            for subscriber in self.all_subscribers():
                subscriber.offer(HEARTBEAT)

    # --- run logs ---

    def follow(self, run_id: str, log_path: str | None) -> tuple[Subscriber, int]:
        """A subscriber to a run's new log lines, and the byte offset from which it gets them live."""
        follower = self.followers.get(run_id)
        if follower is None:
            follower = self.followers[run_id] = LogFollower(self, run_id, log_path)
            follower.start()
        subscriber = Subscriber("log", Scope())
        follower.subscribers.add(subscriber)
        return subscriber, follower.offset

    def unfollow(self, run_id: str, subscriber: Subscriber) -> None:
        follower = self.followers.get(run_id)
        if follower is None:
            return
        follower.subscribers.discard(subscriber)
        if not follower.subscribers:
            follower.stop()


class LogFollower:
    """Reads one run's log as it grows, in whole lines, until the run has finished."""

    def __init__(self, hub: Hub, run_id: str, log_path: str | None) -> None:
        self.hub = hub
        self.run_id = run_id
        self.log_path = log_path
        self.subscribers: set[Subscriber] = set()
        self.offset = 0  # bytes handed out as whole lines
        self._fd: int | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"api-log-follower-{self.run_id}")

    def stop(self) -> None:
        if self.hub.followers.get(self.run_id) is self:
            del self.hub.followers[self.run_id]
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    async def _run(self) -> None:
        try:
            await self._follow()
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("log follower of run %s failed", self.run_id)
            self._broadcast(CLOSE)
        finally:
            self.stop()
            if self._fd is not None:
                os.close(self._fd)

    async def _follow(self) -> None:
        next_status_check = 0.0
        status = None
        while True:
            grew = await self._read_lines(final=False)
            if time.monotonic() >= next_status_check:
                status = await self._status()
                next_status_check = time.monotonic() + STATUS_EVERY_SECONDS
            if status in FINISHED_RUN_STATUSES and not grew:
                await self._read_lines(final=True)
                self._broadcast(("done", status))
                return
            if not grew:
                await asyncio.sleep(self.hub.poll_seconds * 2)

    async def _status(self) -> str | None:
        async with self.hub.sessions() as session:
            return (await session.exec(select(CodexRun.status).where(CodexRun.run_id == self.run_id))).first()

    async def _read_lines(self, final: bool) -> bool:
        if self._fd is None:
            self._fd = self._open()
            if self._fd is None:
                return False
        data = await asyncio.to_thread(os.pread, self._fd, LOG_CHUNK, self.offset)
        usable = data if final else data[: data.rfind(b"\n") + 1]
        if not usable:
            return False
        self._broadcast(("log", self.offset, usable))
        self.offset += len(usable)
        return True

    def _open(self) -> int | None:
        try:
            return open_registered(self.hub.data_dir, self.log_path or "")
        except FileNotFoundError:
            return None

    def _broadcast(self, item: Any) -> None:
        for subscriber in list(self.subscribers):
            subscriber.offer(item)


# --- writing SSE ---------------------------------------------------------------------------------


async def open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no", "X-Request-ID": request[REQUEST_ID]})
    await response.prepare(request)
    await response.write(b"retry: 2000\n\n")
    return response


def sse(data: str, *, event_id: int | None = None, event: str | None = None) -> bytes:
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines += [f"event: {event}"] if event else []
    lines += [f"data: {line}" for line in data.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


def last_event_id(request: web.Request) -> int | None:
    raw = request.headers.get("Last-Event-ID") or Resume.given(request).after
    if raw is None:
        return None
    try:
        return max(int(raw), 0)
    except ValueError:
        raise bad_request("Last-Event-ID must be the id of an event") from None


async def row_feed(request: web.Request, channel: str, scope: Scope) -> web.StreamResponse:
    """Rows after Last-Event-ID from the database, then live ones as the tailer reads them."""
    hub: Hub = request.app[HUB]
    after = last_event_id(request)
    subscriber, snapshot = await hub.subscribe(channel, scope)
    try:
        response = await open_stream(request)
        if after is not None:
            await _replay(hub, response, channel, scope, after, snapshot)
        await _pump_rows(response, subscriber)
    except ConnectionError:
        pass
    finally:
        hub.unsubscribe(subscriber)
    return response


async def _replay(hub: Hub, response, channel: str, scope: Scope, after: int, upto: int) -> None:
    for item in await backlog_all(hub, channel, scope, after, upto):
        await response.write(sse(item.text, event_id=item.id))


async def backlog_all(hub: Hub, channel: str, scope: Scope, after: int, upto: int) -> list[Item]:
    items: list[Item] = []
    while after < upto:
        batch = await hub.backlog(channel, scope, after, upto)
        if not batch:
            break
        items += batch
        after = batch[-1].id
    return items


async def _pump_rows(response: web.StreamResponse, subscriber: Subscriber) -> None:
    """Live rows until the hub closes; after an overflow the client resumes with Last-Event-ID."""
    while True:
        item = await subscriber.queue.get()
        if item is CLOSE:
            return
        if item is HEARTBEAT:
            await response.write(b": keepalive\n\n")
        else:
            await response.write(sse(item.text, event_id=item.id))
        if subscriber.overflowed:
            return


# --- routes --------------------------------------------------------------------------------------


async def _scope(request: web.Request, project_id: int | None, protocol_run_id: int | None) -> Scope:
    async with deps_of(request).sessions() as session:
        if project_id is not None:
            await project_or_404(request, session, project_id)
        if protocol_run_id is not None:
            await protocol_or_404(request, session, protocol_run_id)
        return Scope(project_id, protocol_run_id, await hidden_projects(request, session))


async def events_stream(request: web.Request) -> web.StreamResponse:
    query = FeedFilter.given(request)
    return await row_feed(request, "events", await _scope(request, query.project_id, query.protocol_run_id))


async def project_messages_stream(request: web.Request) -> web.StreamResponse:
    async with deps_of(request).sessions() as session:
        project = await project_or_404(request, session, path_int(request, "project_id"))
    return await row_feed(request, "messages", Scope(project_id=project.id))


async def protocol_messages_stream(request: web.Request) -> web.StreamResponse:
    async with deps_of(request).sessions() as session:
        protocol, _ = await protocol_or_404(request, session, path_int(request, "protocol_id"))
    return await row_feed(request, "messages", Scope(protocol_run_id=protocol.id))


async def events_socket(request: web.Request) -> web.StreamResponse:
    """The events feed as WebSocket text frames, one JSON event each."""
    query = FeedFilter.given(request)
    scope = await _scope(request, query.project_id, query.protocol_run_id)
    socket = web.WebSocketResponse(heartbeat=HEARTBEAT_SECONDS)
    if not socket.can_prepare(request).ok:
        raise bad_request("GET /ws needs a WebSocket upgrade")
    hub: Hub = request.app[HUB]
    subscriber, snapshot = await hub.subscribe("events", scope)
    try:
        await socket.prepare(request)
        listener = asyncio.create_task(_until_closed(socket, subscriber))
        if query.after is not None:
            for item in await backlog_all(hub, "events", scope, query.after, snapshot):
                await socket.send_str(item.text)
        await _pump_socket(socket, subscriber)
        listener.cancel()
    except ConnectionError:
        pass
    finally:
        hub.unsubscribe(subscriber)
        await socket.close()
    return socket


async def _until_closed(socket: web.WebSocketResponse, subscriber: Subscriber) -> None:
    async for _ in socket:
        pass  # clients only listen; what they send is ignored
    subscriber.offer(CLOSE)


async def _pump_socket(socket: web.WebSocketResponse, subscriber: Subscriber) -> None:
    while not socket.closed:
        item = await subscriber.queue.get()
        if item is CLOSE or subscriber.overflowed:
            return
        if item is not HEARTBEAT:
            await socket.send_str(item.text)


# --- the run log ---------------------------------------------------------------------------------


async def log_stream(request: web.Request) -> web.StreamResponse:
    """The log so far, then new lines as they are written, then `done` with the run's status."""
    hub: Hub = request.app[HUB]
    async with deps_of(request).sessions() as session:
        run = await run_or_404(request, session, path_text(request, "run_id"))
    start = _log_start(request)
    if run.status in FINISHED_RUN_STATUSES:
        response = await open_stream(request)
        await _send_file(request, response, run, start, None)
        await response.write(_done(run.run_id, run.status))
        return response
    subscriber, live_from = hub.follow(run.run_id, run.log_path)
    try:
        response = await open_stream(request)
        await _send_file(request, response, run, start, live_from)
        await _pump_log(response, run.run_id, subscriber, max(start, live_from))
    except ConnectionError:
        pass
    finally:
        hub.unfollow(run.run_id, subscriber)
    return response


def _log_start(request: web.Request) -> int:
    raw = request.headers.get("Last-Event-ID")
    if raw is not None:
        try:
            return max(int(raw), 0)
        except ValueError:
            raise bad_request("Last-Event-ID must be a byte offset of the log") from None
    return LogFrom.given(request).offset


async def _send_file(request: web.Request, response, run: CodexRun, start: int, end: int | None) -> None:
    """Bytes [start, end) of the log (to its end when `end` is None), cut at line ends."""
    try:
        fd = open_registered(request.app[DEPS].settings.data_dir, run.log_path or "")
    except FileNotFoundError:
        return
    try:
        offset = start
        while end is None or offset < end:
            size = LOG_CHUNK if end is None else min(LOG_CHUNK, end - offset)
            data = await asyncio.to_thread(os.pread, fd, size, offset)
            if not data:
                return
            cut = data.rfind(b"\n") + 1 if len(data) == LOG_CHUNK else len(data)
            data = data[: cut or len(data)]
            await response.write(_log_event(run.run_id, offset, data))
            offset += len(data)
    finally:
        os.close(fd)


async def _pump_log(response, run_id: str, subscriber: Subscriber, start: int) -> None:
    while True:
        item = await subscriber.queue.get()
        if item is CLOSE or subscriber.overflowed:
            return
        if item is HEARTBEAT:
            await response.write(b": keepalive\n\n")
        elif item[0] == "done":
            await response.write(_done(run_id, item[1]))
            return
        else:
            _, offset, data = item
            if offset + len(data) > start:
                skip = max(start - offset, 0)
                await response.write(_log_event(run_id, offset + skip, data[skip:]))


def _log_event(run_id: str, offset: int, data: bytes) -> bytes:
    payload = {"run_id": run_id, "offset": offset, "next_offset": offset + len(data),
               "chunk": data.decode("utf-8", "replace")}
    return sse(json.dumps(payload), event_id=offset + len(data), event="log")


def _done(run_id: str, status: str) -> bytes:
    return sse(json.dumps({"run_id": run_id, "status": status}), event="done")


# --- wiring --------------------------------------------------------------------------------------


async def start_hub(app: web.Application) -> None:
    deps = app[DEPS]
    hub = Hub(deps.sessions, deps.settings.data_dir)
    app[HUB] = hub
    hub.start()


async def stop_hub(app: web.Application) -> None:
    hub = app.get(HUB)
    if hub is not None:
        await hub.close()


class Resume(Query):
    after: int | None = id_filter("Resume after this event id (like the Last-Event-ID header)")


class FeedFilter(Resume):
    project_id: int | None = id_filter("Only this project's events")
    protocol_run_id: int | None = id_filter("Only this protocol run's events")


class LogFrom(Query):
    offset: int = Field(0, ge=0, le=2**62, description="Start at this byte offset (like the Last-Event-ID header)")


ROUTES = [
    Route("GET", "/events/stream", events_stream, "Events as Server-Sent Events (Last-Event-ID resumes)", "feeds",
          answers.stream("One `data:` JSON event per event, `id:` its id"), query=FeedFilter),
    Route("GET", "/ws", events_socket, "Events over a WebSocket, one JSON text frame each", "feeds",
          {101: answers.stream("Switching to the WebSocket protocol")[200]}, query=FeedFilter),
    Route("GET", "/codex/runs/{run_id}/logs/stream", log_stream,
          "The run's log as Server-Sent Events: the log so far, new lines, then `done` with the run's status",
          "feeds", answers.stream("`event: log` with {run_id, offset, next_offset, chunk}; `event: done`"),
          {"run_id": "string"},
          query=LogFrom),
    Route("GET", "/projects/{project_id}/messages/stream", project_messages_stream,
          "Messages on the project as Server-Sent Events", "feeds", answers.stream("One `data:` JSON message each"),
          {"project_id": "integer"}, query=Resume),
    Route("GET", "/protocols/{protocol_id}/messages/stream", protocol_messages_stream,
          "Messages on the protocol run as Server-Sent Events", "feeds",
          answers.stream("One `data:` JSON message each"), {"protocol_id": "integer"}, query=Resume),
]
