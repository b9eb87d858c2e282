"""Step jobs: run an agent on a step (a plan step, a Ralph loop, or a question), then QA it.

A step is claimed with compare-and-set, so two workers never run it twice; its outcome is settled
through the state machine, and whatever follows (QA, the next step, the PR) is queued.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from bot import git, render, store, worktree
from bot.agents import AgentRequest, AgentResult, EngineNotInstalled, run_agent
from bot.deps import Deps
from bot.models import Project, ProtocolRun, StepRun
from bot.plans import parse_verdict, promise_met, render_prompt
from bot.protocols import retry_step, schedule_next, set_step_status, steps_of
from bot.sandbox import SandboxUnavailable
from bot.statuses import RunStatus
from bot.untrusted import fence
from bot.queue import run_quality_job as quality_job
from bot.workflow import ProtocolStatus, QaPolicy, StepAction, StepStatus, after_execution
from jobs import prompts, workspace
from jobs.common import forge_of, load_protocol, repo_ref, transaction
from jobs.protocol import messages_text
from jobs.reporting import report_progress, report_protocol
from jobs.runs import add_artifact, agent_slot, engine_config, finish_run, start_run, stop_on_cancel

log = logging.getLogger("agentry.jobs.step")

SUMMARY_CHARS = 4000
FEEDBACK_TIMEOUT_SECONDS = 600
FEEDBACK_TAIL_CHARS = 4000
FEEDBACK_OUTPUT_BYTES = 1024 * 1024


@dataclass
class Outcome:
    ok: bool
    error: str | None = None
    summary: str | None = None
    tokens: int = 0
    cost_usd: float | None = None
    head_sha: str | None = None
    state: dict = field(default_factory=dict)
    settle_as: StepStatus | None = None


def failed(error: str, **state) -> Outcome:
    return Outcome(ok=False, error=error, state=state)


def from_result(result: AgentResult, **fields) -> Outcome:
    return Outcome(ok=result.ok, error=None if result.ok else agent_error(result), tokens=result.usage.total,
                   cost_usd=result.cost_usd, summary=result.final_message[:SUMMARY_CHARS] or None,
                   state={"session_id": result.session_id} if result.session_id else {}, **fields)


def agent_error(result: AgentResult) -> str:
    """What went wrong, with the cause the runner found (the CLI's error or its last lines)."""
    if result.stopped:
        return f"{result.engine} was stopped: the protocol was cancelled"
    return f"{result.engine}: {result.error or f'exited with code {result.exit_code}'}"


# Execute


async def execute_step_job(ctx: dict, step_id: int) -> None:
    deps: Deps = ctx["deps"]
    async with deps.sessions() as session:
        step = await session.get(StepRun, step_id)
        if step is None:
            return
        protocol, project = await load_protocol(session, step.protocol_run_id)
        if ctx.get("taken_over") and step.status == StepStatus.RUNNING:
            await restart_taken_over_step(deps, step_id)
            return
        if protocol.status != ProtocolStatus.RUNNING or not await store.claim_step(session, step_id):
            return
        await store.record_event(session, "step_started", f"{step.step_name} started (attempt {step.retries + 1})",
                                 project_id=project.id, protocol_run_id=protocol.id, step_run_id=step.id)
        await session.commit()
    await report_progress(deps, protocol.id)
    runner = {"ralph": run_ralph, "ask": run_ask}.get(step.step_type, run_execute)
    try:
        outcome = await runner(deps, project, protocol, step)
    except asyncio.CancelledError:
        if not getattr(ctx.get("lease"), "lost", False):  # else the step is another worker's now
            await settle(deps, step_id, failed("the worker stopped while the step was running; retry it"))
        raise
    except Exception as exc:
        log.exception("step crashed")
        outcome = failed(f"agentry failed while running the step: {type(exc).__name__}: {exc}")
    await settle(deps, step_id, outcome)


async def restart_taken_over_step(deps: Deps, step_id: int) -> None:
    """The worker running the step died: the step fails visibly and runs again as a new attempt
    (from the commits it pushed; its worktree is rebuilt from the branch)."""
    async with transaction(deps) as session:
        step = await session.get(StepRun, step_id)
        protocol = await session.get(ProtocolRun, step.protocol_run_id)
        reason = "the worker running it stopped; it runs again as a new attempt"
        step.runtime_state = {**step.runtime_state, "error": reason}
        await set_step_status(session, step, StepAction.FAIL, actor=None, protocol=protocol,
                              message=f"{step.step_name}: {reason}")
        jobs = await retry_step(session, protocol, step, actor=None)
    await deps.submit([dataclasses.replace(job, urgent=True) for job in jobs])  # before work queued since


async def _start_agent_run(deps: Deps, project: Project, protocol: ProtocolRun, step: StepRun, kind: str,
                           engine: str, model: str | None):
    return await start_run(deps, job_type="execute_step_job" if kind != "qa" else "run_quality_job", run_kind=kind,
                           project_id=project.id, protocol_run_id=protocol.id, step_run_id=step.id,
                           attempt=step.retries + 1, engine=engine, model=model)


def step_engine(deps: Deps, project: Project, protocol: ProtocolRun, step: StepRun) -> tuple[str, str | None]:
    defaults = project.default_models or {}
    engine = step.engine_id or protocol.engine or defaults.get("engine") or deps.settings.default_engine
    model = step.model or protocol.model or defaults.get("execute") or deps.settings.default_model
    return engine, model


async def agent(deps: Deps, run, *, engine: str, model: str | None, prompt: str, cwd: Path, kind: str,
                protocol: ProtocolRun, step: StepRun, read_only: bool = False, session_id: str | None = None,
                home_dir: Path | None = None) -> AgentResult:
    request = AgentRequest(engine=engine, prompt=prompt, cwd=cwd, kind=kind, model=model, read_only=read_only,
                           session_id=session_id, home_dir=home_dir,
                           env={"AGENTRY_PROTOCOL_ID": str(protocol.id), "AGENTRY_STEP_ID": str(step.id)})
    worktree.take_exported_mark(cwd)  # a Ralph loop runs its agent again after exporting
    async with agent_slot(deps, run), stop_on_cancel(deps, protocol.id) as stop:
        result = await run_agent(request, engine_config(deps), log_path=run.log_path, stop=stop)
    status = RunStatus.CANCELLED if result.stopped else RunStatus.SUCCEEDED if result.ok else RunStatus.FAILED
    await finish_run(deps, run, status=status, result=result)
    return result


async def run_execute(deps: Deps, project: Project, protocol: ProtocolRun, step: StepRun) -> Outcome:
    if (exceeded := await protocol_budget_exceeded(deps, protocol)) is not None:
        return failed(exceeded)
    checkout = await workspace.prepare(deps, project, protocol)
    engine, model = step_engine(deps, project, protocol, step)
    async with deps.sessions() as session:
        prompt = render_prompt(
            prompts.template("execute.md"), step_name=step.step_name, step_prompt=step.prompt or "",
            plan_summary=protocol.runtime_state.get("plan_summary") or protocol.description or "",
            previous_steps=_previous_steps(await steps_of(session, protocol.id), step),
            feedback=step.runtime_state.get("feedback", ""),
            messages=fence(await messages_text(session, protocol), "comments and answers on the issue"),
        )
    run = await _start_agent_run(deps, project, protocol, step, "exec", engine, model)
    try:
        result = await agent(deps, run, engine=engine, model=model, prompt=prompt, cwd=checkout.path,
                             kind="execute", protocol=protocol, step=step)
    except EngineNotInstalled as exc:
        await finish_run(deps, run, status=RunStatus.FAILED, error=str(exc))
        return failed(str(exc))
    outcome = from_result(result)
    if not outcome.ok:
        return outcome
    if (exceeded := step_budget_exceeded(deps, step, outcome.tokens)) is not None:
        outcome.state["budget"] = exceeded
        if deps.settings.token_budget_mode == "strict":
            return Outcome(ok=False, error=exceeded, tokens=outcome.tokens, cost_usd=outcome.cost_usd)
    message = f"{step.step_name}\n\n{protocol.protocol_name}, step {step.step_index + 1} (attempt {step.retries + 1})"
    exported = await workspace.publish(deps, project, protocol, checkout, message)
    if step.changes_files and not exported.new_commits:
        return Outcome(ok=False, error=f"the agent changed no file ({engine} reported success: "
                                        f"{render.truncate_end(outcome.summary or 'no final message', 300)})",
                       tokens=outcome.tokens, cost_usd=outcome.cost_usd, state=outcome.state)
    outcome.head_sha = exported.head_sha
    outcome.state["commit_sha"] = exported.head_sha if exported.committed else None
    return outcome


def _previous_steps(steps: list[StepRun], current: StepRun) -> str:
    return "\n".join(f"- {step.step_name}: {step.status}" for step in steps if step.step_index < current.step_index)


def step_budget_exceeded(deps: Deps, step: StepRun, tokens: int) -> str | None:
    budget = step.policy.get("max_tokens") or deps.settings.max_tokens_per_step
    if deps.settings.token_budget_mode == "off" or not budget or tokens <= budget:
        return None
    return f"token budget exceeded: the step used {tokens} tokens of {budget}"


async def protocol_budget_exceeded(deps: Deps, protocol: ProtocolRun, spent: int = 0) -> str | None:
    """Whether the protocol used up its budget, counting `spent` tokens not yet recorded on it."""
    budget = protocol.policy.get("max_tokens_per_protocol") or deps.settings.max_tokens_per_protocol
    used = protocol.tokens_used + spent
    if deps.settings.token_budget_mode != "strict" or not budget or used < budget:
        return None
    return f"token budget exceeded: the protocol used {used} tokens of {budget}"


# Settling a step's outcome


async def settle(deps: Deps, step_id: int, outcome: Outcome) -> None:
    jobs = []
    run_light_qa = False
    async with transaction(deps) as session:
        step = await session.get(StepRun, step_id)
        protocol = await session.get(ProtocolRun, step.protocol_run_id)
        _account(step, protocol, outcome)
        if protocol.status == ProtocolStatus.CANCELLED:
            await set_step_status(session, step, StepAction.CANCEL, actor=None, protocol=protocol,
                                  message=f"{step.step_name} stopped: the protocol was cancelled")
        elif not outcome.ok:
            step.runtime_state = {**step.runtime_state, "error": outcome.error}
            await set_step_status(session, step, StepAction.FAIL, actor=None, protocol=protocol,
                                  message=f"{step.step_name} failed: {outcome.error}")
            jobs = await after_failure(session, protocol, step)
        else:
            await set_step_status(session, step, StepAction.SUCCEED, actor=None, protocol=protocol)
            policy = QaPolicy(step.qa_policy) if step.qa_policy in set(QaPolicy) else QaPolicy.FULL
            if after_execution(policy) is StepStatus.COMPLETED or outcome.settle_as is StepStatus.COMPLETED:
                await set_step_status(session, step, StepAction.QA_PASS, actor=None, protocol=protocol,
                                      message=f"{step.step_name} completed (QA {policy.value})")
                jobs = await after_success(session, protocol, step)
            elif policy is QaPolicy.LIGHT:
                run_light_qa = True
            else:
                attempt = step.runtime_state.get("qa_attempts", 0) + 1
                step.runtime_state = {**step.runtime_state, "qa_attempts": attempt}
                jobs = [quality_job(step.id, attempt)]
        await _budget_warning(deps, session, protocol, step, outcome)
    if run_light_qa:
        await run_quality(deps, step_id)
        return
    await deps.submit(jobs)
    await report_protocol(deps, protocol.id)


def _account(step: StepRun, protocol: ProtocolRun, outcome: Outcome) -> None:
    step.tokens_used += outcome.tokens
    protocol.tokens_used += outcome.tokens
    if outcome.cost_usd is not None:
        step.cost_usd = (step.cost_usd or 0) + outcome.cost_usd
        protocol.cost_usd = (protocol.cost_usd or 0) + outcome.cost_usd
    if outcome.summary:
        step.summary = outcome.summary
    if outcome.head_sha:
        protocol.head_sha = outcome.head_sha
    step.runtime_state = {**step.runtime_state, **outcome.state}


async def _budget_warning(deps: Deps, session, protocol: ProtocolRun, step: StepRun, outcome: Outcome) -> None:
    note = outcome.state.get("budget")
    if note and deps.settings.token_budget_mode == "warn":
        await store.record_event(session, "budget_exceeded", note, project_id=protocol.project_id,
                                 protocol_run_id=protocol.id, step_run_id=step.id)


LOOP_FIRES = {"qa_fail": {"qa_fail"}, "failed": {"qa_fail", "failed"}, "always": {"qa_fail", "failed", "completed"}}
TRIGGER_FIRES = {"failed": {"qa_fail", "failed"}, "qa_fail": {"qa_fail"}, "completed": {"completed"},
                 "always": {"qa_fail", "failed", "completed"}}


async def after_failure(session, protocol: ProtocolRun, step: StepRun, reason: str = "failed") -> list:
    """A failed step may loop back or trigger another step (CodeMachine-style policies); else the
    protocol blocks until a person retries or approves."""
    return await _apply_policies(session, protocol, step, reason)


async def after_success(session, protocol: ProtocolRun, step: StepRun) -> list:
    return await _apply_policies(session, protocol, step, "completed")


async def _apply_policies(session, protocol: ProtocolRun, step: StepRun, outcome: str) -> list:
    """`outcome` is qa_fail, failed (the agent's run) or completed; a policy fires when its `when` covers it."""
    policy = step.policy or {}
    loop, trigger = policy.get("loop"), policy.get("trigger")
    if loop and outcome in LOOP_FIRES.get(loop.get("when", "qa_fail"), set()):
        jobs = await _loop_back(session, protocol, step, loop)
        if jobs is not None:
            return jobs
    if trigger and trigger.get("step") and outcome in TRIGGER_FIRES.get(trigger.get("when", "failed"), set()):
        jobs = await _trigger(session, protocol, step, trigger)
        if jobs is not None:
            return jobs
    return await schedule_next(session, protocol)


async def _loop_back(session, protocol: ProtocolRun, step: StepRun, loop: dict) -> list | None:
    loops = step.runtime_state.get("loops", 0)
    if loops >= int(loop.get("max_iterations", 3)):
        return None
    steps = await steps_of(session, protocol.id)
    target = next((item for item in steps if item.step_name.lower() == str(loop.get("back_to", step.step_name)).lower()),
                  step)
    why = step.runtime_state.get("qa_reasons") or step.runtime_state.get("error") or ""
    for item in steps:
        if target.step_index <= item.step_index <= step.step_index:
            await set_step_status(session, item, StepAction.RESET, actor=None, protocol=protocol,
                                  message=f"loop policy of {step.step_name}: back to {target.step_name}")
            item.retries += 1  # a new attempt, so a new execute job id
            if why:
                item.runtime_state = {**item.runtime_state,
                                      "feedback": f"{step.step_name} was rejected, so this work is being redone:\n{why}"}
    step.runtime_state = {**step.runtime_state, "loops": loops + 1}
    return await schedule_next(session, protocol)


async def _trigger(session, protocol: ProtocolRun, step: StepRun, trigger: dict) -> list | None:
    steps = await steps_of(session, protocol.id)
    target = next((item for item in steps if item.step_name.lower() == str(trigger["step"]).lower()), None)
    fired = step.runtime_state.get("triggers", 0)
    if target is None or target.id == step.id or fired >= int(trigger.get("max_iterations", 3)):
        return None
    await set_step_status(session, target, StepAction.RESET, actor=None, protocol=protocol,
                          message=f"trigger policy of {step.step_name}: run {target.step_name}")
    target.retries += 1
    step.runtime_state = {**step.runtime_state, "triggers": fired + 1}
    return await schedule_next(session, protocol)


# QA


async def run_quality_job(ctx: dict, step_id: int) -> None:
    await run_quality(ctx["deps"], step_id)


@dataclass
class Review:
    """What a QA run concluded: a verdict, or none when QA itself could not run."""

    verdict: str | None  # PASS | FAIL | None
    reasons: str
    tokens: int = 0
    cost_usd: float | None = None


async def run_quality(deps: Deps, step_id: int) -> None:
    async with deps.sessions() as session:
        step = await session.get(StepRun, step_id)
        protocol, project = await load_protocol(session, step.protocol_run_id)
    if step.status != StepStatus.NEEDS_QA or protocol.status in (ProtocolStatus.CANCELLED, ProtocolStatus.COMPLETED):
        return
    defaults = project.default_models or {}
    engine = step.runtime_state.get("qa_engine") or defaults.get("qa_engine") or step_engine(deps, project, protocol, step)[0]
    model = step.runtime_state.get("qa_model") or defaults.get("qa") or step_engine(deps, project, protocol, step)[1]
    run = await _start_agent_run(deps, project, protocol, step, "qa", engine, model)
    try:
        review = await _review(deps, run, project, protocol, step, engine, model)
    except (EngineNotInstalled, git.GitError, workspace.NoRepository) as exc:
        await finish_run(deps, run, status=RunStatus.FAILED, error=str(exc))
        review = Review(None, str(exc))
    await add_artifact(deps, run, "verdict.txt", f"{review.verdict or 'NO VERDICT'}\n\n{review.reasons}", kind="qa")
    await settle_quality(deps, step_id, review)


async def _review(deps: Deps, run, project: Project, protocol: ProtocolRun, step: StepRun, engine: str,
                  model: str | None) -> Review:
    checkout = await workspace.prepare(deps, project, protocol)
    patch = await workspace.diff(deps, checkout, protocol.base_branch)
    prompt = render_prompt(prompts.template("qa.md"), step_name=step.step_name, step_prompt=step.prompt or "",
                           diff=patch, ci_output=step.runtime_state.get("ci_output") or "No CI results for this head yet.")
    result = await agent(deps, run, engine=engine, model=model, prompt=prompt, cwd=checkout.path, kind="qa",
                         protocol=protocol, step=step, read_only=True)
    if not result.ok:
        return Review(None, agent_error(result), result.usage.total, result.cost_usd)
    verdict = parse_verdict(result.final_message)
    return Review("PASS" if verdict.passed else "FAIL", verdict.reasons, result.usage.total, result.cost_usd)


async def settle_quality(deps: Deps, step_id: int, review: Review) -> None:
    async with transaction(deps) as session:
        step = await session.get(StepRun, step_id)
        protocol = await session.get(ProtocolRun, step.protocol_run_id)
        _account(step, protocol, Outcome(ok=True, tokens=review.tokens, cost_usd=review.cost_usd))
        if step.status != StepStatus.NEEDS_QA:
            return
        jobs = await _conclude_quality(session, protocol, step, review)
    await deps.submit(jobs)
    await report_protocol(deps, protocol.id)


async def _conclude_quality(session, protocol: ProtocolRun, step: StepRun, review: Review) -> list:
    if review.verdict is None:
        step.runtime_state = {**step.runtime_state, "qa_error": review.reasons}
        await set_step_status(session, step, StepAction.BLOCK, actor=None, protocol=protocol,
                              message=f"{step.step_name}: QA could not run: {review.reasons}")
        return await schedule_next(session, protocol)
    passed = review.verdict == "PASS"
    step.runtime_state = {**step.runtime_state, "verdict": review.verdict, "qa_reasons": review.reasons,
                          "qa_error": None,
                          "feedback": "" if passed else f"QA rejected the previous attempt:\n{review.reasons}"}
    if passed:
        await set_step_status(session, step, StepAction.QA_PASS, actor=None, protocol=protocol,
                              message=f"{step.step_name}: QA passed")
        return await after_success(session, protocol, step)
    await set_step_status(session, step, StepAction.QA_FAIL, actor=None, protocol=protocol,
                          message=f"{step.step_name}: QA failed")
    return await after_failure(session, protocol, step, reason="qa_fail")


# Ralph


async def run_ralph(deps: Deps, project: Project, protocol: ProtocolRun, step: StepRun) -> Outcome:
    """Runs the task again and again, feeding back the feedback commands' results, until the agent's
    final message states the promise, the iterations run out, or the protocol is cancelled."""
    checkout = await workspace.prepare(deps, project, protocol)
    engine, model = step_engine(deps, project, protocol, step)
    policy = step.policy or {}
    maximum, promise = int(policy.get("max_iterations", 10)), str(policy.get("promise") or "")
    iterations = list(step.runtime_state.get("iterations", []))
    feedback_results = iterations[-1]["feedback_text"] if iterations else ""
    total = Outcome(ok=True)
    for number in range(len(iterations) + 1, maximum + 1):
        if await _stop_requested(deps, protocol.id):
            total.state["stopped"] = "cancelled"
            break
        prompt = render_prompt(prompts.template("ralph.md"), task=fence(step.prompt or "", "the task, from the issue tracker"),
                               iteration=number,
                               max_iterations=maximum, promise=promise, feedback_results=feedback_results)
        run = await _start_agent_run(deps, project, protocol, step, "ralph", engine, model)
        try:
            result = await agent(deps, run, engine=engine, model=model, prompt=prompt, cwd=checkout.path,
                                 kind="ralph", protocol=protocol, step=step)
        except EngineNotInstalled as exc:
            await finish_run(deps, run, status=RunStatus.FAILED, error=str(exc))
            return failed(str(exc), iterations=iterations)
        total.tokens += result.usage.total
        total.cost_usd = (total.cost_usd or 0) + result.cost_usd if result.cost_usd is not None else total.cost_usd
        exported = await workspace.publish(deps, project, protocol, checkout, f"{step.step_name}: iteration {number}")
        checkout = workspace.Checkout(checkout.path, checkout.mirror, exported.head_sha)
        total.head_sha = exported.head_sha
        feedback = [await run_feedback(deps, command, checkout.path) for command in policy.get("feedback", [])]
        feedback_results = "\n\n".join(f"$ {item['command']}\n(exit {item['exit_code']})\n{item['output_tail']}"
                                       for item in feedback)
        if result.stopped:
            total.state["stopped"] = "cancelled"
            break
        met = result.ok and promise_met(result.final_message, promise)
        iterations.append({"iteration": number, "exit_code": result.exit_code, "ok": result.ok, "promise_met": met,
                           "feedback": feedback, "feedback_text": feedback_results})
        await _save_iterations(deps, step.id, iterations, result)
        await report_protocol(deps, protocol.id)
        total.summary = result.final_message[:SUMMARY_CHARS] or total.summary
        exceeded = (step_budget_exceeded(deps, step, step.tokens_used + total.tokens)
                    or await protocol_budget_exceeded(deps, protocol, spent=total.tokens))
        if exceeded:
            total.state["budget"] = exceeded
        if met:
            total.state["stopped"] = "promise"
            break
        if not result.ok:
            total.ok, total.error, total.state["stopped"] = False, f"iteration {number}: {agent_error(result)}", "agent_failed"
            break
        if exceeded and deps.settings.token_budget_mode == "strict":
            total.ok, total.error, total.state["stopped"] = False, exceeded, "budget"
            break
    else:
        total.state["stopped"] = "max_iterations"
    total.state["iterations"] = iterations
    total.settle_as = StepStatus.COMPLETED
    return total


async def _stop_requested(deps: Deps, protocol_id: int) -> bool:
    async with deps.sessions() as session:
        protocol = await session.get(ProtocolRun, protocol_id)
        return protocol.status in (ProtocolStatus.CANCELLED, ProtocolStatus.PAUSED)


async def _save_iterations(deps: Deps, step_id: int, iterations: list, result: AgentResult) -> None:
    async with transaction(deps) as session:
        step = await session.get(StepRun, step_id)
        protocol = await session.get(ProtocolRun, step.protocol_run_id)
        step.runtime_state = {**step.runtime_state, "iterations": iterations}
        protocol.runtime_state = {**protocol.runtime_state, "iterations": iterations}
        await store.record_event(session, "ralph_iteration", f"iteration {iterations[-1]['iteration']} finished",
                                 project_id=protocol.project_id, protocol_run_id=protocol.id, step_run_id=step.id,
                                 meta={key: value for key, value in iterations[-1].items() if key != "feedback_text"})


async def run_feedback(deps: Deps, command: str, cwd: Path) -> dict:
    """A feedback command (tests, linters) in the worktree: an argument list, never a shell."""
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        return {"command": command, "exit_code": None, "output_tail": f"cannot parse the command: {exc}"}
    if not argv:
        return {"command": command, "exit_code": None, "output_tail": "empty command"}
    try:
        done = await worktree.run_command(cwd, argv, engine_config(deps), timeout=FEEDBACK_TIMEOUT_SECONDS,
                                          limit=FEEDBACK_OUTPUT_BYTES)
    except (SandboxUnavailable, OSError) as exc:
        return {"command": command, "exit_code": None, "output_tail": f"cannot run the command: {exc}"}
    if done.timed_out:
        return {"command": command, "exit_code": None, "output_tail": "timed out"}
    text = done.stdout.decode(errors="replace") + done.stderr
    return {"command": command, "exit_code": done.returncode, "output_tail": text[-FEEDBACK_TAIL_CHARS:]}


# Ask


async def run_ask(deps: Deps, project: Project, protocol: ProtocolRun, step: StepRun) -> Outcome:
    """A read-only question; a follow-up on the same issue resumes the same agent session."""
    checkout = await workspace.prepare(deps, project, protocol)
    engine, model = step_engine(deps, project, protocol, step)
    session_id = protocol.runtime_state.get("session_id") if protocol.runtime_state.get("session_engine") == engine else None
    async with deps.sessions() as session:
        earlier = [item for item in await steps_of(session, protocol.id) if item.step_index < step.step_index]
    history = "\n\n".join(f"Q: {item.prompt}\nA: {item.summary or '(no answer)'}" for item in earlier)
    prompt = render_prompt(prompts.template("ask.md"), question=fence(step.prompt or "", "the question"),
                           history=fence(history, "earlier questions and answers") if history else "")
    home = deps.settings.data_dir.resolve() / "homes" / f"protocol-{protocol.id}-{engine}"
    home.mkdir(parents=True, exist_ok=True)
    run = await _start_agent_run(deps, project, protocol, step, "ask", engine, model)
    try:
        result = await agent(deps, run, engine=engine, model=model, prompt=prompt, cwd=checkout.path, kind="ask",
                             protocol=protocol, step=step, read_only=True, session_id=session_id, home_dir=home)
    except EngineNotInstalled as exc:
        await finish_run(deps, run, status=RunStatus.FAILED, error=str(exc))
        return failed(str(exc))
    outcome = from_result(result)
    if outcome.ok and protocol.issue_number is not None:
        note = "continues the earlier session" if session_id else None
        await forge_of(deps, project).create_comment(
            repo_ref(project), protocol.issue_number,
            render.reply_answer(step.prompt or "", result.final_message, engine=engine, session_note=note),
            is_merge_request=bool(protocol.runtime_state.get("on_pull_request")))
        await _remember_session(deps, protocol.id, engine, result.session_id)
    outcome.settle_as = StepStatus.COMPLETED
    return outcome


async def _remember_session(deps: Deps, protocol_id: int, engine: str, session_id: str | None) -> None:
    if not session_id:
        return
    async with transaction(deps) as session:
        protocol = await session.get(ProtocolRun, protocol_id)
        protocol.runtime_state = {**protocol.runtime_state, "session_id": session_id, "session_engine": engine}
        session.add(protocol)


# Maintenance: steps whose worker vanished


async def fail_stuck_steps(deps: Deps) -> int:
    """Fails steps left `running` past the step timeout (their worker died), visibly and retryably."""
    grace_minutes = deps.settings.step_timeout_seconds / 60 + 5
    async with deps.sessions() as session:
        stuck = await store.stuck_steps(session, updated_before=store.minutes_ago(grace_minutes))
    for step in stuck:
        await settle(deps, step.id, failed(
            f"no worker finished this step within {grace_minutes:.0f} minutes (the worker may have stopped); "
            f"`{deps.settings.command_prefix} retry {step.step_index + 1}` runs it again"))
    return len(stuck)

