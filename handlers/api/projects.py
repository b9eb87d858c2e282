"""Projects: create (which queues their setup), list, read, onboarding, branches."""

from __future__ import annotations

import uuid
from pathlib import Path

from aiohttp import web
from pydantic import Field
from sqlmodel import col, or_, select

from bot import git, queue, store
from bot.models import Event, Project
from bot.paths import PathNotAllowed, allowed_roots, confine, confine_git_url
from bot.statuses import ProjectStatus
from handlers.api import answers, resources
from handlers.api.auth import hidden_projects, visible
from handlers.api.context import ACTOR, AUDIT_IDS
from handlers.api.errors import bad_request, conflict, invalid_fields, not_found
from handlers.api.lookups import project_or_404
from handlers.api.pages import decode_cursor, id_page, is_id
from handlers.api.raw import BRANCH, branch_problem, path_int, path_text
from handlers.api.requests import Body, JsonObject, Paged, page_limit
from handlers.api.routing import Route, deps_of, json_response
from handlers.keys import JOB_RUNNER


class ProjectCreate(Body):
    name: str = Field(min_length=1, max_length=200)
    git_url: str = Field(min_length=1, max_length=2000,
                         description="Clone URL or path of the repository; a path (or file:// URL) must be inside "
                                     "the data directory or AGENTRY_ALLOWED_PATHS.")
    local_path: str | None = Field(None, max_length=4096,
                                   description="Absolute path of an existing clone, used instead of cloning; inside "
                                               "the data directory or AGENTRY_ALLOWED_PATHS.")
    base_branch: str = Field("main", max_length=255, pattern=BRANCH.pattern)
    ci_provider: str | None = Field(None, max_length=50)
    default_models: JsonObject | None = Field(None, description="Engine and model per role (plan, execute, qa).")
    secrets: JsonObject | None = Field(None, description="Never returned; api_token here enables X-Project-Token.")


class OnboardingStart(Body):
    inline: bool = Field(False, description="Run the setup job in this process instead of queueing it.")


class BranchDelete(Body):
    confirm: bool = Field(False, description="Must be true.")


class ProjectPage(Paged):
    limit: int = page_limit(100, 500)


# event type -> (stage, status); agentry's setup job and the reference's names both count
EVENT_STAGES = {
    "setup_enqueued": ("queued", "completed"),
    "setup_started": ("resolve", "running"),
    "setup_cloned": ("resolve", "completed"),
    "setup_local_path_recorded": ("resolve", "completed"),
    "project_ready": ("resolve", "completed"),
    "project_setup_failed": ("resolve", "failed"),
    "setup_failed": ("resolve", "failed"),
    "setup_completed": ("ready", "completed"),
}
STAGES = (("queued", "Setup queued"), ("resolve", "Resolve/Clone"), ("ready", "Ready"))
STAGE_RANK = {"pending": 0, "running": 1, "completed": 2, "failed": 2}
SUMMARY_STATUS = {"project_ready": "completed", "setup_completed": "completed", "project_setup_failed": "failed",
                  "setup_failed": "failed", "setup_enqueued": "pending"}


async def create_project(request: web.Request) -> web.Response:
    values = ProjectCreate.given(request)
    deps = deps_of(request)
    local_path = _check_paths(values, allowed_roots(deps.settings))
    async with deps.sessions() as session:
        project = Project(name=values.name, git_url=values.git_url, local_path=local_path,
                          base_branch=values.base_branch, ci_provider=values.ci_provider,
                          default_models=values.default_models or {},
                          secrets=deps.secret_box.seal_all(values.secrets or {}))
        session.add(project)
        await session.flush()
        job = await _setup_requested(session, project, "Project setup enqueued.")
        await session.commit()
    await deps.submit([job])
    request[AUDIT_IDS] = {"project_id": project.id}
    return json_response(resources.Project.of(project))


def _check_paths(values: ProjectCreate, roots: tuple[Path, ...]) -> str | None:
    """The resolved local_path; 400 naming local_path and git_url when either is a path outside the roots."""
    local_path, problems = None, {}
    try:
        local_path = _check_local_path(values.local_path, roots)
    except PathNotAllowed as exc:
        problems["local_path"] = str(exc)
    try:
        confine_git_url(values.git_url, roots)
    except PathNotAllowed as exc:
        problems["git_url"] = str(exc)
    if problems:
        raise invalid_fields(problems)
    return local_path


def _check_local_path(local_path: str | None, roots: tuple[Path, ...]) -> str | None:
    return None if local_path is None else str(confine(local_path, roots))


async def _setup_requested(session, project: Project, message: str) -> queue.Job:
    await store.record_event(session, "setup_enqueued", message, project_id=project.id)
    return queue.project_setup_job(project.id, nonce=uuid.uuid4().hex[:12])


async def list_projects(request: web.Request) -> web.Response:
    limit = ProjectPage.given(request).limit
    after = decode_cursor(request, is_id) or 0
    async with deps_of(request).sessions() as session:
        shown = visible(col(Project.id), await hidden_projects(request, session))
        statement = select(Project).where(col(Project.id) > after, *shown)
        return await id_page(session, statement, Project, limit, resources.Project.of)


async def get_project(request: web.Request) -> web.Response:
    async with deps_of(request).sessions() as session:
        project = await project_or_404(request, session, path_int(request, "project_id"))
    return json_response(resources.Project.of(project))


# --- onboarding ----------------------------------------------------------------------------------


async def onboarding_summary(request: web.Request) -> web.Response:
    async with deps_of(request).sessions() as session:
        project = await project_or_404(request, session, path_int(request, "project_id"))
        events = await _setup_events(session, project.id)
    rendered = [resources.event(event, project_name=project.name) for event in events]
    return json_response(resources.OnboardingSummary.of(
        project_id=project.id,
        protocol_run_id=None,
        status=_summary_status(project, events),
        workspace_path=project.local_path or str(git.mirror_path(deps_of(request).settings.data_dir.resolve(),
                                                                 project.id)),
        hint=_hint(project, events),
        last_event=rendered[-1] if rendered else None,
        stages=_stages(events),
        events=rendered,
    ))


async def _setup_events(session, project_id: int) -> list[Event]:
    statement = (select(Event)
                 .where(Event.project_id == project_id,
                        or_(col(Event.event_type).startswith("setup_"), col(Event.event_type).startswith("project_")))
                 .order_by(col(Event.id).desc()).limit(100))
    return list(reversed((await session.exec(statement)).all()))


def _summary_status(project: Project, events: list[Event]) -> str:
    for event in reversed(events):
        if event.event_type in SUMMARY_STATUS:
            return SUMMARY_STATUS[event.event_type]
        if event.event_type in EVENT_STAGES:
            return "running"
    return {ProjectStatus.READY: "completed", ProjectStatus.SETUP_FAILED: "failed"}.get(project.status, "pending")


def _stages(events: list[Event]) -> list[dict]:
    stages = {key: {"key": key, "name": name, "status": "pending", "event_type": None, "message": None,
                    "created_at": None, "metadata": None} for key, name in STAGES}
    for event in events:
        key, status = EVENT_STAGES.get(event.event_type, (None, None))
        if key and STAGE_RANK[status] >= STAGE_RANK[stages[key]["status"]]:
            stages[key].update(status=status, event_type=event.event_type, message=event.message,
                               created_at=resources.iso(event.created_at), metadata=event.meta or {})
    return list(stages.values())


def _hint(project: Project, events: list[Event]) -> str | None:
    if not events:
        return f"Onboarding has not started: POST /projects/{project.id}/onboarding/actions/start."
    if events[-1].event_type == "setup_enqueued":
        return "The setup job is queued and no worker has finished it yet: is a worker running?"
    return None


async def start_onboarding(request: web.Request) -> web.Response:
    deps = deps_of(request)
    async with deps.sessions() as session:
        project = await project_or_404(request, session, path_int(request, "project_id"))
        job = await _setup_requested(session, project, "Project setup requested.")
        await session.commit()
    runner = request.app.get(JOB_RUNNER)
    if OnboardingStart.given(request).inline and runner is not None:
        return json_response(resources.action(await _run_inline(runner, job), None))
    await deps.submit([job])
    return json_response(resources.action("Project setup enqueued", job, [job]))


async def _run_inline(runner, job: queue.Job) -> str:
    try:
        await runner(job)
    except Exception as exc:  # the job's own failure, reported to the caller
        return f"Project setup ran inline and failed: {type(exc).__name__}: {exc}"
    return "Project setup ran inline."


# --- branches ------------------------------------------------------------------------------------


def _mirror_of(request: web.Request, project: Project) -> Path:
    mirror = git.mirror_path(deps_of(request).settings.data_dir.resolve(), project.id)
    if not (mirror / "HEAD").exists():
        raise conflict(f"the repository of project {project.id} is not available locally yet: run its onboarding")
    return mirror


async def list_branches(request: web.Request) -> web.Response:
    async with deps_of(request).sessions() as session:
        project = await project_or_404(request, session, path_int(request, "project_id"))
        mirror = _mirror_of(request, project)
        names = [branch["name"] for branch in await _git(git.list_branches(mirror))]
        await store.record_event(session, "branches_listed", "Listed remote branches.", project_id=project.id,
                                 meta={"branches": names[:200]})
        await session.commit()
    return json_response(resources.BranchList.of(branches=names))


async def delete_branch(request: web.Request) -> web.Response:
    branch = path_text(request, "branch")
    problem = branch_problem(branch)
    if problem:
        raise invalid_fields({"branch": problem}, "path")
    if not BranchDelete.given(request).confirm:
        raise bad_request("confirm=true required to delete a remote branch")
    async with deps_of(request).sessions() as session:
        project = await project_or_404(request, session, path_int(request, "project_id"))
        mirror = _deletable(request, project, branch)
        if branch not in [known["name"] for known in await _git(git.list_branches(mirror))]:
            raise not_found(f"the remote has no branch {branch}")
        await _git(git.delete_remote_branch(mirror, branch))
        await store.record_event(session, "branch_deleted", f"Deleted remote branch {branch}.",
                                 project_id=project.id, meta={"branch": branch, "actor": request.get(ACTOR)})
        await session.commit()
    return json_response(resources.BranchDeleted.of(deleted=True, branch=branch))


def _deletable(request: web.Request, project: Project, branch: str) -> Path:
    mirror = _mirror_of(request, project)
    if branch == project.base_branch:
        raise conflict(f"{branch} is the project's base branch; it is never deleted from the API")
    if project.forge and not project.local_path:
        raise conflict(f"branches of a {project.forge} repository need the forge's credentials, which a request "
                       "never uses; delete it on the forge")
    return mirror


async def _git(operation):
    try:
        return await operation
    except git.GitError as exc:
        raise conflict(f"git failed: {exc}") from None


PROJECT = {"project_id": "integer"}
ROUTES = [
    Route("POST", "/projects", create_project, "Create a project and queue its setup (project_setup_job)",
          "projects", answers.ok("Project"), body=ProjectCreate, write=True),
    Route("GET", "/projects", list_projects, "List projects", "projects", answers.ok_list("Project"),
          query=ProjectPage),
    Route("GET", "/projects/{project_id}", get_project, "Read a project (secrets redacted)", "projects",
          answers.ok("Project"), PROJECT),
    Route("GET", "/projects/{project_id}/onboarding", onboarding_summary, "Onboarding summary: stages and events",
          "projects", answers.ok("OnboardingSummary"), PROJECT),
    Route("POST", "/projects/{project_id}/onboarding/actions/start", start_onboarding,
          "Start (or restart) onboarding: queue project_setup_job, or run it inline", "projects",
          answers.ok("ActionResponse"), PROJECT, body=OnboardingStart, body_optional=True, write=True),
    Route("GET", "/projects/{project_id}/branches", list_branches, "Branches of the project's remote", "projects",
          {**answers.ok("BranchList"), **answers.conflict("The repository is not available locally")}, PROJECT),
    Route("POST", "/projects/{project_id}/branches/{branch}/delete", delete_branch,
          "Delete a remote branch (body {\"confirm\": true})", "projects",
          {**answers.ok("BranchDeleted"), **answers.error(404, "The remote has no such branch"),
           **answers.conflict("The repository is not available locally, or git refused")},
          {"project_id": "integer", "branch": "path"}, body=BranchDelete, body_optional=True, write=True),
]
