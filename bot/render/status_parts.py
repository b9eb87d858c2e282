"""The parts of the status comment: header, step table, what needs attention, what to do next."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from types import MappingProxyType

from bot.render.fitting import Detail, join_within
from bot.render.markdown import code_span, inline_text, link, markdown_block, quiet_user, table_row
from bot.render.text import format_cost, format_tokens, truncate_middle
from bot.render.views import (
    PROTOCOL_EMOJI,
    STATUS_LABEL,
    STEP_EMOJI,
    UNKNOWN_EMOJI,
    ProtocolView,
    StepView,
    kind_of,
    status_of,
    step_number,
    total_cost,
    total_tokens,
    value_of,
    verdict_of,
)
from bot.workflow import StepStatus as S

# --- status comment parts -------------------------------------------------------------------------------

def status_label(status: str) -> str:
    return STATUS_LABEL.get(status, status or "unknown")


def status_header(protocol: ProtocolView) -> str:
    status = status_of(protocol)
    emoji = PROTOCOL_EMOJI.get(status, UNKNOWN_EMOJI)
    return f"### {emoji} {inline_text(protocol.protocol_name, 120)} · {status_label(status)}"


def meta_line(protocol: ProtocolView) -> str:
    parts = []
    if number := getattr(protocol, "issue_number", None):
        parts.append(f"Issue #{int(number)}")
    if branch := getattr(protocol, "branch", None):
        parts.append(f"{code_span(branch, 120)} → {code_span(protocol.base_branch or 'main', 120)}")
    if getattr(protocol, "engine", None):
        model = f" · {code_span(protocol.model, 80)}" if getattr(protocol, "model", None) else ""
        parts.append(f"{code_span(value_of(protocol.engine), 40)}{model}")
    if kind_of(protocol) != "run":
        parts.append(f"mode {code_span(kind_of(protocol))}")
    if getattr(protocol, "created_by", None):
        parts.append(f"by {quiet_user(protocol.created_by)}")
    return " · ".join(parts)


_LINK_LABELS = MappingProxyType({"check_run": "Check run", "pr": "Pull request", "logs": "Run logs"})


def links_line(protocol: ProtocolView, links: Mapping[str, str]) -> str:
    merged = dict(links)
    if (url := getattr(protocol, "pr_url", None)) and "pr" not in merged:
        merged["pr"] = url
    known = [key for key in _LINK_LABELS if merged.get(key)]
    others = sorted(key for key in merged if key not in _LINK_LABELS and merged[key])
    items = [link(_link_label(key, protocol), merged[key]) for key in known + others]
    return "🔗 " + " · ".join(items) if items else ""


def _link_label(key: str, protocol: ProtocolView) -> str:
    if key == "pr" and (number := getattr(protocol, "pr_number", None)):
        return f"Pull request #{int(number)}"
    return _LINK_LABELS.get(key) or inline_text(key.replace("_", " ").capitalize(), 40)


def description_quote(protocol: ProtocolView, detail: Detail) -> str:
    text = getattr(protocol, "description", None)
    if not text or detail.summary_chars == 0:
        return ""
    body = markdown_block(truncate_middle(str(text), 500, "\n…\n"))
    return "\n".join("> " + line if line else ">" for line in body.split("\n"))


def step_table(steps: Sequence[StepView], rows: int | None) -> str:
    if not steps:
        return "_No steps yet._"
    header = [table_row(["#", "Step", "Status", "QA", "Tokens", "Cost"]), "|--:|---|---|---|--:|--:|"]
    return join_within(chain(header, (table_row(cells) for cells in _visible_rows(steps, rows))))


def _visible_rows(steps: Sequence[StepView], rows: int | None) -> Iterable[list[str]]:
    if rows is None or len(steps) <= rows:
        return (_step_cells(step) for step in steps)
    head, tail = steps[: rows // 2], steps[len(steps) - rows // 2:]
    gap = ["…", f"_{len(steps) - len(head) - len(tail)} more steps_", "", "", "", ""]
    return [_step_cells(s) for s in head] + [gap] + [_step_cells(s) for s in tail]


def _step_cells(step: StepView) -> list[str]:
    return [str(step_number(step)), _step_name_cell(step), step_status_cell(step), _qa_cell(step),
            format_tokens(getattr(step, "tokens_used", 0)), format_cost(getattr(step, "cost_usd", None))]


def _step_name_cell(step: StepView) -> str:
    return inline_text(step.step_name, 80) or "_(unnamed)_"


def step_status_cell(step: StepView) -> str:
    status = status_of(step)
    retries = int(getattr(step, "retries", 0) or 0)
    suffix = f" · retry {retries}" if retries else ""
    return f"{STEP_EMOJI.get(status, UNKNOWN_EMOJI)} {status_label(status)}{suffix}"


def _qa_cell(step: StepView) -> str:
    verdict = verdict_of(step)
    if verdict == "PASS":
        return "✅ PASS"
    if verdict == "FAIL":
        return "❌ FAIL"
    if verdict:
        return inline_text(verdict, 20)
    if status_of(step) == S.NEEDS_QA:
        return "🔍 waiting"
    if value_of(getattr(step, "qa_policy", "")).lower() == "skip":
        return "⏭️ skipped"
    return "—"


def totals_line(protocol: ProtocolView, steps: Sequence[StepView]) -> str:
    done = sum(1 for s in steps if status_of(s) == S.COMPLETED)
    tokens = format_tokens(total_tokens(protocol, steps))
    return f"**Total:** {done}/{len(steps)} steps completed · {tokens} tokens · {format_cost(total_cost(protocol, steps))}"
