"""QA: a read-only agent reviews the step's diff and CI output and gives a verdict."""

from __future__ import annotations

from bot import git, prompts, workspace
from bot.agents import EngineNotInstalled
from bot.deps import Deps
from bot.models import Project, ProtocolRun, StepRun
from bot.plans import parse_verdict, render_prompt
from bot.protocols import existing_step, load_step, schedule_next, set_step_status
from bot.reporting import request_report
from bot.runs import add_artifact, finish_run
from bot.statuses import RunStatus
from bot.step_policy import StepOutcome
from bot.steps.agent_run import agent, start_agent_run, step_engine
from bot.steps.outcome import Outcome, Review, agent_error
from bot.steps.policies import account, after_failure, after_success
from bot.workflow import ProtocolStatus, StepAction, StepStatus


async def run_quality(deps: Deps, step_id: int) -> None:
    async with deps.sessions() as session:
        loaded = await load_step(session, step_id)
        if loaded is None:
            return
        step, protocol, project = loaded
    if step.status != StepStatus.NEEDS_QA or protocol.status in (ProtocolStatus.CANCELLED, ProtocolStatus.COMPLETED):
        return
    defaults = project.default_models or {}
    engine = step.state.qa_engine or defaults.get("qa_engine") or step_engine(deps, project, protocol, step)[0]
    model = step.state.qa_model or defaults.get("qa") or step_engine(deps, project, protocol, step)[1]
    run = await start_agent_run(deps, project, protocol, step, "qa", engine, model)
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
                           diff=patch, ci_output=step.state.ci_output or "No CI results for this head yet.")
    result = await agent(deps, run, engine=engine, model=model, prompt=prompt, cwd=checkout.path, kind="qa",
                         protocol=protocol, step=step, read_only=True)
    if not result.ok:
        return Review(None, agent_error(result), result.usage.total, result.cost_usd)
    verdict = parse_verdict(result.final_message)
    return Review("PASS" if verdict.passed else "FAIL", verdict.reasons, result.usage.total, result.cost_usd)


async def settle_quality(deps: Deps, step_id: int, review: Review) -> None:
    async with deps.transaction() as session:
        step, protocol = await existing_step(session, step_id)
        account(step, protocol, Outcome(ok=True, tokens=review.tokens, cost_usd=review.cost_usd))
        if step.status != StepStatus.NEEDS_QA:
            return
        jobs = await _conclude_quality(session, protocol, step, review)
    await deps.submit(jobs)
    await request_report(deps, protocol.id, "quality")


async def _conclude_quality(session, protocol: ProtocolRun, step: StepRun, review: Review) -> list:
    if review.verdict is None:
        step.state = step.state.changed(qa_error=review.reasons)
        await set_step_status(session, step, StepAction.BLOCK, actor=None, protocol=protocol,
                              message=f"{step.step_name}: QA could not run: {review.reasons}")
        return await schedule_next(session, protocol)
    passed = review.verdict == "PASS"
    step.state = step.state.changed(verdict=review.verdict, qa_reasons=review.reasons, qa_error=None,
                                    feedback="" if passed else f"QA rejected the previous attempt:\n{review.reasons}")
    if passed:
        await set_step_status(session, step, StepAction.QA_PASS, actor=None, protocol=protocol,
                              message=f"{step.step_name}: QA passed")
        return await after_success(session, protocol, step)
    await set_step_status(session, step, StepAction.QA_FAIL, actor=None, protocol=protocol,
                          message=f"{step.step_name}: QA failed")
    return await after_failure(session, protocol, step, StepOutcome.QA_FAIL)
