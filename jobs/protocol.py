"""Protocol-level jobs: project setup, planning, and the pull request."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import codemachine, git, queue, render, store
from bot.agents import AgentRequest, AgentResult, EngineNotInstalled, run_agent
from bot.deps import Deps
from bot.models import Clarification, Message, Project, ProtocolRun, StepRun, utcnow
from bot.plans import Plan, PlanError, extract_json_object, render_prompt, validate_plan
from bot.protocols import apply_protocol_action, set_protocol_status, steps_of
from bot.statuses import ClarificationStatus, ProjectStatus, RunStatus
from bot.untrusted import fence
from bot.workflow import ProtocolAction, ProtocolStatus, StepStatus
from jobs import prompts, workspace
from jobs.common import forge_of, load_protocol, repo_ref, transaction
from jobs.reporting import report_protocol
from jobs.runs import add_artifact, agent_slot, engine_config, finish_run, start_run, stop_on_cancel

log = logging.getLogger("agentry.jobs.protocol")

MESSAGES_IN_PROMPT = 50


async def project_setup_job(ctx: dict, project_id: int) -> dict:
    """Clones (or fetches) the project's repository and records its branches."""
    deps: Deps = ctx["deps"]
    async with deps.sessions() as session:
        project = await session.get(Project, project_id)
    run = await start_run(deps, job_type="project_setup_job", run_kind="setup", project_id=project_id,
                          runs_an_agent=False)
    try:
        mirror = await workspace.mirror(deps, project, await workspace.git_token(deps, project))
        branches = await git.list_branches(mirror)
        default = await git.default_branch(mirror)
    except (git.GitError, workspace.NoRepository) as exc:
        await finish_run(deps, run, status=RunStatus.FAILED, error=str(exc))
        async with transaction(deps) as session:
            await _set_project_status(session, project_id, ProjectStatus.SETUP_FAILED, str(exc))
        return {"ok": False, "error": str(exc)}
    await finish_run(deps, run, status=RunStatus.SUCCEEDED, extra={"branches": branches, "default_branch": default})
    async with transaction(deps) as session:
        await _set_project_status(session, project_id, ProjectStatus.READY, f"{len(branches)} branches, default {default}",
                                  branches=branches)
    return {"ok": True, "branches": len(branches)}


async def _set_project_status(session: AsyncSession, project_id: int, status: ProjectStatus, message: str,
                              branches: list | None = None) -> None:
    project = await session.get(Project, project_id)
    project.status = status
    project.updated_at = utcnow()
    session.add(project)
    await store.record_event(session, f"project_{status}", message, project_id=project_id,
                             meta={"branches": branches} if branches is not None else {})


# Planning


async def plan_protocol_job(ctx: dict, protocol_id: int) -> None:
    deps: Deps = ctx["deps"]
    async with deps.sessions() as session:
        protocol, project = await load_protocol(session, protocol_id)
        if protocol is None or protocol.status != ProtocolStatus.PLANNING:
            return
        messages = await messages_text(session, protocol)
    run = await start_run(deps, job_type="plan_protocol_job", run_kind="plan", project_id=project.id,
                          protocol_run_id=protocol.id, engine=protocol.engine, model=protocol.model,
                          attempt=protocol.runtime_state.get("plan_attempts", 1))
    try:
        plan, raw, result = await _ask_for_plan(deps, project, protocol, run, messages)
    except PlanFailure as failure:
        cancelled = failure.result is not None and failure.result.stopped
        await finish_run(deps, run, status=RunStatus.CANCELLED if cancelled else RunStatus.FAILED, result=failure.result,
                         error=failure.reason)
        if cancelled:
            async with transaction(deps) as session:
                _count_usage(await session.get(ProtocolRun, protocol.id), failure.result)
        else:
            await _plan_failed(deps, protocol.id, failure.reason, failure.result)
        return
    await add_artifact(deps, run, "plan.json", json.dumps(raw, indent=2), kind="plan")
    await finish_run(deps, run, status=RunStatus.SUCCEEDED, result=result, extra={"steps": len(plan.steps)})
    await _store_plan(deps, protocol.id, plan, result)
    await report_protocol(deps, protocol.id)


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
        feedback=protocol.runtime_state.get("plan_feedback", ""),
    )
    request = AgentRequest(engine=protocol.engine or deps.settings.default_engine, prompt=prompt, cwd=checkout.path,
                           kind="plan",
                           model=protocol.model, read_only=True,
                           env={"AGENTRY_PROTOCOL_ID": str(protocol.id), "AGENTRY_STEP_ID": ""})
    try:
        async with agent_slot(deps, run), stop_on_cancel(deps, protocol.id) as stop:
            result = await run_agent(request, engine_config(deps), log_path=run.log_path, stop=stop)
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
    async with transaction(deps) as session:
        protocol = await session.get(ProtocolRun, protocol_id)
        _count_usage(protocol, result)
        protocol.runtime_state = {**protocol.runtime_state, "blocked_reason": reason, "plan_failed": True,
                                  "plan_feedback": f"A previous plan was rejected:\n{reason}"}
        await set_protocol_status(session, protocol, ProtocolAction.PLAN_FAILED, actor=None, message=reason)
    await report_protocol(deps, protocol_id)


async def _store_plan(deps: Deps, protocol_id: int, plan: Plan, result: AgentResult) -> None:
    async with deps.sessions() as session:
        protocol = await session.get(ProtocolRun, protocol_id)
        _count_usage(protocol, result)
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
        protocol.runtime_state = {**protocol.runtime_state, "plan_summary": plan.summary, "blocked_reason": None}
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


async def messages_text(session: AsyncSession, protocol: ProtocolRun) -> str:
    statement = (select(Message).where(Message.protocol_run_id == protocol.id)
                 .order_by(col(Message.id).desc()).limit(MESSAGES_IN_PROMPT))
    rows = list(reversed((await session.exec(statement)).all()))
    answered = (await session.exec(select(Clarification).where(
        Clarification.protocol_run_id == protocol.id, Clarification.status == ClarificationStatus.ANSWERED))).all()
    lines = [f"- [{row.type}] {row.author or 'someone'}: {row.body}" for row in rows]
    lines += [f"- answer to {item.key} ({item.question}): {item.answer}" for item in answered]
    return "\n".join(lines)


# The pull request


async def open_pr_job(ctx: dict, protocol_id: int) -> None:
    """Opens the protocol's PR (a draft until every QA passed), or updates the one that exists."""
    deps: Deps = ctx["deps"]
    async with deps.sessions() as session:
        protocol, project = await load_protocol(session, protocol_id)
        if protocol is None or not project.forge or not protocol.head_sha:
            return
        if protocol.runtime_state.get("existing_pull"):
            return  # the pull request the protocol works on belongs to its author
        steps = await steps_of(session, protocol.id)
    forge, repo = forge_of(deps, project), repo_ref(project)
    ready = bool(steps) and all(step.status == StepStatus.COMPLETED for step in steps) and render.unmet_promise(steps) is None
    title = render.pr_title(protocol, protocol.issue_title)
    body = _pr_body(protocol, steps)
    existing = await forge.find_pull_request(repo, protocol.branch)
    if existing is None:
        pull = await forge.open_pull_request(repo, head=protocol.branch, base=protocol.base_branch, title=title,
                                             body=body, draft=not ready)
    else:
        pull = existing
        await forge.update_pull_request(repo, existing["number"], title=title, body=body)
    if ready and pull.get("draft"):
        await forge.mark_ready_for_review(repo, pull["number"])
    async with transaction(deps) as session:
        stored = await session.get(ProtocolRun, protocol_id)
        stored.pr_number, stored.pr_url = pull["number"], pull.get("url")
        stored.runtime_state = {**stored.runtime_state, "pr_error": None}
        session.add(stored)
        await store.record_event(session, "pull_request_opened" if existing is None else "pull_request_updated",
                                 f"#{pull['number']} {'ready for review' if ready else 'draft'}",
                                 project_id=project.id, protocol_run_id=protocol_id,
                                 meta={"number": pull["number"], "url": pull.get("url"), "draft": not ready})
    # Reported by a job of its own: a failure of this one is then always the pull request's.
    await deps.submit([queue.report_protocol_job(protocol_id, "pull_request")])


def _pr_body(protocol: ProtocolRun, steps: list[StepRun]) -> str:
    body = render_prompt(
        prompts.template("pr.md"), issue_number=protocol.issue_number or "",
        summary=protocol.runtime_state.get("plan_summary") or protocol.description or "",
        steps_table=render.step_table(steps, None), status_comment_url=status_comment_url(protocol),
    )
    unwanted = ([] if protocol.issue_number else ["Closes #"]) + ([] if status_comment_url(protocol) else ["Progress, QA"])
    body = "\n".join(line for line in body.splitlines() if not any(line.startswith(text) for text in unwanted))
    if (unmet := render.unmet_promise(steps)) is not None:
        body = f"{render.unmet_promise_note(unmet)}\n\n{body}"
    return render.truncate_middle(body, render.PR_BODY_MAX)


def status_comment_url(protocol: ProtocolRun) -> str:
    issue_url = protocol.runtime_state.get("issue_url")
    if not issue_url or not protocol.status_comment_id:
        return ""
    anchor = "note_" if "/-/" in issue_url else "issuecomment-"
    return f"{issue_url}#{anchor}{protocol.status_comment_id}"


async def codemachine_import_job(ctx: dict, protocol_id: int) -> None:
    """Reads a CodeMachine workspace into the protocol's steps and policies; a configuration that
    cannot be used blocks the protocol with the reason."""
    deps: Deps = ctx["deps"]
    async with transaction(deps) as session:
        protocol, project = await load_protocol(session, protocol_id)
        if protocol is None or protocol.status != ProtocolStatus.PLANNING:
            return
        workspace_path = Path(protocol.runtime_state.get("codemachine_workspace") or protocol.protocol_root or ".")
        try:
            steps = await codemachine.import_codemachine(session, project, protocol, workspace_path)
        except codemachine.ConfigError as exc:
            protocol.runtime_state = {**protocol.runtime_state, "blocked_reason": f"CodeMachine import failed: {exc}"}
            await set_protocol_status(session, protocol, ProtocolAction.PLAN_FAILED, actor=None, message=str(exc))
            return
        await set_protocol_status(session, protocol, ProtocolAction.PLAN_SUCCEEDED, actor=None,
                                  message=f"imported {len(steps)} step(s) from CodeMachine")
