"""Runs (every job attempt), their logs and their registered artifacts.

Files are only ever opened at paths the database registered for the run, and only beneath the data
directory, one path component at a time without following symlinks: nothing a request sends
becomes a path, and a symlink an agent left in its worktree leads nowhere.
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from aiohttp import web
from pydantic import Field
from sqlmodel import and_, col, or_, select

from bot.models import CodexRun, RunArtifact
from bot.statuses import RunStatus
from handlers.api import answers, resources
from handlers.api.auth import hidden_projects, visible
from handlers.api.context import REQUEST_ID
from handlers.api.errors import ApiError, not_found
from handlers.api.lookups import project_or_404, protocol_or_404, run_or_404, step_or_404
from handlers.api.pages import decode_cursor, id_page, page_response
from handlers.api.raw import path_int, path_text
from handlers.api.requests import Paged, Query, id_filter, page_limit, text_filter
from handlers.api.routing import Route, deps_of, json_response
from handlers.api.views import parse_time

MAX_ARTIFACT_BYTES = 1_000_000
CHUNK_BYTES = 64 * 1024


class RunPage(Paged):
    run_kind: str | None = text_filter("plan, exec, qa, setup, pr, import, ralph or ask")
    limit: int = page_limit(100, 500)


class RunFilter(RunPage):
    job_type: str | None = text_filter("Only runs of this job")
    status: RunStatus | None = Field(None, strict=False, description="Only runs in this state")
    project_id: int | None = id_filter("Only this project's runs")
    protocol_run_id: int | None = id_filter("Only this protocol run's runs")
    step_run_id: int | None = id_filter("Only this step's runs")


class LogPiece(Query):
    offset: int = Field(0, ge=0, le=2**62)
    max_bytes: int = Field(65536, ge=1024, le=1_000_000)


class ArtifactPage(Paged):
    kind: str | None = text_filter("Only artifacts of this kind")
    limit: int = page_limit(100, 500)


# --- listing -------------------------------------------------------------------------------------


def _cursor_shape(value) -> bool:
    return (isinstance(value, list) and len(value) == 2 and all(isinstance(item, str) for item in value)
            and parse_time(value[0]) is not None)


async def _run_page(request: web.Request, session, *conditions) -> web.Response:
    """Newest first; the cursor is the (created_at, run_id) of the last run shown."""
    limit = RunPage.given(request).limit
    after = decode_cursor(request, _cursor_shape)
    if after is not None:
        created, run_id = parse_time(after[0]), after[1]
        conditions = (*conditions, or_(col(CodexRun.created_at) < created,
                                       and_(col(CodexRun.created_at) == created, col(CodexRun.run_id) < run_id)))
    statement = (select(CodexRun).where(*conditions)
                 .order_by(col(CodexRun.created_at).desc(), col(CodexRun.run_id).desc()).limit(limit + 1))
    runs = list((await session.exec(statement)).all())
    return page_response(runs, limit, resources.CodexRun.of, lambda run: [run.created_at.isoformat(), run.run_id])


RUN_FILTERS = ("job_type", "status", "run_kind")
ID_FILTERS = ("project_id", "protocol_run_id", "step_run_id")


async def list_runs(request: web.Request) -> web.Response:
    query = RunFilter.given(request)
    async with deps_of(request).sessions() as session:
        await _check_filters(request, session, query)
        conditions = [getattr(CodexRun, name) == getattr(query, name) for name in (*RUN_FILTERS, *ID_FILTERS)
                      if getattr(query, name) is not None]
        conditions += visible(col(CodexRun.project_id), await hidden_projects(request, session))
        return await _run_page(request, session, *conditions)


async def _check_filters(request: web.Request, session, query: RunFilter) -> None:
    """A filter on a project, protocol or step needs that project's token, when it has one."""
    if query.project_id is not None:
        await project_or_404(request, session, query.project_id)
    if query.protocol_run_id is not None:
        await protocol_or_404(request, session, query.protocol_run_id)
    if query.step_run_id is not None:
        await step_or_404(request, session, query.step_run_id)


async def protocol_runs(request: web.Request) -> web.Response:
    kind = RunPage.given(request).run_kind
    async with deps_of(request).sessions() as session:
        protocol, _ = await protocol_or_404(request, session, path_int(request, "protocol_id"))
        conditions = [CodexRun.protocol_run_id == protocol.id, *([CodexRun.run_kind == kind] if kind else [])]
        return await _run_page(request, session, *conditions)


async def step_runs(request: web.Request) -> web.Response:
    kind = RunPage.given(request).run_kind
    async with deps_of(request).sessions() as session:
        step, _, _ = await step_or_404(request, session, path_int(request, "step_id"))
        conditions = [CodexRun.step_run_id == step.id, *([CodexRun.run_kind == kind] if kind else [])]
        return await _run_page(request, session, *conditions)


async def get_run(request: web.Request) -> web.Response:
    async with deps_of(request).sessions() as session:
        run = await run_or_404(request, session, path_text(request, "run_id"))
    return json_response(resources.CodexRun.of(run))


# --- files ---------------------------------------------------------------------------------------


def open_registered(data_dir: Path, registered: str) -> int:
    """A read-only descriptor of the regular file at `registered`, which must lie beneath `data_dir`.

    Each directory on the way is opened relative to the previous one with O_NOFOLLOW, so neither a
    `..` nor a symlink (even one swapped in meanwhile) leads outside. Raises FileNotFoundError.
    """
    root = data_dir.resolve()
    target = Path(os.path.normpath(registered))
    if not target.is_absolute() or not target.is_relative_to(root) or target == root:
        raise FileNotFoundError(registered)
    parts = target.relative_to(root).parts
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            os.close(directory)
            directory = inner
        fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
    except OSError:
        raise FileNotFoundError(registered) from None
    finally:
        os.close(directory)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise FileNotFoundError(registered)
    return fd


def _open_or_404(request: web.Request, registered: str | None, what: str) -> int:
    if not registered:
        raise not_found(f"{what} path not recorded")
    try:
        return open_registered(deps_of(request).settings.data_dir, registered)
    except FileNotFoundError:
        raise not_found(f"{what} file not found") from None


def _read(fd: int, offset: int, size: int) -> bytes:
    return os.pread(fd, size, offset)


async def run_log(request: web.Request) -> web.StreamResponse:
    async with deps_of(request).sessions() as session:
        run = await run_or_404(request, session, path_text(request, "run_id"))
    fd = _open_or_404(request, run.log_path, "log")
    try:
        response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8",
                                               "X-Request-ID": request[REQUEST_ID]})
        await response.prepare(request)
        offset = 0
        while chunk := await asyncio.to_thread(_read, fd, offset, CHUNK_BYTES):
            await response.write(chunk)
            offset += len(chunk)
        await response.write_eof()
        return response
    finally:
        os.close(fd)


async def run_log_tail(request: web.Request) -> web.Response:
    query = LogPiece.given(request)
    async with deps_of(request).sessions() as session:
        run = await run_or_404(request, session, path_text(request, "run_id"))
    fd = _open_or_404(request, run.log_path, "log")
    try:
        size = os.fstat(fd).st_size
        start = min(query.offset, size)
        data = await asyncio.to_thread(_read, fd, start, query.max_bytes)
    finally:
        os.close(fd)
    end = start + len(data)
    return json_response(resources.LogTail.of(run_id=run.run_id, offset=start, next_offset=end, eof=end >= size,
                                              chunk=data.decode("utf-8", "replace")))


async def list_artifacts(request: web.Request) -> web.Response:
    query = ArtifactPage.given(request)
    async with deps_of(request).sessions() as session:
        run = await run_or_404(request, session, path_text(request, "run_id"))
        statement = select(RunArtifact).where(RunArtifact.run_id == run.run_id)
        if query.kind:
            statement = statement.where(RunArtifact.kind == query.kind)
        after = decode_cursor(request, lambda value: isinstance(value, int) and not isinstance(value, bool))
        if after is not None:
            statement = statement.where(col(RunArtifact.id) > after)
        return await id_page(session, statement, RunArtifact, query.limit, resources.RunArtifact.of)


async def artifact_content(request: web.Request) -> web.Response:
    artifact_id = path_int(request, "artifact_id")
    async with deps_of(request).sessions() as session:
        run = await run_or_404(request, session, path_text(request, "run_id"))
        artifact = await session.get(RunArtifact, artifact_id) if artifact_id is not None else None
    if artifact is None or artifact.run_id != run.run_id:
        raise not_found("Artifact not found for run")
    fd = _open_or_404(request, artifact.path, "artifact")
    try:
        if os.fstat(fd).st_size > MAX_ARTIFACT_BYTES:
            raise ApiError(413, "Artifact too large to display", limit=MAX_ARTIFACT_BYTES)
        data = await asyncio.to_thread(_read, fd, 0, MAX_ARTIFACT_BYTES + 1)
    finally:
        os.close(fd)
    return web.Response(text=data[:MAX_ARTIFACT_BYTES].decode("utf-8", "replace"), content_type="text/plain")


RUN = {"run_id": "string"}
ROUTES = [
    Route("GET", "/codex/runs", list_runs, "Runs (every job attempt), newest first, with filters", "runs",
          answers.ok_list("CodexRun"), query=RunFilter),
    Route("GET", "/protocols/{protocol_id}/runs", protocol_runs, "A protocol run's runs, newest first", "runs",
          answers.ok_list("CodexRun"), {"protocol_id": "integer"}, query=RunPage),
    Route("GET", "/steps/{step_id}/runs", step_runs, "A step's runs, newest first", "runs",
          answers.ok_list("CodexRun"), {"step_id": "integer"}, query=RunPage),
    Route("GET", "/codex/runs/{run_id}", get_run, "Read a run", "runs", answers.ok("CodexRun"), RUN),
    Route("GET", "/codex/runs/{run_id}/logs", run_log, "The run's log as plain text", "runs",
          answers.text("The log so far"), RUN),
    Route("GET", "/codex/runs/{run_id}/logs/tail", run_log_tail, "A piece of the log from a byte offset", "runs",
          answers.ok("LogTail"), RUN,
          query=LogPiece),
    Route("GET", "/codex/runs/{run_id}/artifacts", list_artifacts, "The run's registered artifacts", "runs",
          answers.ok_list("RunArtifact"), RUN,
          query=ArtifactPage),
    Route("GET", "/codex/runs/{run_id}/artifacts/{artifact_id}/content", artifact_content,
          "An artifact's content as text (at most 1 MB)", "runs",
          {**answers.text("The artifact"), **answers.error(413, "The artifact is larger than 1 MB")},
          {**RUN, "artifact_id": "integer"}),
]
