"""What follows a settled step: its loop and trigger policies, else the protocol's next steps."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import store
from bot.deps import Deps
from bot.models import ProtocolRun, StepRun
from bot.protocols import schedule_next, set_step_status, steps_of
from bot.queue import Job
from bot.step_policy import LoopBack, StepOutcome, Trigger, after_step
from bot.steps.outcome import Outcome
from bot.workflow import StepAction


def account(step: StepRun, protocol: ProtocolRun, outcome: Outcome) -> None:
    step.tokens_used += outcome.tokens
    protocol.tokens_used += outcome.tokens
    if outcome.cost_usd is not None:
        step.cost_usd = (step.cost_usd or 0) + outcome.cost_usd
        protocol.cost_usd = (protocol.cost_usd or 0) + outcome.cost_usd
    if outcome.summary:
        step.summary = outcome.summary
    if outcome.head_sha:
        protocol.head_sha = outcome.head_sha
    step.state = step.state.changed(**outcome.state)


async def budget_warning(deps: Deps, session: AsyncSession, protocol: ProtocolRun, step: StepRun, outcome: Outcome) -> None:
    note = outcome.state.get("budget")
    if note and deps.settings.token_budget_mode == "warn":
        await store.record_event(session, "budget_exceeded", note, project_id=protocol.project_id,
                                 protocol_run_id=protocol.id, step_run_id=step.id)


async def after_failure(session: AsyncSession, protocol: ProtocolRun, step: StepRun,
                        outcome: StepOutcome = StepOutcome.FAILED) -> list[Job]:
    """A failed step may loop back or trigger another step (CodeMachine-style policies); else the
    protocol blocks until a person retries or approves."""
    return await _apply_policies(session, protocol, step, outcome)


async def after_success(session: AsyncSession, protocol: ProtocolRun, step: StepRun) -> list[Job]:
    return await _apply_policies(session, protocol, step, StepOutcome.COMPLETED)


async def _apply_policies(session: AsyncSession, protocol: ProtocolRun, step: StepRun, outcome: StepOutcome) -> list[Job]:
    moves = after_step(step.step_name, step.policy or {}, outcome, loops=step.state.loops,
                       triggers=step.state.triggers)
    steps = await steps_of(session, protocol.id) if moves else []
    for move in moves:
        if isinstance(move, LoopBack):
            await _loop_back(session, protocol, step, steps, move)
            break
        if await _trigger(session, protocol, step, steps, move):
            break
    return await schedule_next(session, protocol)


def _named(steps: list[StepRun], name: str) -> StepRun | None:
    return next((item for item in steps if item.step_name.lower() == name.lower()), None)


async def _loop_back(session: AsyncSession, protocol: ProtocolRun, step: StepRun, steps: list[StepRun],
                     move: LoopBack) -> None:
    target = _named(steps, move.to) or step
    why = step.state.qa_reasons or step.state.error or ""
    for item in steps:
        if target.step_index <= item.step_index <= step.step_index:
            await set_step_status(session, item, StepAction.RESET, actor=None, protocol=protocol,
                                  message=f"loop policy of {step.step_name}: back to {target.step_name}")
            item.retries += 1  # a new attempt, so a new execute job id
            if why:
                item.state = item.state.changed(
                    feedback=f"{step.step_name} was rejected, so this work is being redone:\n{why}")
    step.state = step.state.changed(loops=step.state.loops + 1)


async def _trigger(session: AsyncSession, protocol: ProtocolRun, step: StepRun, steps: list[StepRun],
                   move: Trigger) -> bool:
    target = _named(steps, move.step)
    if target is None or target.id == step.id:
        return False
    await set_step_status(session, target, StepAction.RESET, actor=None, protocol=protocol,
                          message=f"trigger policy of {step.step_name}: run {target.step_name}")
    target.retries += 1
    step.state = step.state.changed(triggers=step.state.triggers + 1)
    return True
