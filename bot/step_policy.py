"""What follows a step's outcome under its loop and trigger policies, and the token budgets' verdicts.

A step's `policy` may loop back to an earlier step (or itself) and may trigger another step, each when
its `when` covers the outcome and at most `max_iterations` times (CodeMachine's loop and trigger
modules). `after_step` lists what to try, in order; the caller takes the first whose target exists and
otherwise goes on with the protocol's next runnable steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Mapping


class StepOutcome(StrEnum):
    QA_FAIL = "qa_fail"  # QA rejected the work
    FAILED = "failed"  # the agent's run failed
    COMPLETED = "completed"


_QA_FAIL, _FAILED, _COMPLETED = StepOutcome.QA_FAIL, StepOutcome.FAILED, StepOutcome.COMPLETED
LOOP_FIRES: dict[str, frozenset[StepOutcome]] = {
    "qa_fail": frozenset({_QA_FAIL}),
    "failed": frozenset({_QA_FAIL, _FAILED}),
    "always": frozenset({_QA_FAIL, _FAILED, _COMPLETED}),
}
TRIGGER_FIRES: dict[str, frozenset[StepOutcome]] = {
    "failed": frozenset({_QA_FAIL, _FAILED}),
    "qa_fail": frozenset({_QA_FAIL}),
    "completed": frozenset({_COMPLETED}),
    "always": frozenset({_QA_FAIL, _FAILED, _COMPLETED}),
}
DEFAULT_MAX_ITERATIONS = 3


@dataclass(frozen=True)
class LoopBack:
    """Run again from the step named `to` (this step when no step has that name) through this one."""

    to: str


@dataclass(frozen=True)
class Trigger:
    """Run the step named `step` again (not this step itself)."""

    step: str


Next = LoopBack | Trigger


def after_step(step_name: str, policy: Mapping[str, Any], outcome: StepOutcome, *, loops: int,
               triggers: int) -> tuple[Next, ...]:
    """The moves the step's policies ask for after `outcome`, given how often each has fired."""
    moves: list[Next] = []
    loop, trigger = policy.get("loop"), policy.get("trigger")
    if loop and outcome in LOOP_FIRES.get(loop.get("when", "qa_fail"), frozenset()) and loops < _limit(loop):
        moves.append(LoopBack(str(loop.get("back_to", step_name))))
    if (trigger and trigger.get("step") and outcome in TRIGGER_FIRES.get(trigger.get("when", "failed"), frozenset())
            and triggers < _limit(trigger)):
        moves.append(Trigger(str(trigger["step"])))
    return tuple(moves)


def _limit(rule: Mapping[str, Any]) -> int:
    return int(rule.get("max_iterations", DEFAULT_MAX_ITERATIONS))


def step_budget_exceeded(tokens: int, budget: int | None, mode: str) -> str | None:
    """Whether a step's run went over its token budget (`mode` off, warn or strict)."""
    if mode == "off" or not budget or tokens <= budget:
        return None
    return f"token budget exceeded: the step used {tokens} tokens of {budget}"


def protocol_budget_exceeded(used: int, budget: int | None, mode: str) -> str | None:
    """Whether a protocol used up its budget: only a strict budget stops it."""
    if mode != "strict" or not budget or used < budget:
        return None
    return f"token budget exceeded: the protocol used {used} tokens of {budget}"
