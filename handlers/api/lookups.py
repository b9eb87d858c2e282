"""Loading what a path names (a project, protocol run, step or run) with the project token check,
and the rows of a path's scope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from aiohttp import web
from sqlmodel import col, select

from bot.models import CodexRun, Project, ProtocolRun, StepRun
from handlers.api import auth
from handlers.api.errors import not_found
from handlers.api.pages import id_page
from handlers.api.raw import path_int
from handlers.api.routing import deps_of


async def project_or_404(request: web.Request, session, project_id: int | None) -> Project:
    project = await session.get(Project, project_id) if project_id is not None else None
    if project is None:
        raise not_found(f"project {request.match_info.get('project_id', project_id)} not found")
    auth.check_project_access(request, project)
    return project


async def protocol_or_404(request: web.Request, session, protocol_id: int | None) -> tuple[ProtocolRun, Project]:
    protocol = await session.get(ProtocolRun, protocol_id) if protocol_id is not None else None
    if protocol is None:
        raise not_found(f"protocol run {request.match_info.get('protocol_id', protocol_id)} not found")
    project = await project_or_404(request, session, protocol.project_id)
    return protocol, project


@dataclass(frozen=True)
class Scope:
    """What a path under /projects/{project_id} or /protocols/{protocol_id} names."""

    project: Project
    protocol: ProtocolRun | None

    def rows_of(self, model: Any) -> Any:
        """The condition selecting `model`'s rows (messages, clarifications) that belong to this scope."""
        if self.protocol is not None:
            return model.protocol_run_id == self.protocol.id
        return model.project_id == self.project.id


async def scope_or_404(request: web.Request, session) -> Scope:
    if "protocol_id" in request.match_info:
        protocol, project = await protocol_or_404(request, session, path_int(request, "protocol_id"))
        return Scope(project, protocol)
    return Scope(await project_or_404(request, session, path_int(request, "project_id")), None)


async def scoped_page(request: web.Request, model: Any, after: int, limit: int, render: Callable[[Any], dict],
                      *conditions: Any) -> web.Response:
    """One page of the `model` rows (messages, clarifications) of the path's scope with ids past `after`."""
    async with deps_of(request).sessions() as session:
        scope = await scope_or_404(request, session)
        statement = select(model).where(scope.rows_of(model), col(model.id) > after, *conditions)
        return await id_page(session, statement, model, limit, render)


async def step_or_404(request: web.Request, session, step_id: int | None) -> tuple[StepRun, ProtocolRun, Project]:
    step = await session.get(StepRun, step_id) if step_id is not None else None
    if step is None:
        raise not_found(f"step run {request.match_info.get('step_id', step_id)} not found")
    protocol, project = await protocol_or_404(request, session, step.protocol_run_id)
    return step, protocol, project


async def run_or_404(request: web.Request, session, run_id: str) -> CodexRun:
    run = await session.get(CodexRun, run_id)
    if run is None:
        raise not_found(f"run {run_id} not found")
    if run.project_id is not None:
        project = await session.get(Project, run.project_id)
        if project is not None:
            auth.check_project_access(request, project)
    return run
