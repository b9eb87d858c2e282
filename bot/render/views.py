"""Reading the duck-typed protocols and steps render is given, and how statuses are shown."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Protocol

from bot.workflow import DEFAULT_STEP_STATUSES, StepLike, ProtocolStatus as P, StepAction, StepStatus as S, step_for


class ProtocolView(Protocol):
    """What render reads of a protocol (a ProtocolRun, or anything shaped so). Further attributes
    (`status`, `kind`, `runtime_state`, `description`, `tokens_used`, `updated_at`) are read when present."""

    @property
    def id(self) -> int | None: ...
    @property
    def protocol_name(self) -> str: ...
    @property
    def base_branch(self) -> str: ...
    @property
    def branch(self) -> str | None: ...
    @property
    def issue_number(self) -> int | None: ...
    @property
    def pr_number(self) -> int | None: ...
    @property
    def pr_url(self) -> str | None: ...
    @property
    def engine(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def created_by(self) -> str | None: ...
    @property
    def cost_usd(self) -> float | None: ...


class StepView(StepLike, Protocol):
    """What render reads of a step (a StepRun, or anything shaped so); `runtime_state`, `summary`,
    `policy` and the rest when present."""

    @property
    def cost_usd(self) -> float | None: ...

# --- statuses -----------------------------------------------------------------------------------

PROTOCOL_EMOJI: Mapping[str, str] = MappingProxyType({
    P.PENDING: "⏳", P.PLANNING: "🧠", P.PLANNED: "📋", P.RUNNING: "🔄", P.PAUSED: "⏸️",
    P.BLOCKED: "🚧", P.FAILED: "❌", P.CANCELLED: "🚫", P.COMPLETED: "✅",
})
STEP_EMOJI: Mapping[str, str] = MappingProxyType({
    S.PENDING: "⏳", S.RUNNING: "🔄", S.NEEDS_QA: "🔍", S.COMPLETED: "✅",
    S.FAILED: "❌", S.CANCELLED: "🚫", S.BLOCKED: "🚧",
})
UNKNOWN_EMOJI = "❔"
STATUS_LABEL: Mapping[str, str] = MappingProxyType({S.NEEDS_QA: "needs QA"})

# Protocol status -> (check run status, conclusion). "paused" stays in_progress: a paused run
# resumes, and a completed check would read as final. "blocked" is completed/action_required:
# the run waits for a person (retry, approve, cancel), which is what that conclusion means.
CHECK_STATE: Mapping[str, tuple[str, str | None]] = MappingProxyType({
    P.PENDING: ("in_progress", None),
    P.PLANNING: ("in_progress", None),
    P.PLANNED: ("in_progress", None),
    P.RUNNING: ("in_progress", None),
    P.PAUSED: ("in_progress", None),
    P.BLOCKED: ("completed", "action_required"),
    P.FAILED: ("completed", "failure"),
    P.CANCELLED: ("completed", "cancelled"),
    P.COMPLETED: ("completed", "success"),
})
PLAN_ONLY_DONE = ("completed", "success")  # a `plan` protocol ends in "planned"
ATTENTION_PROTOCOL = frozenset({P.BLOCKED, P.FAILED})
RETRYABLE_STEP = frozenset(DEFAULT_STEP_STATUSES[StepAction.RETRY])
_SETTLED_STEP = frozenset({S.COMPLETED, S.CANCELLED})
# --- reading the duck-typed inputs ------------------------------------------------------------------

def value_of(item: Any) -> str:
    return str(getattr(item, "value", item) or "")


def status_of(obj: Any) -> str:
    return value_of(getattr(obj, "status", "")).lower()


def state_of(obj: Any) -> Mapping[str, Any]:
    state = getattr(obj, "runtime_state", None)
    return state if isinstance(state, Mapping) else {}


def kind_of(protocol: ProtocolView) -> str:
    return value_of(getattr(protocol, "kind", "run")).lower() or "run"


def step_number(step: StepView) -> int:
    """The 1-based number people see and type (`retry 2`); ``step_index`` is 0-based."""
    return int(getattr(step, "step_index", 0) or 0) + 1


def ordered(steps: Iterable[StepView]) -> list[StepView]:
    return sorted(steps or (), key=step_number)


def verdict_of(step: StepView) -> str | None:
    verdict = state_of(step).get("verdict")
    return str(verdict).strip().upper() if verdict else None


def failed_qa(step: StepView) -> bool:
    return verdict_of(step) == "FAIL" and status_of(step) not in _SETTLED_STEP


def qa_error(step: StepView) -> bool:
    """The step is blocked because its QA run failed before giving a verdict."""
    return status_of(step) == S.BLOCKED and bool(state_of(step).get("qa_error"))


def step_to_retry(steps: Iterable[StepView]) -> StepView | None:
    """The step a Retry button or a bare `retry` acts on (workflow.step_for)."""
    return step_for(StepAction.RETRY, steps)


def step_to_approve(steps: Iterable[StepView]) -> StepView | None:
    """The step an Approve button acts on: the first waiting for QA or failed by QA."""
    return next((s for s in ordered(steps) if status_of(s) == S.NEEDS_QA or failed_qa(s)), None)


def total_tokens(protocol: ProtocolView, steps: Sequence[StepView]) -> int:
    return int(getattr(protocol, "tokens_used", 0) or 0) or sum(int(getattr(s, "tokens_used", 0) or 0) for s in steps)


def total_cost(protocol: ProtocolView, steps: Sequence[StepView]) -> float | None:
    if (cost := getattr(protocol, "cost_usd", None)) is not None:
        return float(cost)
    costs = [float(cost) for s in steps if (cost := getattr(s, "cost_usd", None)) is not None]
    return sum(costs) if costs else None
