"""A Ralph loop: the same task again and again, with the feedback commands' results, until its promise."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bot import prompts, store, workspace, worktree
from bot.agents import AgentResult, EngineNotInstalled
from bot.deps import Deps
from bot.models import Project, ProtocolRun, StepRun
from bot.plans import promise_met, render_prompt
from bot.protocols import existing_step
from bot.reporting import request_report
from bot.runs import engine_config
from bot.sandbox import SandboxUnavailable
from bot.state import kill_requested_by
from bot.steps.agent_run import protocol_budget_exceeded, run_step_agent, step_budget_exceeded, step_engine
from bot.steps.outcome import SUMMARY_CHARS, Outcome, agent_error, failed
from bot.untrusted import fence
from bot.workflow import ProtocolStatus, StepStatus

FEEDBACK_TIMEOUT_SECONDS = 600


FEEDBACK_TAIL_CHARS = 4000


FEEDBACK_OUTPUT_BYTES = 1024 * 1024


async def run_ralph(deps: Deps, project: Project, protocol: ProtocolRun, step: StepRun) -> Outcome:
    """Runs the task again and again, feeding back the feedback commands' results, until the agent's
    final message states the promise, the iterations run out, or the protocol is cancelled."""
    checkout = await workspace.prepare(deps, project, protocol)
    engine, model = step_engine(deps, project, protocol, step)
    policy = step.policy or {}
    maximum, promise = int(policy.get("max_iterations", 10)), str(policy.get("promise") or "")
    iterations = list(step.state.iterations)
    feedback_results = iterations[-1]["feedback_text"] if iterations else ""
    total = Outcome(ok=True)
    for number in range(len(iterations) + 1, maximum + 1):
        if stop := await _stop_requested(deps, protocol, step):
            _stopped(total, stop)
            break
        prompt = render_prompt(prompts.template("ralph.md"), task=fence(step.prompt or "", "the task, from the issue tracker"),
                               iteration=number,
                               max_iterations=maximum, promise=promise, feedback_results=feedback_results)
        try:
            result = await run_step_agent(deps, project, protocol, step, "ralph", engine=engine, model=model,
                                          prompt=prompt, cwd=checkout.path, kind="ralph")
        except EngineNotInstalled as exc:
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
            _stopped(total, await _stop_requested(deps, protocol, step) or Stop("cancelled"))
            break
        met = result.ok and promise_met(result.final_message, promise)
        iterations.append({"iteration": number, "exit_code": result.exit_code, "ok": result.ok, "promise_met": met,
                           "feedback": feedback, "feedback_text": feedback_results})
        await _save_iterations(deps, step.id, iterations, result)
        await request_report(deps, protocol.id, "ralph")
        total.summary = result.final_message[:SUMMARY_CHARS] or total.summary
        exceeded = (step_budget_exceeded(deps, step, step.tokens_used + total.tokens)
                    or protocol_budget_exceeded(deps, protocol, spent=total.tokens))
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


@dataclass(frozen=True)
class Stop:
    """Why a loop ends early: cancelled or paused, or stopped by someone; `by` is set when its agent
    was to be killed (the step's own stop, or a stop now), which fails the step."""

    reason: Literal["cancelled", "manual_stop"]
    by: str | None = None


async def _stop_requested(deps: Deps, protocol: ProtocolRun, step: StepRun) -> Stop | None:
    """Why the loop ends before its next iteration: the protocol was cancelled or paused, or someone
    stopped it (after this iteration, its work so far is what the pull request gets)."""
    async with deps.sessions() as session:
        current = await session.get(ProtocolRun, protocol.id)
        current_step = await session.get(StepRun, step.id)
    if current is None or current.status in (ProtocolStatus.CANCELLED, ProtocolStatus.PAUSED):
        return Stop("cancelled")
    if by := kill_requested_by(current.state, current_step.state if current_step is not None else None):
        return Stop("manual_stop", by)
    return Stop("manual_stop") if current.state.stop_requested_by else None


def _stopped(total: Outcome, stop: Stop) -> None:
    total.state["stopped"] = stop.reason
    if stop.by is not None:
        total.ok, total.stopped, total.error = False, True, f"the Ralph loop was stopped by {stop.by}"


async def _save_iterations(deps: Deps, step_id: int, iterations: list, result: AgentResult) -> None:
    async with deps.transaction() as session:
        step, protocol = await existing_step(session, step_id)
        step.state = step.state.changed(iterations=iterations)
        protocol.state = protocol.state.changed(iterations=iterations)
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
