"""The status comment: one per protocol, edited in place as the work goes on."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from types import MappingProxyType
from typing import Any

from bot.render.attention import (
    attention_box,
    next_section,
    pull_request_problem,
    qa_reasons_list,
    stop_note,
    unmet_promise,
    unmet_promise_note,
)
from bot.render.fitting import Detail, fit, join_within, sections
from bot.render.markdown import code_block, code_span, inline_text, markdown_block, table_row
from bot.render.status_parts import (
    description_quote,
    links_line,
    meta_line,
    status_header,
    step_status_cell,
    step_table,
    totals_line,
)
from bot.render.text import COMMENT_BODY_MAX, DEFAULT_PREFIX, format_time, keep_tail, status_marker, truncate_middle
from bot.render.views import (
    RETRYABLE_STEP,
    ProtocolView,
    StepView,
    failed_qa,
    kind_of,
    ordered,
    state_of,
    status_of,
    step_number,
    verdict_of,
)
from bot.workflow import StepStatus as S


def ralph_section(protocol: ProtocolView, detail: Detail) -> str:
    iterations = [i for i in state_of(protocol).get("iterations") or [] if isinstance(i, Mapping)]
    if kind_of(protocol) != "ralph" or not iterations:
        return ""
    met = any(i.get("promise_met") for i in iterations)
    title = f"#### 🔁 Ralph loop · {len(iterations)} iterations" + (" · promise met ✅" if met else "")
    shown = iterations if detail.iterations is None else iterations[-detail.iterations:]
    rows = [table_row(["Iteration", "Agent", "Feedback", "Promise"]), "|--:|---|---|---|"]
    if len(shown) < len(iterations):
        rows.append(table_row(["…", f"_{len(iterations) - len(shown)} earlier iterations_", "", ""]))
    tails = _feedback_tails(iterations[-1]) if detail.tails else ""
    return sections(title, join_within(chain(rows, (table_row(_iteration_cells(i)) for i in shown))), tails)


def _iteration_cells(iteration: Mapping[str, Any]) -> list[str]:
    feedback = [f for f in iteration.get("feedback") or [] if isinstance(f, Mapping)]
    checks = " · ".join(f"{_exit_emoji(f.get('exit_code'))} {code_span(f.get('command'), 60)}" for f in feedback)
    promise = "✅ met" if iteration.get("promise_met") else "—"
    return [inline_text(iteration.get("iteration", "?"), 10), _exit_cell(iteration.get("exit_code")), checks or "—", promise]


def _exit_emoji(code: Any) -> str:
    return "⚪" if code is None else ("✅" if code == 0 else "❌")


def _exit_cell(code: Any) -> str:
    return "—" if code is None else f"{_exit_emoji(code)} exit {inline_text(code, 10)}"


def _feedback_tails(iteration: Mapping[str, Any]) -> str:
    feedback = [f for f in iteration.get("feedback") or [] if isinstance(f, Mapping) and f.get("output_tail")]
    if not feedback:
        return ""
    blocks = [f"{code_span(f.get('command'), 100)} {_exit_cell(f.get('exit_code'))}\n\n{code_block(keep_tail(str(f['output_tail']), 3000))}"
              for f in feedback]
    summary = f"Feedback output · iteration {inline_text(iteration.get('iteration', '?'), 10)}"
    return collapsible(summary, "\n\n".join(blocks))


def collapsible(summary: str, body: str) -> str:
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def step_details(steps: Sequence[StepView], detail: Detail) -> str:
    if detail.summary_chars == 0:
        return ""
    shown = (step for step in steps if not detail.attention_only or _needs_attention(step))
    blocks = (_step_detail(step, detail.summary_chars) for step in shown)
    return join_within((block for block in blocks if block), "\n\n")


def _needs_attention(step: StepView) -> bool:
    return status_of(step) in RETRYABLE_STEP or status_of(step) == S.NEEDS_QA or failed_qa(step)


def _step_detail(step: StepView, chars: int | None) -> str:
    state = state_of(step)
    summary = getattr(step, "summary", None)
    parts = []
    if summary:
        text = str(summary) if chars is None else truncate_middle(str(summary), chars, "\n\n…\n\n")
        parts.append(markdown_block(text))
    if state.get("qa_reasons"):
        verdict = inline_text(verdict_of(step) or "no verdict", 20)
        reasons = qa_reasons_list(state["qa_reasons"], 20 if chars is None else 5, min(chars or 500, 500))
        parts.append(f"**QA ({verdict}):**" + reasons)
    if state.get("error"):
        parts.append("**Error:**\n\n" + code_block(truncate_middle(str(state["error"]), chars or 4000)))
    if state.get("commit_sha"):
        parts.append(f"Commit {code_span(str(state['commit_sha'])[:12])}")
    if not parts:
        return ""
    title = f"{step_number(step)} · {inline_text(step.step_name, 80)} — {step_status_cell(step)}"
    return collapsible(title, "\n\n".join(parts))


def footer(protocol: ProtocolView, trimmed: bool) -> str:
    notes = []
    updated = format_time(getattr(protocol, "updated_at", None))
    if updated:
        notes.append(f"Updated {updated}")
    if trimmed:
        notes.append("some details were shortened to fit GitHub's limits; the run logs have everything")
    return f"<sub>{' · '.join(notes)}</sub>" if notes else ""


_NO_LINKS: Mapping[str, str] = MappingProxyType({})


def status_comment(
    protocol: ProtocolView,
    steps: Iterable[StepView],
    *,
    links: Mapping[str, str] = _NO_LINKS,
    next_hint: str | None = None,
    command_prefix: str = DEFAULT_PREFIX,
) -> str:
    """The one status comment of a protocol, always within COMMENT_BODY_MAX."""
    steps = ordered(steps)
    attention = attention_box(protocol, steps)
    upcoming = next_section(protocol, steps, next_hint, command_prefix)

    def render(detail: Detail) -> str:
        return sections(
            status_marker(protocol.id or 0) + "\n" + status_header(protocol),
            meta_line(protocol),
            links_line(protocol, links),
            description_quote(protocol, detail),
            attention,
            pull_request_problem(protocol, command_prefix),
            stop_note(protocol),
            unmet_promise_note(unmet) if (unmet := unmet_promise(steps)) is not None else None,
            upcoming if attention else None,
            step_table(steps, detail.rows) + "\n\n" + totals_line(protocol, steps),
            None if attention else upcoming,
            ralph_section(protocol, detail),
            step_details(steps, detail),
            footer(protocol, detail.trimmed),
        )

    return fit(render, COMMENT_BODY_MAX)
