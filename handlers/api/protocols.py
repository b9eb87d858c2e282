"""Protocol runs: create, list, read, the actions, and CodeMachine imports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from aiohttp import web
from pydantic import Field
from sqlmodel import col, select

from bot import codemachine, git, queue, store
from bot.dependencies import MAX_DEPENDENCIES, CannotWait, checked_dependencies
from bot.models import ProtocolRun, StepRun
from bot.paths import PathNotAllowed, allowed_roots, confine
from bot.protocols import (
    RALPH_ITERATIONS,
    NotFound,
    add_code_step,
    add_step,
    apply_protocol_action,
    branch_owner,
    by_external_id,
    create_protocol,
    facts_of,
    ralph_policy,
    set_protocol_status,
    steps_of,
    stop_protocol,
)
from bot.workflow import Fact, ProtocolAction, ProtocolStatus, StepStatus
from handlers.api import answers, resources
from handlers.api.auth import hidden_projects, visible
from handlers.api.context import ACTOR, AUDIT_IDS
from handlers.api.errors import bad_request, conflict, invalid_fields, not_found
from handlers.api.lookups import project_or_404, protocol_or_404
from handlers.api.pages import decode_cursor, is_id, page_response
from handlers.api.raw import BRANCH, INT32_MAX, branch_problem, path_int
from handlers.api.requests import Body, JsonObject, Paged, only, page_limit
from handlers.api.routing import Route, deps_of, json_response

COMPATIBILITY = "Accepted for compatibility; agentry picks the worktree."


class ProtocolCreate(Body):
    protocol_name: str = Field(min_length=1, max_length=200)
    status: Annotated[ProtocolStatus, only(ProtocolStatus.PENDING, "a new protocol starts pending; move it with "
                                                                   "/protocols/{id}/actions")] = Field(
        ProtocolStatus.PENDING, strict=False,
        description="A new protocol starts pending; other states are reached through the actions.")
    base_branch: str | None = Field(None, max_length=255, pattern=BRANCH.pattern)
    worktree_path: str | None = Field(None, max_length=4096, description=COMPATIBILITY)
    protocol_root: str | None = Field(None, max_length=4096, description=COMPATIBILITY)
    description: str | None = Field(None, max_length=65_536)
    template_config: JsonObject | None = None
    template_source: JsonObject | None = None
    kind: Literal["run", "plan", "ralph", "code", "ask"] = Field(
        "run", description="run: plan, then run the steps; plan: plan only; code: one step from `prompt`, no plan; "
                           "ralph: a loop on `prompt`; ask: read-only questions.")
    prompt: str | None = Field(None, min_length=1, max_length=65_536,
                               description="The task of a code or ralph protocol (required for those kinds).")
    max_iterations: int | None = Field(None, ge=1, le=1000, description=f"ralph only; default {RALPH_ITERATIONS}.")
    completion_promise: str | None = Field(None, min_length=1, max_length=200,
                                           description="ralph only: the loop ends when the agent's final message "
                                                       "states it.")
    feedback_commands: list[Annotated[str, Field(min_length=1, max_length=1000)]] | None = Field(
        None, max_length=20, description="ralph only: commands run in the worktree after each iteration.")
    branch: str | None = Field(None, max_length=255, pattern=BRANCH.pattern,
                               description="The branch to work on (default agent/<id>-<name>): refused when another "
                                           "protocol has it or the remote already has it.")
    external_id: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:/-]+$",
                                    description="Your id for the protocol, unique in the project "
                                                "(GET /protocols?external_id= finds it).")
    depends_on: list[int] | None = Field(None, max_length=MAX_DEPENDENCIES,
                                         description="Protocols of the project that must complete before this one "
                                                     "starts; until then, started, it is blocked and says why.")
    engine: str | None = Field(None, max_length=50)
    model: str | None = Field(None, max_length=200)
    issue_number: int | None = Field(None, ge=1, le=INT32_MAX)
    policy: JsonObject | None = None


class CodeMachineImport(Body):
    protocol_name: str = Field(min_length=1, max_length=200)
    workspace_path: str = Field(min_length=1, max_length=4096,
                                description="The workspace holding .codemachine/; inside the project's local_path "
                                            "(else the data directory) and inside the data directory or "
                                            "AGENTRY_ALLOWED_PATHS.")
    base_branch: str = Field("main", max_length=255, pattern=BRANCH.pattern)
    description: str | None = Field(None, max_length=65_536)
    enqueue: bool = Field(False, description="true: queue codemachine_import_job; false: import now.")


class ProtocolPage(Paged):
    limit: int = page_limit(100, 500)


class ProtocolFilter(ProtocolPage):
    status: ProtocolStatus | None = Field(None, strict=False, description="Only runs in this state")
    external_id: str | None = Field(None, max_length=200, description="Only the run with this external_id")


# statuses from which the reference's run_next_step and retry_latest find a step to work on
NEXT_STEP_STATUSES = (StepStatus.PENDING, StepStatus.BLOCKED, StepStatus.FAILED)
RETRY_STEP_STATUSES = (StepStatus.FAILED, StepStatus.BLOCKED)


RALPH_FIELDS = ("max_iterations", "completion_promise", "feedback_commands")


def _task_problems(values: ProtocolCreate) -> dict[str, str]:
    """What the kind asks for that the body lacks, or has and may not."""
    problems = {}
    if values.kind in ("code", "ralph") and not values.prompt:
        problems["prompt"] = f"a {values.kind} protocol needs its task"
    if values.kind not in ("code", "ralph") and values.prompt:
        problems["prompt"] = "only code and ralph protocols take a prompt (the others are planned)"
    for name in RALPH_FIELDS:
        if values.kind != "ralph" and getattr(values, name) is not None:
            problems[name] = "only for ralph protocols"
    return problems


async def _add_task_step(session, protocol: ProtocolRun, values: ProtocolCreate) -> None:
    if values.kind == "code":
        await add_code_step(session, protocol, values.prompt or "")
    elif values.kind == "ralph":
        policy = ralph_policy(values.max_iterations, values.completion_promise, values.feedback_commands or ())
        await add_step(session, protocol, "ralph", values.prompt or "", step_type="ralph", policy=policy)


async def create_protocol_run(request: web.Request) -> web.Response:
    values = ProtocolCreate.given(request)
    if problems := _task_problems(values):
        raise invalid_fields(problems)
    async with deps_of(request).sessions() as session:
        project = await project_or_404(request, session, path_int(request, "project_id"))
        if values.branch is not None:
            await _check_branch(request, session, project, values.branch, values.base_branch or project.base_branch)
        try:
            depends_on = await checked_dependencies(session, project.id, values.depends_on or [])
        except (NotFound, CannotWait) as exc:
            raise invalid_fields({"depends_on": str(exc)}) from None
        if values.external_id is not None and await by_external_id(session, project.id, values.external_id):
            raise conflict(f"the project already has a protocol with external_id {values.external_id!r}")
        protocol = await create_protocol(
            session, project, title=values.protocol_name, kind=values.kind, description=values.description,
            issue_number=values.issue_number, engine=values.engine, model=values.model,
            created_by=request.get(ACTOR), base_branch=values.base_branch, policy=values.policy,
            template_config=values.template_config, branch=values.branch, depends_on=depends_on,
            external_id=values.external_id)
        protocol.template_source = values.template_source
        if values.branch is not None:
            protocol.state = protocol.state.changed(chosen_branch=True)
        await _add_task_step(session, protocol, values)
        await session.commit()
    request[AUDIT_IDS] = {"protocol_run_id": protocol.id}
    return json_response(resources.ProtocolRun.of(protocol))


async def _check_branch(request: web.Request, session, project, branch: str, base_branch: str) -> None:
    """A branch the caller chose: a valid name, not the base, and nobody's yet (no protocol's, and
    not on the remote as far as agentry's copy of it knows; the first job looks again)."""
    if problem := branch_problem(branch):
        raise invalid_fields({"branch": problem})
    if branch == base_branch:
        raise invalid_fields({"branch": "must not be the base branch"})
    if (owner := await branch_owner(session, project.id, branch)) is not None:
        raise conflict(f"branch {branch} belongs to protocol {owner.id}")
    mirror = git.mirror_path(deps_of(request).settings.data_dir.resolve(), project.id)
    if (mirror / "HEAD").exists() and branch in {known["name"] for known in await git.list_branches(mirror)}:
        raise conflict(f"the remote already has a branch {branch}; agentry works only on branches it creates")


async def list_project_protocols(request: web.Request) -> web.Response:
    async with deps_of(request).sessions() as session:
        project = await project_or_404(request, session, path_int(request, "project_id"))
        return await _protocol_page(request, session, ProtocolRun.project_id == project.id)


async def list_protocols(request: web.Request) -> web.Response:
    query = ProtocolFilter.given(request)
    conditions = [*([ProtocolRun.status == query.status] if query.status else []),
                  *([ProtocolRun.external_id == query.external_id] if query.external_id else [])]
    async with deps_of(request).sessions() as session:
        shown = visible(col(ProtocolRun.project_id), await hidden_projects(request, session))
        return await _protocol_page(request, session, *conditions, *shown)


async def _protocol_page(request: web.Request, session, *conditions) -> web.Response:
    """Newest first; the cursor is the last id of the previous page."""
    limit = ProtocolPage.given(request).limit
    before = decode_cursor(request, is_id)
    if before is not None:
        conditions = (*conditions, col(ProtocolRun.id) < before)
    statement = select(ProtocolRun).where(*conditions).order_by(col(ProtocolRun.id).desc()).limit(limit + 1)
    protocols = list((await session.exec(statement)).all())
    return page_response(protocols, limit, resources.ProtocolRun.of, lambda protocol: protocol.id)


async def get_protocol(request: web.Request) -> web.Response:
    async with deps_of(request).sessions() as session:
        protocol, _ = await protocol_or_404(request, session, path_int(request, "protocol_id"))
    return json_response(resources.ProtocolRun.of(protocol))


# --- actions -------------------------------------------------------------------------------------


async def _act(request: web.Request, action: ProtocolAction) -> tuple[ProtocolRun, list[queue.Job]]:
    """Applies `action` through the state machine, commits, then queues what follows."""
    async def apply(session, protocol: ProtocolRun) -> list[queue.Job]:
        await _precheck(session, protocol, action)
        return await apply_protocol_action(session, protocol, action, actor=request.get(ACTOR))

    return await _operate(request, apply)


async def _operate(request: web.Request, operation) -> tuple[ProtocolRun, list[queue.Job]]:
    """Runs `operation(session, protocol)` on the path's protocol, commits, then queues its jobs."""
    deps = deps_of(request)
    async with deps.sessions() as session:
        protocol, _ = await protocol_or_404(request, session, path_int(request, "protocol_id"))
        jobs = await operation(session, protocol)
        await session.commit()
    await deps.submit(jobs)
    return protocol, jobs


async def _precheck(session, protocol: ProtocolRun, action: ProtocolAction) -> None:
    """The reference's 404s: nothing to run next, nothing to retry."""
    if action not in (ProtocolAction.RUN_NEXT_STEP, ProtocolAction.RETRY_LATEST):
        return
    steps = await steps_of(session, protocol.id)
    if action is ProtocolAction.RUN_NEXT_STEP and not any(step.status in NEXT_STEP_STATUSES for step in steps):
        raise not_found("No pending or failed steps to run")
    replans = Fact.PLAN_FAILED in await facts_of(session, protocol)
    if action is ProtocolAction.RETRY_LATEST and steps and not replans and not any(
            step.status in RETRY_STEP_STATUSES for step in steps):
        running = [step for step in steps if step.status == StepStatus.RUNNING]
        if running:
            raise conflict(f"a step is still running ({running[0].step_name}); retry it once it has failed")
        raise not_found("No failed or blocked steps to retry")


def _main_job(jobs: list[queue.Job]) -> queue.Job | None:
    return next((job for job in jobs if job.function != queue.REPORT_PROTOCOL), None)


START_MESSAGES = {ProtocolStatus.PLANNING: "Protocol planning enqueued",
                  ProtocolStatus.BLOCKED: "Protocol waiting for the protocols it depends on to complete",
                  ProtocolStatus.PAUSED: "Protocol waiting for answers to its plan's blocking questions"}


async def start(request: web.Request) -> web.Response:
    protocol, jobs = await _act(request, ProtocolAction.START)
    message = START_MESSAGES.get(protocol.status, "Protocol started")
    return json_response(resources.action(message, _main_job(jobs), jobs))


async def pause(request: web.Request) -> web.Response:
    protocol, _ = await _act(request, ProtocolAction.PAUSE)
    return json_response(resources.ProtocolRun.of(protocol))


async def resume(request: web.Request) -> web.Response:
    protocol, _ = await _act(request, ProtocolAction.RESUME)
    return json_response(resources.ProtocolRun.of(protocol))


async def cancel(request: web.Request) -> web.Response:
    async with deps_of(request).sessions() as session:
        protocol, _ = await protocol_or_404(request, session, path_int(request, "protocol_id"))
    if protocol.status == ProtocolStatus.CANCELLED:
        return json_response(resources.ProtocolRun.of(protocol))
    protocol, _ = await _act(request, ProtocolAction.CANCEL)
    return json_response(resources.ProtocolRun.of(protocol))


class StopRequest(Body):
    now: bool = Field(False, description="Kill the running agent now (its step fails, keeping what it committed) "
                                         "instead of letting the running step finish.")


async def stop(request: web.Request) -> web.Response:
    now = StopRequest.given(request).now
    protocol, _ = await _operate(request, lambda session, protocol: stop_protocol(
        session, protocol, now=now, actor=request.get(ACTOR)))
    return json_response(resources.ProtocolRun.of(protocol))


async def run_next_step(request: web.Request) -> web.Response:
    _, jobs = await _act(request, ProtocolAction.RUN_NEXT_STEP)
    job = _main_job(jobs)
    return json_response(resources.action("Next step enqueued" if job else "No step can run now", job, jobs))


async def retry_latest(request: web.Request) -> web.Response:
    _, jobs = await _act(request, ProtocolAction.RETRY_LATEST)
    job = _main_job(jobs)
    return json_response(resources.action("Retry enqueued" if job else "Retried; no step can run now", job, jobs))


async def open_pr(request: web.Request) -> web.Response:
    _, jobs = await _act(request, ProtocolAction.OPEN_PR)
    return json_response(resources.action("Open PR/MR enqueued", _main_job(jobs), jobs))


# --- CodeMachine import --------------------------------------------------------------------------


async def import_codemachine(request: web.Request) -> web.Response:
    values = CodeMachineImport.given(request)
    deps = deps_of(request)
    async with deps.sessions() as session:
        project = await project_or_404(request, session, path_int(request, "project_id"))
        workspace = _workspace(request, project, values.workspace_path)
        protocol = await create_protocol(session, project, title=values.protocol_name,
                                         description=values.description, base_branch=values.base_branch,
                                         created_by=request.get(ACTOR))
        protocol.protocol_root = str(workspace / ".codemachine")
        await set_protocol_status(session, protocol, ProtocolAction.PLAN, actor=request.get(ACTOR),
                                  message="CodeMachine import")
        job, steps = await _import(session, project, protocol, workspace, values.enqueue)
        await session.commit()
    if job is not None:
        await deps.submit([job])
    request[AUDIT_IDS] = {"protocol_run_id": protocol.id}
    message = "Enqueued CodeMachine import job." if job else "Imported CodeMachine workspace."
    return json_response(resources.CodeMachineImportResponse.of(
        protocol_run=resources.ProtocolRun.of(protocol), job=resources.Job.queued(job), message=message,
        steps=[resources.StepRun.of(step) for step in steps]))


async def _import(session, project, protocol: ProtocolRun, workspace: Path, enqueue: bool):
    if enqueue:
        protocol.state = protocol.state.changed(codemachine_workspace=str(workspace))
        await store.record_event(session, "codemachine_import_enqueued", "CodeMachine import enqueued.",
                                 project_id=project.id, protocol_run_id=protocol.id, meta={"workspace": str(workspace)})
        return queue.codemachine_import_job(protocol.id), []
    try:
        steps: list[StepRun] = await codemachine.import_codemachine(session, project, protocol, workspace)
    except codemachine.ConfigError as exc:
        raise bad_request(str(exc)) from None
    await set_protocol_status(session, protocol, ProtocolAction.PLAN_SUCCEEDED, actor=None,
                              message=f"imported {len(steps)} step(s) from CodeMachine")
    return None, steps


def _workspace(request: web.Request, project, given: str) -> Path:
    """The workspace: inside the allowed roots, and inside the project's local clone (else the data directory)."""
    settings = deps_of(request).settings
    try:
        path = confine(given, allowed_roots(settings))
    except PathNotAllowed as exc:
        raise invalid_fields({"workspace_path": str(exc)}) from None
    home = Path(project.local_path or settings.data_dir).resolve()
    if not path.is_relative_to(home):
        where = "the project's local_path" if project.local_path else "agentry's data directory"
        raise invalid_fields({"workspace_path": f"must be inside {where} ({home})"})
    return path


PROJECT = {"project_id": "integer"}
PROTOCOL = {"protocol_id": "integer"}
STATE_CONFLICT = answers.conflict("The protocol's state does not allow the action")


def _action(name: str, handler, summary: str, schema: str, extra: dict | None = None) -> Route:
    return Route("POST", f"/protocols/{{protocol_id}}/actions/{name}", handler, summary, "protocols",
                 {**answers.ok(schema), **STATE_CONFLICT, **(extra or {})}, PROTOCOL, write=True)


ROUTES = [
    Route("POST", "/projects/{project_id}/protocols", create_protocol_run, "Create a protocol run (pending)",
          "protocols", {**answers.ok("ProtocolRun"),
                        **answers.conflict("Another protocol is already working on that issue")},
          PROJECT, body=ProtocolCreate, write=True),
    Route("GET", "/projects/{project_id}/protocols", list_project_protocols, "A project's protocol runs, newest first",
          "protocols", answers.ok_list("ProtocolRun"), PROJECT, query=ProtocolPage),
    Route("GET", "/protocols", list_protocols, "All protocol runs, newest first", "protocols",
          answers.ok_list("ProtocolRun"), query=ProtocolFilter),
    Route("GET", "/protocols/{protocol_id}", get_protocol, "Read a protocol run", "protocols",
          answers.ok("ProtocolRun"), PROTOCOL),
    _action("start", start, "Start: plan a pending protocol (plan_protocol_job) or run a planned one",
            "ActionResponse"),
    _action("pause", pause, "Pause: no new step starts", "ProtocolRun"),
    _action("resume", resume, "Resume a paused protocol", "ProtocolRun"),
    _action("cancel", cancel, "Cancel the protocol and its open steps (already cancelled: unchanged)",
            "ProtocolRun"),
    Route("POST", "/protocols/{protocol_id}/actions/stop", stop,
          "Stop: no step starts after the running one (now=true: its agent is killed); the protocol then completes "
          "with the work done so far in its pull request (completion_reason manual_stop), or is cancelled without any",
          "protocols", {**answers.ok("ProtocolRun"), **STATE_CONFLICT}, PROTOCOL, body=StopRequest, body_optional=True,
          write=True),
    _action("run_next_step", run_next_step, "Run the next runnable step (execute_step_job)", "ActionResponse",
            answers.error(404, "No pending, blocked or failed step")),
    _action("retry_latest", retry_latest, "Retry the latest failed or blocked step", "ActionResponse",
            answers.error(404, "No failed or blocked step")),
    _action("open_pr", open_pr, "Open or update the pull request (open_pr_job)", "ActionResponse"),
    Route("POST", "/projects/{project_id}/codemachine/import", import_codemachine,
          "Import a CodeMachine workspace as a protocol run with steps (now, or queued with enqueue=true)",
          "protocols", answers.ok("CodeMachineImportResponse"), PROJECT, body=CodeMachineImport, write=True),
]
