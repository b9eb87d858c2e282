"""A plan step: the agent works in the protocol's worktree and its commits are pushed."""

from __future__ import annotations

from bot import prompts, render, workspace
from bot.agents import EngineNotInstalled
from bot.deps import Deps
from bot.models import Project, ProtocolRun, StepRun
from bot.plans import render_prompt
from bot.protocols import messages_text, steps_of
from bot.steps.agent_run import protocol_budget_exceeded, run_step_agent, step_budget_exceeded, step_engine
from bot.steps.outcome import Outcome, failed, from_result
from bot.untrusted import fence


async def run_execute(deps: Deps, project: Project, protocol: ProtocolRun, step: StepRun) -> Outcome:
    if (exceeded := protocol_budget_exceeded(deps, protocol)) is not None:
        return failed(exceeded)
    checkout = await workspace.prepare(deps, project, protocol)
    engine, model = step_engine(deps, project, protocol, step)
    async with deps.sessions() as session:
        prompt = render_prompt(
            prompts.template("execute.md"), step_name=step.step_name, step_prompt=step.prompt or "",
            plan_summary=protocol.state.plan_summary or _unplanned_summary(protocol),
            previous_steps=_previous_steps(await steps_of(session, protocol.id), step),
            feedback=step.state.feedback,
            messages=fence(await messages_text(session, protocol), "comments and answers on the issue"),
        )
    try:
        result = await run_step_agent(deps, project, protocol, step, "exec", engine=engine, model=model, prompt=prompt,
                                      cwd=checkout.path, kind="execute")
    except EngineNotInstalled as exc:
        return failed(str(exc))
    outcome = from_result(result)
    if outcome.stopped:
        return await _kept(deps, project, protocol, step, checkout, outcome, result.error or "stopped")
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


def _unplanned_summary(protocol: ProtocolRun) -> str:
    """A protocol with no plan (a `code` task) is summed up by its issue: text from the tracker."""
    issue = "\n\n".join(part for part in (protocol.issue_title, protocol.description) if part)
    return fence(issue, "the issue, from the issue tracker") if issue else ""


async def _kept(deps: Deps, project: Project, protocol: ProtocolRun, step: StepRun, checkout: workspace.Checkout,
                outcome: Outcome, reason: str) -> Outcome:
    """A stopped step's work so far goes to the branch, for the pull request or its next attempt."""
    message = f"{step.step_name} (unfinished: {reason})\n\n{protocol.protocol_name}, step {step.step_index + 1}"
    exported = await workspace.publish(deps, project, protocol, checkout, message)
    if exported.new_commits:
        outcome.head_sha = exported.head_sha
        outcome.state["commit_sha"] = exported.head_sha
    return outcome


def _previous_steps(steps: list[StepRun], current: StepRun) -> str:
    return "\n".join(f"- {step.step_name}: {step.status}" for step in steps if step.step_index < current.step_index)
