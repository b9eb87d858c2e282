"""What needs a person: the problems to show, and the commands that carry the work on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from bot.render.markdown import as_text, code_block, code_span, command_text, inline_text
from bot.render.status_parts import status_label, step_status_cell
from bot.render.text import DEFAULT_PREFIX, truncate_middle
from bot.render.views import (
    ATTENTION_PROTOCOL,
    ProtocolView,
    StepView,
    failed_qa,
    kind_of,
    qa_error,
    state_of,
    status_of,
    step_number,
    step_to_approve,
    step_to_retry,
    verdict_of,
)
from bot.workflow import TERMINAL_PROTOCOL_STATUSES, ProtocolStatus as P


def attention_box(protocol: ProtocolView, steps: Sequence[StepView]) -> str:
    """The reason a blocked or failed protocol stopped, as a GitHub alert."""
    status = status_of(protocol)
    if status not in ATTENTION_PROTOCOL:
        return ""
    kind = "WARNING" if status == P.BLOCKED else "CAUTION"
    lines = [f"[!{kind}]", f"**{status_label(status).capitalize()}**" + _reason_suffix(protocol)]
    step = step_to_retry(steps)
    step = step if step is not None else step_to_approve(steps)
    if step is not None:
        lines += ["", _step_problem(step)]
    return "\n".join("> " + line if line else ">" for line in "\n".join(lines).split("\n"))


def pull_request_problem(protocol: ProtocolView, prefix: str = DEFAULT_PREFIX) -> str:
    """Why the pull request could not be opened, and how to try again (empty when it could)."""
    reason = state_of(protocol).get("pr_error")
    if not reason:
        return ""
    lines = ["[!CAUTION]", "**The pull request could not be opened**" + labelled("", reason), "",
             f"Type {code_span(f'{prefix} open-pr', 80)} to try again."]
    return "\n".join("> " + line if line else ">" for line in "\n".join(lines).split("\n"))


def _reason_suffix(protocol: ProtocolView) -> str:
    state = state_of(protocol)
    reason = state.get("blocked_reason") or state.get("error")
    return labelled("", reason) if reason else ""


def labelled(label: str, text: Any, limit: int = 1500) -> str:
    """``label: reason`` when the reason is one short line, else the label over a fenced block."""
    text = as_text(text).strip()
    if "\n" not in text and len(text) <= 200:
        return f"{label}: {inline_text(text)}"
    return f"{label}:\n\n{code_block(truncate_middle(text, limit))}"


def _step_problem(step: StepView) -> str:
    state = state_of(step)
    title = f"Step {step_number(step)} · {inline_text(step.step_name, 80)} — {step_status_cell(step)}"
    parts = [title]
    if qa_error(step):
        parts.append(labelled("QA could not run (no verdict)", state["qa_error"]))
    elif verdict_of(step) == "FAIL":
        parts.append("QA verdict: ❌ FAIL" + qa_reasons_list(state.get("qa_reasons"), 10))
    if state.get("error"):
        parts.append(labelled("Error", state["error"]))
    return "\n\n".join(parts)


def qa_reasons_list(reasons: Any, count: int, chars: int = 500) -> str:
    items = [reasons] if isinstance(reasons, str) else list(reasons or [])
    shown = items[:count]
    more = [f"…and {len(items) - len(shown)} more"] if len(shown) < len(items) else []
    lines = [f"- {inline_text(r, chars)}" for r in shown] + [f"- {m}" for m in more]
    return "\n" + "\n".join(lines) if lines else ""


def next_commands(protocol: ProtocolView, steps: Sequence[StepView]) -> list[tuple[str, str]]:
    """(command without prefix, what it does) for the protocol's current state."""
    status = status_of(protocol)
    commands: list[tuple[str, str]] = []
    if status in ATTENTION_PROTOCOL:
        retry = step_to_retry(steps)
        if retry is not None and qa_error(retry):
            commands.append((f"qa {step_number(retry)}", f"run QA on step {step_number(retry)} again"))
        elif retry is not None:
            commands.append((f"retry {step_number(retry)}", f"run step {step_number(retry)} again"))
        else:
            commands.append(("retry", "run the latest job again"))
    if status not in TERMINAL_PROTOCOL_STATUSES:
        commands += _approve_command(steps)
    commands += STATE_COMMANDS.get(status, ())
    if status == P.PLANNED and kind_of(protocol) == "plan":
        commands.insert(0, ("run", "start working on the issue"))
    if status == P.COMPLETED and not getattr(protocol, "pr_url", None) and kind_of(protocol) in {"run", "ralph"}:
        commands.append(("open-pr", "open the pull request"))
    return commands


def _approve_command(steps: Sequence[StepView]) -> list[tuple[str, str]]:
    step = step_to_approve(steps)
    if step is None:
        return []
    why = "despite the failed QA" if failed_qa(step) else "without waiting for QA"
    return [(f"approve {step_number(step)}", f"accept step {step_number(step)} {why}")]


STATE_COMMANDS: Mapping[str, tuple[tuple[str, str], ...]] = MappingProxyType({
    P.PENDING: (("cancel", "stop this run"),),
    P.PLANNING: (("cancel", "stop this run"),),
    P.PLANNED: (("cancel", "stop this run"),),
    P.RUNNING: (("pause", "pause the run"), ("stop", "open the pull request with the work done after the running step"),
                ("cancel", "stop the run and its agents")),
    P.PAUSED: (("resume", "continue where it stopped"), ("stop", "open the pull request with the work done so far"),
               ("cancel", "stop this run")),
    P.BLOCKED: (("stop", "open the pull request with the work done so far"), ("cancel", "give up on this run")),
    P.CANCELLED: (("run", "start a new run"),),
})


def stop_note(protocol: ProtocolView) -> str:
    """That someone stopped the protocol: what happens next, or what it came to."""
    state = state_of(protocol)
    by = state.get("stop_requested_by")
    if not by:
        return ""
    who = inline_text(by, 80)
    if status_of(protocol) not in TERMINAL_PROTOCOL_STATUSES:
        running = "its running agent is being stopped" if state.get("stop_now") else "the running step finishes"
        return f"⏹️ Stopping, as {who} asked: {running}, then the pull request gets the work done so far."
    if state.get("completion_reason") != "manual_stop":
        return ""  # it ended otherwise (merged, cancelled) before the stop took effect
    if status_of(protocol) == P.COMPLETED:
        return f"⏹️ Stopped by {who}: the pull request holds the work done so far."
    return f"⏹️ Stopped by {who} before any work was done."


def next_section(protocol: ProtocolView, steps: Sequence[StepView], next_hint: str | None, prefix: str) -> str:
    items = [f"- {next_hint}"] if next_hint else []
    items += [f"- {code_span(command_text(cmd, prefix))} — {what}" for cmd, what in next_commands(protocol, steps)]
    return "**What to do next**\n" + "\n".join(items) if items else ""
def unmet_promise(steps: Iterable[StepView]) -> StepView | None:
    """The Ralph step that stopped at its iteration limit without the promise it was given, if any."""
    return next((step for step in steps if state_of(step).get("stopped") == "max_iterations"
                 and (getattr(step, "policy", None) or {}).get("promise")), None)


def unmet_promise_note(step: StepView) -> str:
    promise = (getattr(step, "policy", None) or {}).get("promise")
    iterations = len(state_of(step).get("iterations") or [])
    return (f"⚠️ The Ralph loop stopped at its limit of {iterations} iterations without the promise "
            f"{code_span(promise, 100)}: "
            "the work is kept as a draft to review, not a finished change.")
