"""The protocol and step state machines: every allowed transition, in one table per kind.

Pure: no I/O. Callers move a protocol run or a step with :func:`transition`; an action that is not
allowed raises :class:`TransitionError`, whose text is the reply for a 409 or a GitHub comment, and
the caller changes nothing.

Semantics the tables encode:

- ``paused`` stops new steps from starting; a step already running finishes and records its own
  outcome. On ``resume`` the protocol is ``running`` again and the caller settles it with
  :func:`protocol_outcome` / :func:`next_runnable_steps`.
- ``completed`` and ``cancelled`` are terminal, with one exception: ``block`` reopens a
  ``completed`` protocol, for CI failing on its branch after the last step completed but before
  the PR merged. ``failed`` is not terminal: it can be retried, re-planned or cancelled.
- ``open_pr`` never changes the protocol's status; the table only says when a PR may be opened.
- A few moves depend on more than the status: those are :data:`PROTOCOL_RULES`, each naming the
  :class:`Fact` it needs, and they come before the plain table. Starting a protocol that already
  has steps runs them (no plan); starting a planned one whose plan asked a blocking question waits
  for the answer; retrying after a failed plan, or with no steps at all, plans again; a blocked
  protocol whose steps can go on again (a late QA pass, an approval) runs again. One that depends
  on protocols not yet completed is blocked when started, and stays so until they are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol, TypeVar


class ProtocolStatus(StrEnum):
    PENDING = "pending"
    PLANNING = "planning"
    PLANNED = "planned"
    RUNNING = "running"
    PAUSED = "paused"
    BLOCKED = "blocked"
    FAILED = "failed"
    CANCELLED = "cancelled"
    COMPLETED = "completed"


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    NEEDS_QA = "needs_qa"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    BLOCKED = "blocked"


class QaPolicy(StrEnum):
    SKIP = "skip"
    LIGHT = "light"
    FULL = "full"


class ProtocolAction(StrEnum):
    START = "start"
    PLAN = "plan"
    PLAN_SUCCEEDED = "plan_succeeded"
    PLAN_FAILED = "plan_failed"
    RUN_NEXT_STEP = "run_next_step"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    STOP = "stop"  # no step starts after the running one; the pull request gets the work done so far
    RETRY_LATEST = "retry_latest"
    RETRY_STEP = "retry_step"  # one step runs again: never a new plan
    OPEN_PR = "open_pr"
    BLOCK = "block"
    FAIL = "fail"
    COMPLETE = "complete"
    UNBLOCK = "unblock"


class StepAction(StrEnum):
    RUN = "run"
    SUCCEED = "succeed"
    FAIL = "fail"
    BLOCK = "block"
    RUN_QA = "run_qa"
    QA_PASS = "qa_pass"
    QA_FAIL = "qa_fail"
    APPROVE = "approve"
    RETRY = "retry"
    CANCEL = "cancel"
    CI_SUCCESS = "ci_success"
    CI_FAILURE = "ci_failure"
    RESET = "reset"
    STOP = "stop"  # its running agent is killed; the step then fails, keeping what it committed


P = ProtocolStatus
S = StepStatus

TERMINAL_PROTOCOL_STATUSES = frozenset({P.CANCELLED, P.COMPLETED})  # no way out (but CI's block)
# No longer at work on its issue: a new protocol may start there (a failed one can still be retried).
ENDED_PROTOCOL_STATUSES = frozenset({P.CANCELLED, P.COMPLETED, P.FAILED})
_ACTIVE_PROTOCOL = tuple(status for status in P if status not in TERMINAL_PROTOCOL_STATUSES)


_Status = TypeVar("_Status", ProtocolStatus, StepStatus)


def _to(target: _Status, sources: Iterable[_Status]) -> dict[_Status, _Status]:
    return {source: target for source in sources}


def _unchanged(sources: Iterable[_Status]) -> dict[_Status, _Status]:
    return {source: source for source in sources}


# action -> {current status: new status}
PROTOCOL_TRANSITIONS: Mapping[ProtocolAction, Mapping[ProtocolStatus, ProtocolStatus]] = {
    ProtocolAction.START: {P.PENDING: P.PLANNING, P.PLANNED: P.RUNNING},
    ProtocolAction.PLAN: _to(P.PLANNING, (P.PENDING, P.PLANNED, P.PAUSED, P.BLOCKED, P.FAILED)),
    # A plan job that finishes after its protocol was paused leaves it paused.
    ProtocolAction.PLAN_SUCCEEDED: {P.PLANNING: P.PLANNED, P.PAUSED: P.PAUSED},
    ProtocolAction.PLAN_FAILED: _to(P.BLOCKED, (P.PLANNING, P.PAUSED)),
    ProtocolAction.RUN_NEXT_STEP: _to(P.RUNNING, (P.PLANNED, P.RUNNING, P.BLOCKED)),
    ProtocolAction.PAUSE: _to(P.PAUSED, (P.PLANNING, P.PLANNED, P.RUNNING)),
    ProtocolAction.RESUME: {P.PAUSED: P.RUNNING},
    ProtocolAction.CANCEL: _to(P.CANCELLED, _ACTIVE_PROTOCOL),
    # The status changes once nothing runs: completed with the work so far, or cancelled without any.
    ProtocolAction.STOP: _unchanged(_ACTIVE_PROTOCOL),
    ProtocolAction.RETRY_LATEST: _to(P.RUNNING, (P.BLOCKED, P.FAILED)),
    ProtocolAction.RETRY_STEP: _to(P.RUNNING, (P.BLOCKED, P.FAILED)),
    ProtocolAction.OPEN_PR: _unchanged((P.RUNNING, P.PAUSED, P.BLOCKED, P.FAILED, P.COMPLETED)),
    ProtocolAction.BLOCK: _to(P.BLOCKED, (P.RUNNING, P.COMPLETED)),
    ProtocolAction.FAIL: _to(P.FAILED, (s for s in _ACTIVE_PROTOCOL if s is not P.FAILED)),
    # Also the PR-merged event: a merge completes the protocol whatever it was doing.
    ProtocolAction.COMPLETE: _to(P.COMPLETED, _ACTIVE_PROTOCOL),
    ProtocolAction.UNBLOCK: {},  # only by rule, when the steps can go on
}


class Fact(StrEnum):
    """What, besides its status, decides where a protocol goes next."""

    HAS_STEPS = "has_steps"
    OPEN_QUESTIONS = "open_questions"  # a blocking question of its plan is unanswered
    PLAN_FAILED = "plan_failed"  # its latest plan failed: that, not a step, is what stopped it
    STEPS_CAN_GO_ON = "steps_can_go_on"  # a step can run or wait for QA, or every step is done
    WAITING_FOR_PROTOCOLS = "waiting_for_protocols"  # a protocol it depends on has not completed


@dataclass(frozen=True)
class Rule:
    """``action`` from one of ``sources`` goes to ``target`` when every fact in ``when`` holds and
    none in ``unless`` does."""

    action: ProtocolAction
    sources: frozenset[ProtocolStatus]
    target: ProtocolStatus
    when: frozenset[Fact] = frozenset()
    unless: frozenset[Fact] = frozenset()

    def applies(self, current: ProtocolStatus, action: ProtocolAction, facts: frozenset[Fact]) -> bool:
        return (action is self.action and current in self.sources and self.when <= facts
                and not self.unless & facts)


def _rule(action: ProtocolAction, sources: Iterable[ProtocolStatus], target: ProtocolStatus, *,
          when: Iterable[Fact] = (), unless: Iterable[Fact] = ()) -> Rule:
    return Rule(action, frozenset(sources), target, frozenset(when), frozenset(unless))


PROTOCOL_RULES: Sequence[Rule] = (
    _rule(ProtocolAction.START, {P.PENDING, P.PLANNED}, P.BLOCKED, when={Fact.WAITING_FOR_PROTOCOLS}),
    _rule(ProtocolAction.RETRY_LATEST, {P.BLOCKED}, P.BLOCKED, when={Fact.WAITING_FOR_PROTOCOLS}),
    _rule(ProtocolAction.START, {P.PENDING}, P.RUNNING, when={Fact.HAS_STEPS}),
    _rule(ProtocolAction.START, {P.PLANNED}, P.PAUSED, when={Fact.OPEN_QUESTIONS}),
    _rule(ProtocolAction.RETRY_LATEST, {P.BLOCKED, P.FAILED}, P.PLANNING, when={Fact.PLAN_FAILED}),
    _rule(ProtocolAction.RETRY_LATEST, {P.BLOCKED, P.FAILED}, P.PLANNING, unless={Fact.HAS_STEPS}),
    _rule(ProtocolAction.UNBLOCK, {P.BLOCKED}, P.RUNNING, when={Fact.STEPS_CAN_GO_ON},
          unless={Fact.PLAN_FAILED, Fact.WAITING_FOR_PROTOCOLS}),
)

STEP_TRANSITIONS: Mapping[StepAction, Mapping[StepStatus, StepStatus]] = {
    StepAction.RUN: _to(S.RUNNING, (S.PENDING, S.FAILED, S.BLOCKED, S.CANCELLED)),
    StepAction.SUCCEED: {S.RUNNING: S.NEEDS_QA},
    StepAction.FAIL: _to(S.FAILED, (S.RUNNING, S.NEEDS_QA)),
    StepAction.BLOCK: _to(S.BLOCKED, (S.RUNNING, S.NEEDS_QA)),
    StepAction.RUN_QA: _to(S.NEEDS_QA, (S.NEEDS_QA, S.COMPLETED, S.FAILED, S.BLOCKED)),
    StepAction.QA_PASS: {S.NEEDS_QA: S.COMPLETED},
    StepAction.QA_FAIL: {S.NEEDS_QA: S.FAILED},
    StepAction.APPROVE: _to(S.COMPLETED, (S.NEEDS_QA, S.FAILED, S.BLOCKED)),
    StepAction.RETRY: _to(S.PENDING, (S.FAILED, S.BLOCKED, S.CANCELLED, S.COMPLETED)),
    StepAction.CANCEL: _to(S.CANCELLED, (S.PENDING, S.RUNNING, S.NEEDS_QA, S.FAILED, S.BLOCKED)),
    # A failed step stays failed on a later green CI run: it may have failed QA.
    StepAction.CI_SUCCESS: _to(S.COMPLETED, (S.NEEDS_QA, S.COMPLETED)),
    StepAction.CI_FAILURE: _to(S.FAILED, (S.NEEDS_QA, S.COMPLETED)),
    StepAction.RESET: _to(S.PENDING, (S.PENDING, S.NEEDS_QA, S.COMPLETED, S.FAILED, S.BLOCKED)),
    StepAction.STOP: _unchanged((S.RUNNING,)),  # it fails when its job sees the agent killed
}

_VERBS: Mapping[StrEnum, str] = {
    ProtocolAction.PLAN_SUCCEEDED: "record a plan for",
    ProtocolAction.PLAN_FAILED: "record a failed plan for",
    ProtocolAction.RUN_NEXT_STEP: "run the next step of",
    ProtocolAction.RETRY_LATEST: "retry",
    ProtocolAction.RETRY_STEP: "retry a step of",
    ProtocolAction.OPEN_PR: "open a pull request for",
    ProtocolAction.UNBLOCK: "unblock",
    StepAction.SUCCEED: "finish",
    StepAction.RUN_QA: "run QA on",
    StepAction.QA_PASS: "record a QA pass for",
    StepAction.QA_FAIL: "record a QA failure for",
    StepAction.CI_SUCCESS: "record a CI success for",
    StepAction.CI_FAILURE: "record a CI failure for",
}

_STATUS_WORDS: Mapping[StrEnum, str] = {S.NEEDS_QA: "waiting for QA"}


class TransitionError(Exception):
    """An action that the current status does not allow; ``str()`` is a sentence for people."""

    def __init__(self, kind: str, current: StrEnum, action: StrEnum, reason: str) -> None:
        super().__init__(kind, current, action, reason)
        self.kind = kind
        self.current = current
        self.action = action
        self.reason = reason

    def __str__(self) -> str:
        verb = _VERBS.get(self.action, self.action.value)
        return f"cannot {verb} {self.kind}: {self.reason}"


@dataclass(frozen=True)
class _Machine:
    kind: str
    statuses: type[StrEnum]
    actions: type[StrEnum]
    table: Mapping[Any, Mapping[Any, Any]]


_MACHINES = (
    _Machine("protocol", ProtocolStatus, ProtocolAction, PROTOCOL_TRANSITIONS),
    _Machine("step", StepStatus, StepAction, STEP_TRANSITIONS),
)


def _machine_for(current: object, action: object) -> _Machine:
    """The machine named by the enum types of ``current`` and ``action`` (plain strings follow)."""
    kinds = [m for m in _MACHINES if isinstance(current, m.statuses) or isinstance(action, m.actions)]
    if len(kinds) != 1:
        raise TypeError(
            f"cannot tell protocol from step: {current!r} with {action!r}; "
            "pass a ProtocolStatus/ProtocolAction or a StepStatus/StepAction"
        )
    return kinds[0]


def transition(current: ProtocolStatus | StepStatus, action: ProtocolAction | StepAction,
               facts: Iterable[Fact] = ()) -> ProtocolStatus | StepStatus:
    """The status after ``action``, or :class:`TransitionError` if ``current`` does not allow it.
    ``facts`` (protocols only) select the :data:`PROTOCOL_RULES` that apply."""
    machine = _machine_for(current, action)
    status, act = machine.statuses(current), machine.actions(action)
    if isinstance(status, ProtocolStatus) and isinstance(act, ProtocolAction):
        known = frozenset(facts)
        for rule in PROTOCOL_RULES:
            if rule.applies(status, act, known):
                return rule.target
    allowed = machine.table[act]
    if status not in allowed:
        raise TransitionError(machine.kind, status, act, _refusal(status, allowed.values()))
    target: ProtocolStatus | StepStatus = allowed[status]
    return target


def _refusal(current: StrEnum, targets: Iterable[StrEnum]) -> str:
    already = "already " if current in targets else ""
    return f"it is {already}{_STATUS_WORDS.get(current, current.value)}"


def allowed_actions(current: ProtocolStatus | StepStatus) -> list[StrEnum]:
    """Actions allowed from ``current``, in declaration order."""
    machine = _machine_for(current, None)
    return [action for action in machine.actions if current in machine.table[action]]


def is_allowed(current: ProtocolStatus | StepStatus, action: ProtocolAction | StepAction,
               facts: Iterable[Fact] = ()) -> bool:
    try:
        transition(current, action, facts)
    except TransitionError:
        return False
    return True


def after_execution(qa_policy: QaPolicy | str) -> StepStatus:
    """Where a step that ran successfully lands: ``completed`` when QA is skipped, else ``needs_qa``.

    Check the move first with ``transition(status, StepAction.SUCCEED)``; store this instead of
    its result when the step's QA policy may be ``skip``.
    """
    return S.COMPLETED if QaPolicy(qa_policy) is QaPolicy.SKIP else S.NEEDS_QA


class StepLike(Protocol):
    """What the step functions read of a step (read-only, so any row or record with these fits)."""

    @property
    def step_index(self) -> int: ...
    @property
    def step_name(self) -> str: ...
    @property
    def status(self) -> StepStatus | str: ...
    @property
    def depends_on(self) -> Sequence[str] | None: ...


_Step = TypeVar("_Step", bound=StepLike)


def next_runnable_steps(steps: Iterable[_Step]) -> list[_Step]:
    """Pending steps whose dependencies are all completed, in index order.

    Steps share the protocol's worktree: a caller that runs one step at a time takes the first.
    """
    given = list(steps)
    completed = {step.step_name for step in given if step.status == S.COMPLETED}
    runnable = [
        step
        for step in given
        if step.status == S.PENDING and set(step.depends_on or ()) <= completed
    ]
    return sorted(runnable, key=lambda step: step.step_index)


# The steps an action may pick when no step is named (`/agent retry`, the Retry button, the API's
# retry_latest, `/agent approve`, `/agent qa`).
DEFAULT_STEP_STATUSES: Mapping[StepAction, tuple[StepStatus, ...]] = {
    StepAction.RETRY: (S.FAILED, S.BLOCKED),
    StepAction.APPROVE: (S.NEEDS_QA, S.FAILED, S.BLOCKED),
    StepAction.RUN_QA: (S.NEEDS_QA, S.COMPLETED, S.FAILED, S.BLOCKED),
}


def step_for(action: StepAction, steps: Iterable[_Step]) -> _Step | None:
    """The step `action` acts on when none is named, among DEFAULT_STEP_STATUSES[action]: a retry
    takes the first (the one that holds the rest up), approve and QA the latest (the newest work)."""
    wanted = DEFAULT_STEP_STATUSES[action]
    candidates = sorted((step for step in steps if step.status in wanted), key=lambda step: step.step_index)
    if not candidates:
        return None
    return candidates[0] if action is StepAction.RETRY else candidates[-1]


def protocol_outcome(steps: Iterable[StepLike]) -> ProtocolStatus | None:
    """What the steps say about their protocol once nothing more can move on its own.

    ``None`` while work remains (a step running, waiting for QA, or runnable) and for no steps;
    ``completed`` when every step is completed or cancelled and at least one completed;
    otherwise ``blocked`` (a step failed or blocked, or pending steps wait on ones that never
    will complete).
    """
    steps = list(steps)
    statuses = {S(step.status) for step in steps}
    if not steps or statuses & {S.RUNNING, S.NEEDS_QA} or next_runnable_steps(steps):
        return None
    if S.COMPLETED in statuses and statuses <= {S.COMPLETED, S.CANCELLED}:
        return P.COMPLETED
    return P.BLOCKED


def protocol_facts(steps: Iterable[StepLike], *, open_questions: bool = False,
                   plan_failed: bool = False, waiting: bool = False) -> frozenset[Fact]:
    """The facts :data:`PROTOCOL_RULES` look at, from the protocol's steps, what its plan left, and
    whether it `waiting` for protocols it depends on."""
    steps = list(steps)
    facts = {Fact.OPEN_QUESTIONS} if open_questions else set()
    if waiting:
        facts.add(Fact.WAITING_FOR_PROTOCOLS)
    if plan_failed:
        facts.add(Fact.PLAN_FAILED)
    if steps:
        facts.add(Fact.HAS_STEPS)
        if protocol_outcome(steps) is not P.BLOCKED:
            facts.add(Fact.STEPS_CAN_GO_ON)
    return frozenset(facts)


# The check run's buttons: each one's identifier, its label, and the command it stands for. GitHub
# sends the identifier back in a `requested_action` event; its own "Re-run" arrives as `rerequested`.


@dataclass(frozen=True)
class Button:
    identifier: str
    label: str
    command: str


BUTTONS = MappingProxyType({button.identifier: button for button in (
    Button("retry", "Retry", "retry"),
    Button("approve", "Approve", "approve"),
    Button("cancel", "Cancel", "cancel"),
)})
RERUN = "rerun"  # the action of a check run GitHub was asked to run again
RERUN_COMMAND = "retry"


def command_of(action: str) -> str:
    """The command a check-run action (a button's identifier, or RERUN) stands for."""
    return RERUN_COMMAND if action == RERUN else BUTTONS[action].command
