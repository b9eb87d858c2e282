"""Check-run payloads: state, summary, text and the buttons."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bot.render.attention import attention_box, next_section, unmet_promise
from bot.render.fitting import Detail, fit, sections
from bot.render.markdown import strip_markers
from bot.render.status_comment import footer, ralph_section, step_details
from bot.render.status_parts import meta_line, status_header, status_label, step_table, totals_line
from bot.render.text import (
    ACTION_DESCRIPTION_MAX,
    ACTION_IDENTIFIER_MAX,
    ACTION_LABEL_MAX,
    ACTIONS_MAX,
    CHECK_OUTPUT_MAX,
    CHECK_TITLE_MAX,
    DEFAULT_PREFIX,
    format_cost,
    format_tokens,
    truncate_end,
)
from bot.render.views import (
    ATTENTION_PROTOCOL,
    CHECK_STATE,
    PLAN_ONLY_DONE,
    PROTOCOL_EMOJI,
    UNKNOWN_EMOJI,
    ProtocolView,
    StepView,
    kind_of,
    ordered,
    qa_error,
    status_of,
    step_number,
    step_to_approve,
    step_to_retry,
    total_cost,
    total_tokens,
)
from bot.workflow import (
    BUTTONS,
    ENDED_PROTOCOL_STATUSES,
    TERMINAL_PROTOCOL_STATUSES,
    ProtocolStatus as P,
    StepStatus as S,
)

# --- check runs -------------------------------------------------------------------------------------------

def check_run_state(protocol: ProtocolView, steps: Iterable[StepView] = ()) -> tuple[str, str | None]:
    """(status, conclusion) of the protocol's check run; conclusion is None while in progress.
    Work that ended without doing what it had to (a Ralph loop out of iterations before its
    promise) concludes neutral, not success."""
    status = status_of(protocol)
    if status == P.PLANNED and kind_of(protocol) == "plan":
        return PLAN_ONLY_DONE
    if status == P.RUNNING and (getattr(protocol, "runtime_state", None) or {}).get("awaiting_merge"):
        status = P.COMPLETED
    state = CHECK_STATE.get(status, ("in_progress", None))
    if state == ("completed", "success") and unmet_promise(steps) is not None:
        return ("completed", "neutral")
    return state
def _check_run_name(protocol: ProtocolView) -> str:
    name = " ".join(strip_markers(str(protocol.protocol_name or "")).split())
    return truncate_end(f"agentry: {name}", CHECK_TITLE_MAX)


def _check_title(protocol: ProtocolView, steps: Sequence[StepView]) -> str:
    status = status_of(protocol)
    done = sum(1 for s in steps if status_of(s) == S.COMPLETED)
    title = (f"{PROTOCOL_EMOJI.get(status, UNKNOWN_EMOJI)} {status_label(status).capitalize()} · "
             f"{done}/{len(steps)} steps · {format_tokens(total_tokens(protocol, steps))} tokens · "
             f"{format_cost(total_cost(protocol, steps))}")
    return truncate_end(title, CHECK_TITLE_MAX)


def _check_summary(protocol: ProtocolView, steps: Sequence[StepView], prefix: str) -> str:
    attention = attention_box(protocol, steps)

    def render(detail: Detail) -> str:
        return sections(
            status_header(protocol),
            meta_line(protocol),
            attention,
            step_table(steps, detail.rows) + "\n\n" + totals_line(protocol, steps),
            next_section(protocol, steps, None, prefix),
            footer(protocol, detail.rows is not None),
        )

    return fit(render, CHECK_OUTPUT_MAX)


def _check_text(protocol: ProtocolView, steps: Sequence[StepView]) -> str:
    def render(detail: Detail) -> str:
        body = sections(ralph_section(protocol, detail), step_details(steps, detail))
        return sections(body or "_No step details yet._", footer(protocol, detail.trimmed))

    return fit(render, CHECK_OUTPUT_MAX)


def check_run_actions(protocol: ProtocolView, steps: Iterable[StepView]) -> list[dict[str, str]]:
    """Up to three buttons: Retry, Approve, Cancel, as the state allows.

    Identifiers are "retry", "approve" and "cancel"; the requested_action handler resolves the
    step with step_to_retry / step_to_approve (Retry without such a step retries the latest job).
    """
    steps = ordered(steps)
    status = status_of(protocol)
    actions = []
    if status not in TERMINAL_PROTOCOL_STATUSES:
        retry = step_to_retry(steps)
        if retry is not None:
            what = "QA on step" if qa_error(retry) else "step"
            actions.append(action("retry", f"Run {what} {step_number(retry)} again"))
        elif status in ATTENTION_PROTOCOL:
            actions.append(action("retry", "Run the latest job again"))
        approve = step_to_approve(steps)
        if approve is not None:
            actions.append(action("approve", f"Accept step {step_number(approve)} as it is"))
    if status not in ENDED_PROTOCOL_STATUSES:
        actions.append(action("cancel", "Stop this run and its agents"))
    return actions[:ACTIONS_MAX]


def action(identifier: str, description: str) -> dict[str, str]:
    return {
        "label": truncate_end(BUTTONS[identifier].label, ACTION_LABEL_MAX),
        "description": truncate_end(description, ACTION_DESCRIPTION_MAX),
        "identifier": identifier[:ACTION_IDENTIFIER_MAX],
    }


def check_run_payload(
    protocol: ProtocolView,
    steps: Iterable[StepView],
    *,
    head_sha: str | None = None,
    details_url: str | None = None,
    command_prefix: str = DEFAULT_PREFIX,
) -> dict[str, Any]:
    """A check-run request body: for POST when ``head_sha`` is given, otherwise for PATCH.

    ``external_id`` is the protocol id. ``actions`` is always sent (possibly empty) so that an
    update removes buttons that no longer apply. ``completed_at`` is left to GitHub.
    """
    steps = ordered(steps)
    status, conclusion = check_run_state(protocol, steps)
    payload: dict[str, Any] = {}
    if head_sha:
        payload.update(name=_check_run_name(protocol), head_sha=head_sha)
    payload["status"] = status
    if conclusion:
        payload["conclusion"] = conclusion
    if details_url:
        payload["details_url"] = details_url
    payload["external_id"] = str(protocol.id)
    payload["output"] = {
        "title": _check_title(protocol, steps),
        "summary": _check_summary(protocol, steps, command_prefix),
        "text": _check_text(protocol, steps),
    }
    payload["actions"] = check_run_actions(protocol, steps)
    return payload
