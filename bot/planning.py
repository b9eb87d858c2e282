"""Planning a protocol: an agent reads the issue and proposes steps (or a CodeMachine workspace
is read into them); a plan that cannot be used blocks the protocol with the reason."""

from __future__ import annotations

import json
from pathlib import Path

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import codemachine, git, prompts, store, workspace
from bot.agents import AgentRequest, AgentResult, EngineNotInstalled, run_agent
from bot.deps import Deps
from bot.models import Clarification, Project, ProtocolRun, StepRun
from bot.plans import Plan, PlanError, extract_json_object, render_prompt, validate_plan
from bot.protocols import apply_protocol_action, load_protocol, messages_text, set_protocol_status, steps_of
from bot.reporting import request_report
from bot.runs import add_artifact, agent_slot, engine_config, finish_run, start_run, stop_when_asked
from bot.statuses import RunStatus
from bot.untrusted import fence
from bot.workflow import ProtocolAction, ProtocolStatus


async def plan_protocol(deps: Deps, protocol_id: int) -> None:
    async with deps.sessions() as session:
        loaded = await load_protocol(session, protocol_id)
        if loaded is None or loaded[0].status != ProtocolStatus.PLANNING:
            return
        protocol, project = loaded
        messages = await messages_text(session, protocol)
    run = await start_run(deps, job_type="plan_protocol_job", run_kind="plan", project_id=project.id,
                          protocol_run_id=protocol.id, engine=protocol.engine, model=protocol.model,
                          attempt=protocol.state.plan_attempts or 1)
    try:
        plan, raw, result = await _ask_for_plan(deps, project, protocol, run, messages)
    except PlanFailure as failure:
        cancelled = failure.result is not None and failure.result.stopped
        await finish_run(deps, run, status=RunStatus.CANCELLED if cancelled else RunStatus.FAILED, result=failure.result,
                         error=failure.reason)
        if cancelled:
            async with deps.transaction() as session:
                _count_usage(await store.row(session, ProtocolRun, protocol.id), failure.result)
        else:
            await _plan_failed(deps, protocol.id, failure.reason, failure.result)
        return
    await add_artifact(deps, run, "plan.json", json.dumps(raw, indent=2), kind="plan")
    await finish_run(deps, run, status=RunStatus.SUCCEEDED, result=result, extra={"steps": len(plan.steps)})
    await _store_plan(deps, protocol.id, plan, result)
    await request_report(deps, protocol.id, "planned")


PLAN_AWAITED = (ProtocolStatus.PLANNING, ProtocolStatus.PAUSED)  # where a finished plan is taken in


class PlanFailure(Exception):
    def __init__(self, reason: str, result: AgentResult | None = None):
        super().__init__(reason)
        self.reason = reason
        self.result = result


def _count_usage(protocol: ProtocolRun, result: AgentResult | None) -> None:
    """The plan run's tokens and cost go to the protocol's totals."""
    if result is None:
        return
    protocol.tokens_used += result.usage.total
    if result.cost_usd is not None:
        protocol.cost_usd = (protocol.cost_usd or 0) + result.cost_usd


async def _ask_for_plan(deps: Deps, project: Project, protocol: ProtocolRun, run, messages: str
                        ) -> tuple[Plan, dict, AgentResult]:
    try:
        checkout = await workspace.prepare(deps, project, protocol)
    except (git.GitError, workspace.NoRepository) as exc:
        raise PlanFailure(f"could not prepare the repository: {exc}") from None
    issue = f"issue #{protocol.issue_number}" if protocol.issue_number else "the issue"
    by = f", from {protocol.created_by}" if protocol.created_by else ""
    prompt = render_prompt(
        prompts.template("plan.md"), repository=project.forge_repo or project.name,
        issue_number=protocol.issue_number or "",
        issue_title=fence(protocol.issue_title or protocol.protocol_name or "", f"{issue} title"),
        issue_body=fence(protocol.description or "", f"{issue} body"),
        instructions=fence(str(protocol.policy.get("instructions") or ""), f"instructions for this run{by}"),
        messages=fence(messages, f"comments and answers on {issue}"),
        feedback=protocol.state.plan_feedback,
    )
    request = AgentRequest(engine=protocol.engine or deps.settings.default_engine, prompt=prompt, cwd=checkout.path,
                           kind="plan",
                           model=protocol.model, read_only=True,
                           env={"AGENTRY_PROTOCOL_ID": str(protocol.id), "AGENTRY_STEP_ID": ""})
    try:
        async with agent_slot(deps, run), stop_when_asked(deps, protocol.id) as stop:
            result = await run_agent(request, engine_config(deps), log_path=run.log_path, stop=stop.event)
    except EngineNotInstalled as exc:
        raise PlanFailure(str(exc)) from None
    if not result.ok:
        raise PlanFailure(f"the {result.engine} plan run failed: {result.error or 'no reason given'}", result)
    try:
        raw = extract_json_object(result.final_message)
        return validate_plan(raw, prompts.plan_schema()), raw, result
    except PlanError as exc:
        await add_artifact(deps, run, "plan-output.txt", result.final_message, kind="plan")
        raise PlanFailure("the plan is invalid:\n" + "\n".join(f"- {error}" for error in exc.errors),
                          result) from None


async def _plan_failed(deps: Deps, protocol_id: int, reason: str, result: AgentResult | None) -> None:
    async with deps.transaction() as session:
        protocol = await store.row(session, ProtocolRun, protocol_id)
        _count_usage(protocol, result)
        if protocol.status not in PLAN_AWAITED:
            return  # stopped or cancelled meanwhile
        protocol.state = protocol.state.changed(blocked_reason=reason, plan_failed=True,
                                                plan_feedback=f"A previous plan was rejected:\n{reason}")
        await set_protocol_status(session, protocol, ProtocolAction.PLAN_FAILED, actor=None, message=reason)
    await request_report(deps, protocol_id, "planned")


async def _store_plan(deps: Deps, protocol_id: int, plan: Plan, result: AgentResult) -> None:
    async with deps.sessions() as session:
        protocol = await store.row(session, ProtocolRun, protocol_id)
        _count_usage(protocol, result)
        if protocol.status not in PLAN_AWAITED:
            await session.commit()  # stopped or cancelled meanwhile: the plan is dropped, its cost kept
            return
        given = await steps_of(session, protocol.id)  # steps given before the plan keep their places
        first = max((step.step_index for step in given), default=-1) + 1
        for index, planned in enumerate(plan.steps, start=first):
            session.add(StepRun(
                protocol_run_id=protocol.id, step_index=index, step_name=planned.name, step_type=planned.type,
                prompt=planned.prompt, qa_policy=str(planned.qa), changes_files=planned.changes_files,
                depends_on=list(planned.depends_on),
                policy=dict(planned.policy), engine_id=planned.engine, model=planned.model,
            ))
        for question in plan.clarifications:
            session.add(Clarification(project_id=protocol.project_id, protocol_run_id=protocol.id, key=question.key,
                                      question=question.question, options=list(question.options) or None,
                                      recommended=question.recommended, blocking=question.blocking))
        protocol.state = protocol.state.changed(plan_summary=plan.summary, blocked_reason=None)
        await set_protocol_status(session, protocol, ProtocolAction.PLAN_SUCCEEDED, actor=None,
                                  message=f"planned {len(plan.steps)} steps", meta={"steps": len(plan.steps)})
        jobs = await _after_plan(session, protocol)
        await session.commit()
    await deps.submit(jobs)


async def _after_plan(session: AsyncSession, protocol: ProtocolRun) -> list:
    """A run starts on its plan (or waits for answers to the plan's blocking questions)."""
    if protocol.kind != "run" or protocol.status != ProtocolStatus.PLANNED:
        return []
    return [job for job in await apply_protocol_action(session, protocol, ProtocolAction.START, actor=None)
            if job.function != "report_protocol_job"]


async def import_codemachine_plan(deps: Deps, protocol_id: int) -> None:
    """Reads a CodeMachine workspace into the protocol's steps and policies; a configuration that
    cannot be used blocks the protocol with the reason."""
    async with deps.transaction() as session:
        loaded = await load_protocol(session, protocol_id)
        if loaded is None or loaded[0].status != ProtocolStatus.PLANNING:
            return
        protocol, project = loaded
        workspace_path = Path(protocol.state.codemachine_workspace or protocol.protocol_root or ".")
        try:
            steps = await codemachine.import_codemachine(session, project, protocol, workspace_path)
        except codemachine.ConfigError as exc:
            protocol.state = protocol.state.changed(blocked_reason=f"CodeMachine import failed: {exc}")
            await set_protocol_status(session, protocol, ProtocolAction.PLAN_FAILED, actor=None, message=str(exc))
            return
        await set_protocol_status(session, protocol, ProtocolAction.PLAN_SUCCEEDED, actor=None,
                                  message=f"imported {len(steps)} step(s) from CodeMachine")
