from dataclasses import dataclass

import pytest

from bot.workflow import (
    Fact,
    ProtocolAction,
    ProtocolStatus,
    QaPolicy,
    StepAction,
    StepStatus,
    TransitionError,
    after_execution,
    allowed_actions,
    is_allowed,
    next_runnable_steps,
    protocol_facts,
    protocol_outcome,
    step_for,
    transition,
)

# One row per action, one column per status (in the order of the header); "-" = refused (409).
# The protocol matrix is for one with no facts (no steps, no questions): RULE_CASES has the rest.
PROTOCOL_COLUMNS = "pending planning planned running paused blocked failed cancelled completed"
PROTOCOL_MATRIX = {
    "start":          "planning  -         running   -         -         -         -         -         -",
    "plan":           "planning  -         planning  -         planning  planning  planning  -         -",
    "plan_succeeded": "-         planned   -         -         paused    -         -         -         -",
    "plan_failed":    "-         blocked   -         -         blocked   -         -         -         -",
    "run_next_step":  "-         -         running   running   -         running   -         -         -",
    "pause":          "-         paused    paused    paused    -         -         -         -         -",
    "resume":         "-         -         -         -         running   -         -         -         -",
    "cancel":         "cancelled cancelled cancelled cancelled cancelled cancelled cancelled -         -",
    "stop":           "pending   planning  planned   running   paused    blocked   failed    -         -",
    "retry_latest":   "-         -         -         -         -         planning  planning  -         -",
    "retry_step":     "-         -         -         -         -         running   running   -         -",
    "open_pr":        "-         -         -         running   paused    blocked   failed    -         completed",
    "block":          "-         -         -         blocked   -         -         -         -         blocked",
    "fail":           "failed    failed    failed    failed    failed    failed    -         -         -",
    "complete":       "completed completed completed completed completed completed completed -         -",
    "unblock":        "-         -         -         -         -         -         -         -         -",
}  # fmt: skip

STEP_COLUMNS = "pending running needs_qa completed failed cancelled blocked"
STEP_MATRIX = {
    "run":        "running   -         -         -         running   running   running",
    "succeed":    "-         needs_qa  -         -         -         -         -",
    "fail":       "-         failed    failed    -         -         -         -",
    "block":      "-         blocked   blocked   -         -         -         -",
    "run_qa":     "-         -         needs_qa  needs_qa  needs_qa  -         needs_qa",
    "qa_pass":    "-         -         completed -         -         -         -",
    "qa_fail":    "-         -         failed    -         -         -         -",
    "approve":    "-         -         completed -         completed -         completed",
    "retry":      "-         -         -         pending   pending   pending   pending",
    "cancel":     "cancelled cancelled cancelled -         cancelled -         cancelled",
    "ci_success": "-         -         completed completed -         -         -",
    "ci_failure": "-         -         failed    failed    -         -         -",
    "reset":      "pending   -         pending   pending   pending   -         pending",
    "stop":       "-         running   -         -         -         -         -",
}  # fmt: skip


def _cases(matrix, columns, statuses, actions):
    for action, row in matrix.items():
        for column, cell in zip(columns.split(), row.split(), strict=True):
            yield pytest.param(
                statuses(column), actions(action), None if cell == "-" else statuses(cell),
                id=f"{column}-{action}",
            )


PROTOCOL_CASES = list(_cases(PROTOCOL_MATRIX, PROTOCOL_COLUMNS, ProtocolStatus, ProtocolAction))
STEP_CASES = list(_cases(STEP_MATRIX, STEP_COLUMNS, StepStatus, StepAction))


def test_matrices_cover_every_status_and_action():
    assert PROTOCOL_COLUMNS.split() == list(ProtocolStatus)
    assert STEP_COLUMNS.split() == list(StepStatus)
    assert list(PROTOCOL_MATRIX) == list(ProtocolAction)
    assert list(STEP_MATRIX) == list(StepAction)
    assert len(PROTOCOL_CASES) == len(ProtocolStatus) * len(ProtocolAction)
    assert len(STEP_CASES) == len(StepStatus) * len(StepAction)


@pytest.mark.parametrize(("current", "action", "expected"), PROTOCOL_CASES + STEP_CASES)
def test_transition(current, action, expected):
    if expected is None:
        with pytest.raises(TransitionError) as caught:
            transition(current, action)
        assert caught.value.current is current
        assert caught.value.action is action
        assert str(caught.value).startswith("cannot ")
        assert not is_allowed(current, action)
        assert action not in allowed_actions(current)
    else:
        assert transition(current, action) is expected
        assert is_allowed(current, action)
        assert action in allowed_actions(current)


@pytest.mark.parametrize(
    ("current", "action", "message"),
    [
        (ProtocolStatus.COMPLETED, ProtocolAction.PAUSE, "cannot pause protocol: it is completed"),
        (ProtocolStatus.PAUSED, ProtocolAction.PAUSE, "cannot pause protocol: it is already paused"),
        (ProtocolStatus.RUNNING, ProtocolAction.RESUME, "cannot resume protocol: it is already running"),
        (ProtocolStatus.PAUSED, ProtocolAction.RUN_NEXT_STEP, "cannot run the next step of protocol: it is paused"),
        (ProtocolStatus.PENDING, ProtocolAction.OPEN_PR, "cannot open a pull request for protocol: it is pending"),
        (ProtocolStatus.CANCELLED, ProtocolAction.CANCEL, "cannot cancel protocol: it is already cancelled"),
        (ProtocolStatus.RUNNING, ProtocolAction.RETRY_LATEST, "cannot retry protocol: it is already running"),
        (StepStatus.RUNNING, StepAction.APPROVE, "cannot approve step: it is running"),
        (StepStatus.NEEDS_QA, StepAction.RUN, "cannot run step: it is waiting for QA"),
        (StepStatus.COMPLETED, StepAction.QA_PASS, "cannot record a QA pass for step: it is already completed"),
        (StepStatus.PENDING, StepAction.RUN_QA, "cannot run QA on step: it is pending"),
    ],
)
def test_refusals_read_as_sentences(current, action, message):
    with pytest.raises(TransitionError) as caught:
        transition(current, action)
    assert str(caught.value) == message
    assert caught.value.kind == ("protocol" if isinstance(current, ProtocolStatus) else "step")


@pytest.mark.parametrize(
    ("current", "action", "expected"),
    [
        ("paused", ProtocolAction.RESUME, ProtocolStatus.RUNNING),
        (ProtocolStatus.PENDING, "start", ProtocolStatus.PLANNING),
        ("needs_qa", StepAction.QA_PASS, StepStatus.COMPLETED),
        (StepStatus.RUNNING, "succeed", StepStatus.NEEDS_QA),
    ],
)
def test_plain_strings_follow_the_enum_beside_them(current, action, expected):
    assert transition(current, action) is expected


@pytest.mark.parametrize(
    ("current", "action"),
    [
        ("pending", "start"),
        (ProtocolStatus.PENDING, StepAction.RUN),
        (StepStatus.PENDING, ProtocolAction.CANCEL),
    ],
)
def test_ambiguous_or_mixed_kinds_are_rejected(current, action):
    with pytest.raises(TypeError):
        transition(current, action)


PS, PA = ProtocolStatus, ProtocolAction


# (status, action, facts, expected): the moves that depend on more than the status.
RULE_CASES = [
    (PS.PENDING, PA.START, {Fact.HAS_STEPS}, PS.RUNNING),
    (PS.PENDING, PA.START, set(), PS.PLANNING),
    (PS.PLANNED, PA.START, {Fact.HAS_STEPS, Fact.OPEN_QUESTIONS}, PS.PAUSED),
    (PS.PLANNED, PA.START, {Fact.HAS_STEPS}, PS.RUNNING),
    (PS.BLOCKED, PA.RETRY_LATEST, {Fact.HAS_STEPS, Fact.PLAN_FAILED}, PS.PLANNING),
    (PS.FAILED, PA.RETRY_LATEST, set(), PS.PLANNING),
    (PS.BLOCKED, PA.RETRY_LATEST, {Fact.HAS_STEPS}, PS.RUNNING),
    (PS.BLOCKED, PA.UNBLOCK, {Fact.HAS_STEPS, Fact.STEPS_CAN_GO_ON}, PS.RUNNING),
    (PS.BLOCKED, PA.UNBLOCK, {Fact.HAS_STEPS, Fact.STEPS_CAN_GO_ON, Fact.PLAN_FAILED}, None),
    (PS.BLOCKED, PA.UNBLOCK, {Fact.HAS_STEPS}, None),
    (PS.PAUSED, PA.UNBLOCK, {Fact.HAS_STEPS, Fact.STEPS_CAN_GO_ON}, None),
    (PS.RUNNING, PA.START, {Fact.HAS_STEPS}, None),
    (PS.PENDING, PA.START, {Fact.HAS_STEPS, Fact.WAITING_FOR_PROTOCOLS}, PS.BLOCKED),
    (PS.PLANNED, PA.START, {Fact.HAS_STEPS, Fact.OPEN_QUESTIONS, Fact.WAITING_FOR_PROTOCOLS}, PS.BLOCKED),
    (PS.PENDING, PA.START, {Fact.WAITING_FOR_PROTOCOLS}, PS.BLOCKED),
    (PS.BLOCKED, PA.RETRY_LATEST, {Fact.WAITING_FOR_PROTOCOLS}, PS.BLOCKED),
    (PS.BLOCKED, PA.UNBLOCK, {Fact.HAS_STEPS, Fact.STEPS_CAN_GO_ON, Fact.WAITING_FOR_PROTOCOLS}, None),
]


@pytest.mark.parametrize(("current", "action", "facts", "expected"), RULE_CASES)
def test_rules_decide_the_moves_that_depend_on_facts(current, action, facts, expected):
    assert is_allowed(current, action, facts) is (expected is not None)
    if expected is None:
        with pytest.raises(TransitionError):
            transition(current, action, facts)
    else:
        assert transition(current, action, facts) is expected


@pytest.mark.parametrize(
    ("specs", "kwargs", "expected"),
    [
        ([], {}, set()),
        ([], {"plan_failed": True, "open_questions": True}, {Fact.PLAN_FAILED, Fact.OPEN_QUESTIONS}),
        ([("a", "pending", [])], {}, {Fact.HAS_STEPS, Fact.STEPS_CAN_GO_ON}),
        ([("a", "completed", [])], {}, {Fact.HAS_STEPS, Fact.STEPS_CAN_GO_ON}),
        ([("a", "needs_qa", [])], {}, {Fact.HAS_STEPS, Fact.STEPS_CAN_GO_ON}),
        ([("a", "failed", [])], {}, {Fact.HAS_STEPS}),
        ([("a", "completed", []), ("b", "blocked", ["a"])], {}, {Fact.HAS_STEPS}),
    ],
)
def test_protocol_facts(specs, kwargs, expected):
    assert protocol_facts(steps(*specs), **kwargs) == frozenset(expected)


@pytest.mark.parametrize(
    ("current", "expected"),
    [
        (
            ProtocolStatus.PAUSED,
            ["plan", "plan_succeeded", "plan_failed", "resume", "cancel", "stop", "open_pr", "fail", "complete"],
        ),
        (ProtocolStatus.CANCELLED, []),
        (ProtocolStatus.COMPLETED, ["open_pr", "block"]),
        (StepStatus.RUNNING, ["succeed", "fail", "block", "cancel", "stop"]),
        (StepStatus.CANCELLED, ["run", "retry"]),
    ],
)
def test_allowed_actions_in_declaration_order(current, expected):
    assert allowed_actions(current) == expected


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (QaPolicy.SKIP, StepStatus.COMPLETED),
        (QaPolicy.LIGHT, StepStatus.NEEDS_QA),
        (QaPolicy.FULL, StepStatus.NEEDS_QA),
        ("skip", StepStatus.COMPLETED),
    ],
)
def test_after_execution(policy, expected):
    assert after_execution(policy) is expected


def test_after_execution_rejects_unknown_policy():
    with pytest.raises(ValueError):
        after_execution("loose")


@dataclass
class Step:
    step_index: int
    step_name: str
    status: StepStatus | str
    depends_on: list[str] | None = None


def steps(*specs):
    """specs: (name, status, depends_on) in index order."""
    return [Step(index, name, status, deps) for index, (name, status, deps) in enumerate(specs)]


P, R, Q, C, F, X, B = "pending", "running", "needs_qa", "completed", "failed", "cancelled", "blocked"


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        ([], []),
        ([("a", P, None), ("b", P, [])], ["a", "b"]),
        ([("a", P, None), ("b", P, ["a"])], ["a"]),
        ([("a", C, None), ("b", P, ["a"]), ("c", P, ["b"])], ["b"]),
        ([("a", C, None), ("b", C, ["a"]), ("c", P, ["a", "b"])], ["c"]),
        ([("a", R, None), ("b", P, ["a"])], []),
        ([("a", Q, None), ("b", P, ["a"])], []),
        ([("a", F, None), ("b", P, ["a"]), ("c", P, [])], ["c"]),
        ([("a", X, None), ("b", P, ["a"])], []),
        ([("a", P, ["ghost"])], []),
        ([("a", C, None), ("b", R, ["a"]), ("c", P, ["a"]), ("d", P, ["a"])], ["c", "d"]),
        ([("a", StepStatus.COMPLETED, None), ("b", StepStatus.PENDING, ["a"])], ["b"]),
    ],
)
def test_next_runnable_steps(specs, expected):
    assert [step.step_name for step in next_runnable_steps(steps(*specs))] == expected


def test_next_runnable_steps_in_index_order_whatever_the_input_order():
    shuffled = list(reversed(steps(("a", P, []), ("b", P, []), ("c", P, []))))
    assert [step.step_name for step in next_runnable_steps(shuffled)] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("specs", "expected"),
    [
        ([], None),
        ([("a", C, None)], ProtocolStatus.COMPLETED),
        ([("a", C, None), ("b", C, ["a"])], ProtocolStatus.COMPLETED),
        ([("a", C, None), ("b", X, ["a"])], ProtocolStatus.COMPLETED),
        ([("a", X, None)], ProtocolStatus.BLOCKED),
        ([("a", C, None), ("b", P, ["a"])], None),
        ([("a", C, None), ("b", R, ["a"])], None),
        ([("a", C, None), ("b", Q, ["a"])], None),
        ([("a", F, None), ("b", P, ["a"])], ProtocolStatus.BLOCKED),
        ([("a", B, None), ("b", P, ["a"])], ProtocolStatus.BLOCKED),
        ([("a", F, None), ("b", C, [])], ProtocolStatus.BLOCKED),
        ([("a", F, None), ("b", P, [])], None),
        ([("a", F, None), ("b", R, [])], None),
        ([("a", X, None), ("b", P, ["a"])], ProtocolStatus.BLOCKED),
        ([("a", P, ["ghost"])], ProtocolStatus.BLOCKED),
    ],
)
def test_protocol_outcome(specs, expected):
    assert protocol_outcome(steps(*specs)) == expected


@pytest.mark.parametrize(
    ("action", "specs", "expected"),
    [
        (StepAction.RETRY, [("a", C, None), ("b", F, None), ("c", B, None)], "b"),
        (StepAction.RETRY, [("a", C, None), ("b", Q, None)], None),
        (StepAction.APPROVE, [("a", Q, None), ("b", F, None)], "b"),
        (StepAction.RUN_QA, [("a", C, None), ("b", R, None)], "a"),
        (StepAction.RUN_QA, [("a", C, None), ("b", Q, None)], "b"),
        (StepAction.RETRY, [], None),
    ],
)
def test_step_for_picks_what_an_action_without_a_step_acts_on(action, specs, expected):
    found = step_for(action, list(reversed(steps(*specs))))
    assert (found.step_name if found else None) == expected
