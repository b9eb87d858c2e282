"""Steps of a protocol run: create, list, read, and the actions run, run_qa, approve and stop."""

from __future__ import annotations

from typing import Annotated

from aiohttp import web
from pydantic import Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot import store
from bot.models import ProtocolRun, StepRun
from bot.protocols import apply_step_action, stop_step
from bot.workflow import TERMINAL_PROTOCOL_STATUSES, QaPolicy, StepAction, StepStatus
from handlers.api import answers, resources
from handlers.api.context import ACTOR, AUDIT_IDS
from handlers.api.errors import conflict
from handlers.api.lookups import protocol_or_404, step_or_404
from handlers.api.pages import decode_cursor, is_id, page_response
from handlers.api.raw import path_int
from handlers.api.requests import Body, Paged, Policy, only, page_limit
from handlers.api.routing import Route, deps_of, json_response


class StepCreate(Body):
    step_index: int = Field(ge=0, le=10_000)
    step_name: str = Field(min_length=1, max_length=200)
    step_type: str = Field(min_length=1, max_length=50)
    status: Annotated[StepStatus, only(StepStatus.PENDING, "a new step starts pending; move it with "
                                                           "/steps/{id}/actions")] = Field(
        StepStatus.PENDING, strict=False,
        description="A new step starts pending; other states are reached through the actions.")
    model: str | None = Field(None, max_length=200)
    summary: str | None = Field(None, max_length=65_536)
    engine_id: str | None = Field(None, max_length=50)
    policy: Policy | None = Field(None, description="agentry's {loop, trigger} object, or a list of CodeMachine "
                                                    "module policies.")
    prompt: str | None = Field(None, max_length=262_144)
    qa_policy: QaPolicy = Field(QaPolicy.FULL, strict=False)
    changes_files: bool = Field(True, description="false for a check-only step; otherwise a run that changes no "
                                                  "file fails.")


class StepPage(Paged):
    limit: int = page_limit(500, 1000)


# the reference's 409 rules for the step actions, checked before the state machine's own
RUNNABLE = (StepStatus.PENDING, StepStatus.BLOCKED, StepStatus.FAILED)
NO_QA = (StepStatus.COMPLETED, StepStatus.CANCELLED)


async def create_step(request: web.Request) -> web.Response:
    values = StepCreate.given(request)
    async with deps_of(request).sessions() as session:
        protocol, _ = await protocol_or_404(request, session, path_int(request, "protocol_id"))
        step = await _insert_step(session, protocol, values)
    request[AUDIT_IDS] = {"step_run_id": step.id}
    return json_response(resources.StepRun.of(step))


async def _insert_step(session, protocol: ProtocolRun, values: StepCreate) -> StepRun:
    if protocol.status in TERMINAL_PROTOCOL_STATUSES:
        raise conflict(f"cannot add a step: the protocol is {protocol.status}")
    if await _index_taken(session, protocol.id, values.step_index):
        raise conflict(f"the protocol already has a step at index {values.step_index}")
    step = StepRun(protocol_run_id=protocol.id, step_index=values.step_index, step_name=values.step_name,
                   step_type=values.step_type, model=values.model, summary=values.summary,
                   engine_id=values.engine_id, policy=policy_object(values.policy), prompt=values.prompt,
                   qa_policy=values.qa_policy, changes_files=values.changes_files)
    session.add(step)
    try:
        await session.flush()
    except IntegrityError:
        raise conflict(f"the protocol already has a step at index {values.step_index}") from None
    await store.record_event(session, "step_created", f"{step.step_name} added", project_id=protocol.project_id,
                             protocol_run_id=protocol.id, step_run_id=step.id)
    await session.commit()
    return step


def policy_object(policy: dict | list | None) -> dict:
    """agentry keeps a step's policy as an object; a list of CodeMachine module policies goes under `codemachine`."""
    if policy is None:
        return {}
    return {"codemachine": policy} if isinstance(policy, list) else policy


async def _index_taken(session, protocol_id: int, step_index: int) -> bool:
    statement = select(StepRun.id).where(StepRun.protocol_run_id == protocol_id, StepRun.step_index == step_index)
    return (await session.exec(statement)).first() is not None


async def list_steps(request: web.Request) -> web.Response:
    limit = StepPage.given(request).limit
    after = decode_cursor(request, is_id)
    async with deps_of(request).sessions() as session:
        protocol, _ = await protocol_or_404(request, session, path_int(request, "protocol_id"))
        statement = select(StepRun).where(StepRun.protocol_run_id == protocol.id)
        if after is not None:
            statement = statement.where(col(StepRun.step_index) > after)
        steps = list((await session.exec(statement.order_by(col(StepRun.step_index)).limit(limit + 1))).all())
    return page_response(steps, limit, resources.StepRun.of, lambda step: step.step_index)


async def get_step(request: web.Request) -> web.Response:
    async with deps_of(request).sessions() as session:
        step, _, _ = await step_or_404(request, session, path_int(request, "step_id"))
    return json_response(resources.StepRun.of(step))


async def _act(request: web.Request, action: StepAction, refused: tuple, reason: str) -> tuple[StepRun, list]:
    async def apply(session, step: StepRun, protocol: ProtocolRun) -> list:
        if step.status in refused:
            raise conflict(reason)
        return await apply_step_action(session, protocol, step, action, actor=request.get(ACTOR))

    return await _operate(request, apply)


async def _operate(request: web.Request, operation) -> tuple[StepRun, list]:
    """Runs `operation(session, step, protocol)` on the path's step, commits, then queues its jobs."""
    deps = deps_of(request)
    async with deps.sessions() as session:
        step, protocol, _ = await step_or_404(request, session, path_int(request, "step_id"))
        jobs = await operation(session, step, protocol)
        await session.commit()
    await deps.submit(jobs)
    return step, jobs


def _first(jobs: list, function: str):
    return next((job for job in jobs if job.function == function), None)


async def run_step(request: web.Request) -> web.Response:
    not_runnable = tuple(status for status in StepStatus if status not in RUNNABLE)
    step, jobs = await _act(request, StepAction.RUN, not_runnable, "Step already running or completed")
    job = _first(jobs, "execute_step_job")
    return json_response(resources.action("Step execution enqueued" if job else "Step reset; it runs when its turn comes",
                                    job, jobs))


async def run_qa(request: web.Request) -> web.Response:
    _, jobs = await _act(request, StepAction.RUN_QA, NO_QA, "Step already completed or cancelled")
    return json_response(resources.action("QA enqueued", _first(jobs, "run_quality_job"), jobs))


async def approve(request: web.Request) -> web.Response:
    step, _ = await _act(request, StepAction.APPROVE, (), "")
    return json_response(resources.StepRun.of(step))


async def stop(request: web.Request) -> web.Response:
    step, _ = await _operate(request, lambda session, step, protocol: stop_step(
        session, protocol, step, actor=request.get(ACTOR)))
    return json_response(resources.StepRun.of(step))


PROTOCOL = {"protocol_id": "integer"}
STEP = {"step_id": "integer"}
STATE_CONFLICT = answers.conflict("The step's or the protocol's state does not allow the action")
ROUTES = [
    Route("POST", "/protocols/{protocol_id}/steps", create_step, "Add a step to a protocol run (nothing is queued)",
          "steps", {**answers.ok("StepRun"), **answers.conflict("The index is taken, or the protocol has ended")},
          PROTOCOL, body=StepCreate, write=True),
    Route("GET", "/protocols/{protocol_id}/steps", list_steps, "A protocol run's steps, by index", "steps",
          answers.ok_list("StepRun"), PROTOCOL, query=StepPage),
    Route("GET", "/steps/{step_id}", get_step, "Read a step run", "steps", answers.ok("StepRun"), STEP),
    Route("POST", "/steps/{step_id}/actions/run", run_step, "Run (or re-run) the step (execute_step_job)", "steps",
          {**answers.ok("ActionResponse"), **STATE_CONFLICT}, STEP, write=True),
    Route("POST", "/steps/{step_id}/actions/run_qa", run_qa, "Run QA on the step (run_quality_job)", "steps",
          {**answers.ok("ActionResponse"), **STATE_CONFLICT}, STEP, write=True),
    Route("POST", "/steps/{step_id}/actions/approve", approve, "Approve the step: completed, and the protocol moves on",
          "steps", {**answers.ok("StepRun"), **STATE_CONFLICT}, STEP, write=True),
    Route("POST", "/steps/{step_id}/actions/stop", stop, "Stop the running step now: its agent is killed, and the "
          "step fails keeping what it committed (retry runs it again)", "steps",
          {**answers.ok("StepRun"), **STATE_CONFLICT}, STEP, write=True),
]
