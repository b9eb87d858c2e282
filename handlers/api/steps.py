"""Steps of a protocol run: create, list, read, and the actions run, run_qa and approve."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from bot import store
from bot.models import ProtocolRun, StepRun
from bot.protocols import apply_step_action
from bot.workflow import TERMINAL_PROTOCOL_STATUSES, QaPolicy, StepAction, StepStatus
from handlers.api.context import ACTOR, AUDIT_IDS, BODY, QUERY
from handlers.api import answers, resources
from handlers.api.errors import conflict, invalid_fields
from handlers.api.routing import (
    Route,
    decode_cursor,
    deps_of,
    is_id,
    json_response,
    page_response,
    protocol_or_404,
    step_or_404,
)
from handlers.api.schemas import BOOLEAN, CURSOR, INTEGER, POLICY, Field, limit_param, path_int

STEP_CREATE = (
    Field("step_index", INTEGER, required=True, minimum=0, maximum=10_000),
    Field("step_name", required=True, min_length=1, max_length=200),
    Field("step_type", required=True, min_length=1, max_length=50),
    Field("status", default=StepStatus.PENDING.value, choices=tuple(status.value for status in StepStatus), nullable=False,
          description="A new step starts pending; other states are reached through the actions."),
    Field("model", max_length=200),
    Field("summary", max_length=65_536),
    Field("engine_id", max_length=50),
    Field("policy", POLICY, description="agentry's {loop, trigger} object, or a list of CodeMachine module policies."),
    Field("prompt", max_length=262_144),
    Field("qa_policy", default="full", choices=tuple(policy.value for policy in QaPolicy), nullable=False),
    Field("changes_files", BOOLEAN, default=True, nullable=False,
          description="false for a check-only step; otherwise a run that changes no file fails."),
)
# the reference's 409 rules for the step actions, checked before the state machine's own
RUNNABLE = (StepStatus.PENDING, StepStatus.BLOCKED, StepStatus.FAILED)
NO_QA = (StepStatus.COMPLETED, StepStatus.CANCELLED)


async def create_step(request: web.Request) -> web.Response:
    values = request[BODY]
    if values["status"] != StepStatus.PENDING:
        raise invalid_fields({"status": "a new step starts pending; move it with /steps/{id}/actions"})
    async with deps_of(request).sessions() as session:
        protocol, _ = await protocol_or_404(request, session, path_int(request, "protocol_id"))
        step = await _insert_step(session, protocol, values)
    request[AUDIT_IDS] = {"step_run_id": step.id}
    return json_response(resources.StepRun.of(step))


async def _insert_step(session, protocol: ProtocolRun, values: dict) -> StepRun:
    if protocol.status in TERMINAL_PROTOCOL_STATUSES:
        raise conflict(f"cannot add a step: the protocol is {protocol.status}")
    if await _index_taken(session, protocol.id, values["step_index"]):
        raise conflict(f"the protocol already has a step at index {values['step_index']}")
    step = StepRun(protocol_run_id=protocol.id, step_index=values["step_index"], step_name=values["step_name"],
                   step_type=values["step_type"], model=values["model"], summary=values["summary"],
                   engine_id=values["engine_id"], policy=policy_object(values["policy"]), prompt=values["prompt"],
                   qa_policy=values["qa_policy"], changes_files=values["changes_files"])
    session.add(step)
    try:
        await session.flush()
    except IntegrityError:
        raise conflict(f"the protocol already has a step at index {values['step_index']}") from None
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
    limit = request[QUERY]["limit"]
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
    deps = deps_of(request)
    async with deps.sessions() as session:
        step, protocol, _ = await step_or_404(request, session, path_int(request, "step_id"))
        if step.status in refused:
            raise conflict(reason)
        jobs = await apply_step_action(session, protocol, step, action, actor=request.get(ACTOR))
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


PROTOCOL = {"protocol_id": "integer"}
STEP = {"step_id": "integer"}
STATE_CONFLICT = answers.conflict("The step's or the protocol's state does not allow the action")
ROUTES = [
    Route("POST", "/protocols/{protocol_id}/steps", create_step, "Add a step to a protocol run (nothing is queued)",
          "steps", {**answers.ok("StepRun"), **answers.conflict("The index is taken, or the protocol has ended")},
          PROTOCOL, body=STEP_CREATE, write=True),
    Route("GET", "/protocols/{protocol_id}/steps", list_steps, "A protocol run's steps, by index", "steps",
          answers.ok_list("StepRun"), PROTOCOL, query=(limit_param(500, 1000), CURSOR), paginated=True),
    Route("GET", "/steps/{step_id}", get_step, "Read a step run", "steps", answers.ok("StepRun"), STEP),
    Route("POST", "/steps/{step_id}/actions/run", run_step, "Run (or re-run) the step (execute_step_job)", "steps",
          {**answers.ok("ActionResponse"), **STATE_CONFLICT}, STEP, write=True),
    Route("POST", "/steps/{step_id}/actions/run_qa", run_qa, "Run QA on the step (run_quality_job)", "steps",
          {**answers.ok("ActionResponse"), **STATE_CONFLICT}, STEP, write=True),
    Route("POST", "/steps/{step_id}/actions/approve", approve, "Approve the step: completed, and the protocol moves on",
          "steps", {**answers.ok("StepRun"), **STATE_CONFLICT}, STEP, write=True),
]
