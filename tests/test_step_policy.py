"""The loop and trigger policies' decisions and the budgets' verdicts, as tables."""

import pytest

from bot.step_policy import (LoopBack, StepOutcome, Trigger, after_step, protocol_budget_exceeded,
                             step_budget_exceeded)

QA_FAIL, FAILED, COMPLETED = StepOutcome.QA_FAIL, StepOutcome.FAILED, StepOutcome.COMPLETED
LOOP = {"loop": {"back_to": "Write"}}
TRIGGER = {"trigger": {"step": "Fix"}}
BOTH = {"loop": {"back_to": "Write", "when": "failed"}, "trigger": {"step": "Fix", "when": "always"}}


@pytest.mark.parametrize(("policy", "outcome", "loops", "triggers", "moves"), [
    ({}, QA_FAIL, 0, 0, ()),
    (LOOP, QA_FAIL, 0, 0, (LoopBack("Write"),)),
    (LOOP, FAILED, 0, 0, ()),  # a loop fires on a QA failure unless told otherwise
    (LOOP, QA_FAIL, 3, 0, ()),  # three times at most by default
    ({"loop": {"max_iterations": 5}}, QA_FAIL, 4, 0, (LoopBack("Check"),)),  # back to itself
    ({"loop": {"when": "always"}}, COMPLETED, 0, 0, (LoopBack("Check"),)),
    ({"loop": {"when": "unheard-of"}}, QA_FAIL, 0, 0, ()),
    (TRIGGER, FAILED, 0, 0, (Trigger("Fix"),)),
    (TRIGGER, QA_FAIL, 0, 0, (Trigger("Fix"),)),  # a trigger fires on any failure unless told otherwise
    (TRIGGER, COMPLETED, 0, 0, ()),
    (TRIGGER, FAILED, 3, 3, ()),
    ({"trigger": {"step": "Fix", "when": "completed"}}, COMPLETED, 0, 0, (Trigger("Fix"),)),
    ({"trigger": {"when": "always"}}, COMPLETED, 0, 0, ()),  # no step named
    (BOTH, FAILED, 0, 0, (LoopBack("Write"), Trigger("Fix"))),  # the loop first
    (BOTH, FAILED, 3, 0, (Trigger("Fix"),)),
    (BOTH, COMPLETED, 0, 0, (Trigger("Fix"),)),
])  # fmt: skip
def test_what_follows_a_step(policy, outcome, loops, triggers, moves):
    assert after_step("Check", policy, outcome, loops=loops, triggers=triggers) == moves


@pytest.mark.parametrize(("tokens", "budget", "mode", "verdict"), [
    (100, 50, "strict", "token budget exceeded: the step used 100 tokens of 50"),
    (100, 50, "warn", "token budget exceeded: the step used 100 tokens of 50"),
    (100, 50, "off", None),
    (50, 50, "strict", None),  # a step may use all of its budget
    (100, None, "strict", None),
    (100, 0, "strict", None),
])  # fmt: skip
def test_a_steps_budget(tokens, budget, mode, verdict):
    assert step_budget_exceeded(tokens, budget, mode) == verdict


@pytest.mark.parametrize(("used", "budget", "mode", "verdict"), [
    (50, 50, "strict", "token budget exceeded: the protocol used 50 tokens of 50"),  # used up
    (49, 50, "strict", None),
    (100, 50, "warn", None),  # only a strict budget stops a protocol
    (100, 50, "off", None),
    (100, None, "strict", None),
])  # fmt: skip
def test_a_protocols_budget(used, budget, mode, verdict):
    assert protocol_budget_exceeded(used, budget, mode) == verdict
