"""Everything agentry shows on GitHub: the status comment, check-run payloads, PR text, replies.

Pure: standard library only, no I/O, no clock. Inputs are duck-typed (a ProtocolRun and its
StepRuns, or anything with the same attributes); statuses may be plain strings or str enums.

Every piece of user or agent text that is echoed back goes through one of three doors:
``inline_text`` (one line), ``markdown_block`` (many lines of markdown) or ``code_span``. They
strip agentry's own hidden markers, neutralise ``@mentions`` and ``/commands`` with a zero-width
joiner, and defuse HTML tags, so a comment never pings people, never triggers a bot (agentry
included) and never breaks the surrounding layout.

Everything returned fits GitHub's limits below, measured in code points (Python ``len``); a body
within 65,536 code points is also within GitHub's 262,144-byte storage cap.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain
from types import MappingProxyType
from typing import Any

from bot.workflow import (
    BUTTONS,
    DEFAULT_STEP_STATUSES,
    ENDED_PROTOCOL_STATUSES,
    TERMINAL_PROTOCOL_STATUSES,
    ProtocolStatus as P,
    StepAction,
    StepStatus as S,
    step_for,
)

# --- GitHub limits ------------------------------------------------------------------------------

COMMENT_BODY_MAX = 65536  # issue / PR comment body, characters
PR_BODY_MAX = 65536  # pull request body, characters
PR_TITLE_MAX = 256  # pull request title; not in the schema, GitHub's documented issue title cap
CHECK_OUTPUT_MAX = 65535  # check run output.summary and output.text, each
CHECK_TITLE_MAX = 255  # check run output.title and name; the schema states none, a safe value
ANNOTATIONS_PER_REQUEST = 50
ACTIONS_MAX = 3
ACTION_LABEL_MAX = 20
ACTION_DESCRIPTION_MAX = 40
ACTION_IDENTIFIER_MAX = 20

DEFAULT_PREFIX = "/agent"
TRUNCATION_MARKER = "\n…(truncated)…\n"

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
SETTLED_STEP = frozenset({S.COMPLETED, S.CANCELLED})

# --- markers ------------------------------------------------------------------------------------

MARKER_RE = re.compile(r"\s*<!-- agentry:status protocol=(\d+) -->")
ANY_MARKER_RE = re.compile(r"<!--\s*agentry:.*?-->", re.S)


def reply_marker(key: str) -> str:
    """The hidden mark of one reply of one job, to find it again before answering twice."""
    return f"<!-- agentry:reply {hashlib.sha256(key.encode()).hexdigest()[:16]} -->"


def status_marker(protocol_id: int) -> str:
    """The hidden first line that finds a protocol's status comment again."""
    return f"<!-- agentry:status protocol={int(protocol_id)} -->"


def find_protocol_id(comment_body: str | None) -> int | None:
    """The protocol id of a status comment, or None for any other comment.

    Only a marker at the very start counts, so text quoted lower down never matches. Callers
    should also check that the comment's author is the app itself.
    """
    match = MARKER_RE.match(comment_body or "")
    return int(match.group(1)) if match else None


# --- plain text helpers -------------------------------------------------------------------------

def truncate_middle(text: str, limit: int, marker: str = TRUNCATION_MARKER) -> str:
    """Keep the head and the tail of ``text`` so that the result is at most ``limit`` long."""
    if len(text) <= limit:
        return text
    if limit <= len(marker):
        return text[:max(limit, 0)]
    budget = limit - len(marker)
    head, tail = (budget + 1) // 2, budget // 2
    return text[:head] + marker + (text[-tail:] if tail else "")


def truncate_end(text: str, limit: int, ellipsis: str = "…") -> str:
    if len(text) <= limit:
        return text
    return text[:max(limit - len(ellipsis), 0)] + ellipsis[:limit]


def keep_tail(text: str, limit: int, ellipsis: str = "…") -> str:
    """The last ``limit`` characters, for log output whose end matters most."""
    if len(text) <= limit:
        return text
    return ellipsis[:limit] + text[len(text) - max(limit - len(ellipsis), 0):]


def format_tokens(n: int | None) -> str:
    """1234 -> "1.2k", 2_500_000 -> "2.5M"."""
    value = float(n or 0)
    for unit in ("", "k", "M", "B"):
        if abs(value) < 999.95 or unit == "B":
            return f"{value:.0f}" if not unit else f"{value:.1f}".removesuffix(".0") + unit
        value /= 1000
    raise AssertionError("unreachable")


def format_cost(usd: float | None) -> str:
    if usd is None:
        return "—"
    if 0 < usd < 0.01:
        return "<$0.01"
    return f"${usd:,.2f}"


def format_duration(seconds: int) -> str:
    seconds = max(int(seconds), 1)
    if seconds < 60:
        return f"{seconds} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"


def format_time(moment: datetime | None) -> str | None:
    if not isinstance(moment, datetime):
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


# --- escaping user text ---------------------------------------------------------------------------

ZWJ = "\u200d"
MENTION_RE = re.compile(r"(?<![A-Za-z0-9])@(?=[A-Za-z0-9])")
SLASH_COMMAND_RE = re.compile(r"(?<![\w/.~:\-])/(?=[A-Za-z])")
TAG_RE = re.compile(r"<(?=[A-Za-z/!?])")
LINE_TRIGGER_RE = re.compile(r"^(\s*)([/@])(?=[A-Za-z])")
FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
PIPE_RE = re.compile(r"(\\*)\|")
CODE_SPAN_RE = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)")
LOGIN_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*)(?:\[bot\])?$")


def strip_markers(text: str) -> str:
    return ANY_MARKER_RE.sub("", text)


def neutralise(text: str) -> str:
    """Defuse mentions, slash commands and HTML tags in one piece of prose; code spans, which
    never ping or trigger, are kept as they are so that what they show can be copied."""
    pieces, at = [], 0
    for span in CODE_SPAN_RE.finditer(text):
        pieces += [_neutralise_prose(text[at:span.start()]), span.group(0)]
        at = span.end()
    return "".join([*pieces, _neutralise_prose(text[at:])])


def _neutralise_prose(text: str) -> str:
    text = MENTION_RE.sub("@" + ZWJ, text)
    text = SLASH_COMMAND_RE.sub("/" + ZWJ, text)
    return TAG_RE.sub("&lt;", text)


def inline_text(text: str | None, limit: int | None = None) -> str:
    """User text made safe for one line of markdown (a heading, a list item, a table cell)."""
    flat = " ".join(strip_markers(as_text(text)).split())
    if limit is not None:
        flat = truncate_end(flat, limit)
    return neutralise(flat)


def as_text(value: Any) -> str:
    return "" if value is None else str(value)


def markdown_block(text: str | None) -> str:
    """Multi-line user or agent markdown made safe: prose neutralised, code fences kept and closed."""
    lines, fence = [], None
    for line in strip_markers(as_text(text)).replace("\r\n", "\n").split("\n"):
        opening = FENCE_RE.match(line)
        if fence is None:
            fence = opening.group(1) if opening else None
            lines.append(line if opening else neutralise(line))
        else:
            fence = None if closes_fence(line, fence) else fence
            lines.append(LINE_TRIGGER_RE.sub(r"\1\2" + ZWJ, line))
    if fence is not None:
        lines.append(fence)
    return "\n".join(lines).strip("\n")


def closes_fence(line: str, fence: str) -> bool:
    body = line.strip()
    return len(body) >= len(fence) and set(body) == {fence[0]} and len(line) - len(line.lstrip(" ")) < 4


def code_span(text: str | None, limit: int | None = None) -> str:
    """Inline code that survives backticks in the text; code never pings or triggers."""
    flat = " ".join(strip_markers(as_text(text)).split())
    if limit is not None:
        flat = truncate_end(flat, limit)
    ticks = "`" * (longest_run(flat, "`") + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat else ""
    return f"{ticks}{pad}{flat}{pad}{ticks}"


def code_block(text: str | None, info: str = "text") -> str:
    body = strip_markers(as_text(text)).replace("\r\n", "\n").strip("\n")
    fence = "`" * max(3, longest_run(body, "`") + 1)
    return f"{fence}{info}\n{body}\n{fence}"


def longest_run(text: str, char: str) -> int:
    runs = re.findall(re.escape(char) + "+", text)
    return max((len(run) for run in runs), default=0)


def escape_pipes(cell: str) -> str:
    """Make every ``|`` literal in a table cell (an odd number of backslashes before it)."""
    return PIPE_RE.sub(lambda m: m.group(1) + ("\\" if len(m.group(1)) % 2 == 0 else "") + "|", cell)


def table_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(escape_pipes(cell) for cell in cells) + " |"


def link(label: str, url: str) -> str:
    safe = "".join(URL_ESCAPES.get(char, char) for char in str(url))
    return f"[{label}]({safe})"


URL_ESCAPES = {" ": "%20", "(": "%28", ")": "%29", "|": "%7C", "<": "%3C", ">": "%3E", "\n": ""}


def mention(login: str | None) -> str:
    """Ping a GitHub login we are replying to; anything that is not a login is neutralised."""
    login = str(login or "").strip().lstrip("@")
    return f"@{login}" if LOGIN_RE.match(login) else inline_text(login)


def quiet_user(login: str | None) -> str:
    """Name a person without pinging them."""
    return "@" + ZWJ + inline_text(str(login).lstrip("@"), 60) if login else ""


def command_text(command: str, prefix: str = DEFAULT_PREFIX) -> str:
    """A command as typed: bare names get the prefix, full commands are kept."""
    command = " ".join(str(command or "").split())
    if command.startswith(("/", "@")):
        return command
    return f"{prefix} {command}".strip()


# --- reading the duck-typed inputs ------------------------------------------------------------------

def value_of(item: Any) -> str:
    return str(getattr(item, "value", item) or "")


def status_of(obj: Any) -> str:
    return value_of(getattr(obj, "status", "")).lower()


def state_of(obj: Any) -> Mapping[str, Any]:
    state = getattr(obj, "runtime_state", None)
    return state if isinstance(state, Mapping) else {}


def kind_of(protocol: Any) -> str:
    return value_of(getattr(protocol, "kind", "run")).lower() or "run"


def step_number(step: Any) -> int:
    """The 1-based number people see and type (`retry 2`); ``step_index`` is 0-based."""
    return int(getattr(step, "step_index", 0) or 0) + 1


def ordered(steps: Iterable[Any]) -> list[Any]:
    return sorted(steps or (), key=step_number)


def verdict_of(step: Any) -> str | None:
    verdict = state_of(step).get("verdict")
    return str(verdict).strip().upper() if verdict else None


def failed_qa(step: Any) -> bool:
    return verdict_of(step) == "FAIL" and status_of(step) not in SETTLED_STEP


def qa_error(step: Any) -> bool:
    """The step is blocked because its QA run failed before giving a verdict."""
    return status_of(step) == S.BLOCKED and bool(state_of(step).get("qa_error"))


def step_to_retry(steps: Iterable[Any]) -> Any | None:
    """The step a Retry button or a bare `retry` acts on (workflow.step_for)."""
    return step_for(StepAction.RETRY, steps)


def step_to_approve(steps: Iterable[Any]) -> Any | None:
    """The step an Approve button acts on: the first waiting for QA or failed by QA."""
    return next((s for s in ordered(steps) if status_of(s) == S.NEEDS_QA or failed_qa(s)), None)


def total_tokens(protocol: Any, steps: Sequence[Any]) -> int:
    return int(getattr(protocol, "tokens_used", 0) or 0) or sum(int(getattr(s, "tokens_used", 0) or 0) for s in steps)


def total_cost(protocol: Any, steps: Sequence[Any]) -> float | None:
    if getattr(protocol, "cost_usd", None) is not None:
        return float(protocol.cost_usd)
    costs = [s.cost_usd for s in steps if getattr(s, "cost_usd", None) is not None]
    return sum(costs) if costs else None


# --- levels of detail: how the long parts shrink to fit -----------------------------------------------

@dataclass(frozen=True)
class Detail:
    summary_chars: int | None  # per-step text (summary, error); None = whole, 0 = no step details
    attention_only: bool  # step details only for failed, blocked and needs-QA steps
    iterations: int | None  # Ralph iterations listed; None = all
    rows: int | None  # step table rows; None = all
    tails: bool  # Ralph feedback output

    @property
    def trimmed(self) -> bool:
        return self != DETAIL_LEVELS[0]


# From most to least detailed: step texts shrink first, then the iteration list, then the table.
DETAIL_LEVELS = (
    Detail(None, False, None, None, True),
    Detail(2000, False, 20, None, True),
    Detail(300, False, 10, None, False),
    Detail(300, True, 5, None, False),
    Detail(0, True, 5, None, False),
    *(Detail(0, True, 3, rows, False) for rows in (1000, 500, 250, 120, 60)),
    Detail(0, True, 1, 30, False),
    Detail(0, True, 1, 10, False),
)
FIT_NOTE = "\n\n…(truncated to fit GitHub's size limit)…\n\n"


def fit(render: Callable[[Detail], str], limit: int) -> str:
    """The most detailed rendering that fits ``limit``; as a last resort, cut the middle."""
    for detail in DETAIL_LEVELS:
        text = render(detail)
        if len(text) <= limit:
            return text
    return truncate_middle(text, limit, FIT_NOTE)


def sections(*parts: str | None) -> str:
    return "\n\n".join(part for part in parts if part)


EARLY_STOP = max(COMMENT_BODY_MAX, PR_BODY_MAX, CHECK_OUTPUT_MAX)


def join_within(parts: Iterable[str], sep: str = "\n") -> str:
    """Join lazily, stopping once past every GitHub limit: ``fit`` discards such a rendering anyway."""
    taken, size = [], 0
    for part in parts:
        taken.append(part)
        size += len(part) + len(sep)
        if size > EARLY_STOP:
            break
    return sep.join(taken)


# --- status comment parts -------------------------------------------------------------------------------

def status_label(status: str) -> str:
    return STATUS_LABEL.get(status, status or "unknown")


def status_header(protocol: Any) -> str:
    status = status_of(protocol)
    emoji = PROTOCOL_EMOJI.get(status, UNKNOWN_EMOJI)
    return f"### {emoji} {inline_text(protocol.protocol_name, 120)} · {status_label(status)}"


def meta_line(protocol: Any) -> str:
    parts = []
    if getattr(protocol, "issue_number", None):
        parts.append(f"Issue #{int(protocol.issue_number)}")
    if getattr(protocol, "branch", None):
        parts.append(f"{code_span(protocol.branch, 120)} → {code_span(protocol.base_branch or 'main', 120)}")
    if getattr(protocol, "engine", None):
        model = f" · {code_span(protocol.model, 80)}" if getattr(protocol, "model", None) else ""
        parts.append(f"{code_span(value_of(protocol.engine), 40)}{model}")
    if kind_of(protocol) != "run":
        parts.append(f"mode {code_span(kind_of(protocol))}")
    if getattr(protocol, "created_by", None):
        parts.append(f"by {quiet_user(protocol.created_by)}")
    return " · ".join(parts)


LINK_LABELS = MappingProxyType({"check_run": "Check run", "pr": "Pull request", "logs": "Run logs"})


def links_line(protocol: Any, links: Mapping[str, str]) -> str:
    merged = dict(links)
    if getattr(protocol, "pr_url", None) and "pr" not in merged:
        merged["pr"] = protocol.pr_url
    known = [key for key in LINK_LABELS if merged.get(key)]
    others = sorted(key for key in merged if key not in LINK_LABELS and merged[key])
    items = [link(link_label(key, protocol), merged[key]) for key in known + others]
    return "🔗 " + " · ".join(items) if items else ""


def link_label(key: str, protocol: Any) -> str:
    if key == "pr" and getattr(protocol, "pr_number", None):
        return f"Pull request #{int(protocol.pr_number)}"
    return LINK_LABELS.get(key) or inline_text(key.replace("_", " ").capitalize(), 40)


def description_quote(protocol: Any, detail: Detail) -> str:
    text = getattr(protocol, "description", None)
    if not text or detail.summary_chars == 0:
        return ""
    body = markdown_block(truncate_middle(str(text), 500, "\n…\n"))
    return "\n".join("> " + line if line else ">" for line in body.split("\n"))


def step_table(steps: Sequence[Any], rows: int | None) -> str:
    if not steps:
        return "_No steps yet._"
    header = [table_row(["#", "Step", "Status", "QA", "Tokens", "Cost"]), "|--:|---|---|---|--:|--:|"]
    return join_within(chain(header, (table_row(cells) for cells in visible_rows(steps, rows))))


def visible_rows(steps: Sequence[Any], rows: int | None) -> Iterable[list[str]]:
    if rows is None or len(steps) <= rows:
        return (step_cells(step) for step in steps)
    head, tail = steps[: rows // 2], steps[len(steps) - rows // 2:]
    gap = ["…", f"_{len(steps) - len(head) - len(tail)} more steps_", "", "", "", ""]
    return [step_cells(s) for s in head] + [gap] + [step_cells(s) for s in tail]


def step_cells(step: Any) -> list[str]:
    return [str(step_number(step)), step_name_cell(step), step_status_cell(step), qa_cell(step),
            format_tokens(getattr(step, "tokens_used", 0)), format_cost(getattr(step, "cost_usd", None))]


def step_name_cell(step: Any) -> str:
    return inline_text(step.step_name, 80) or "_(unnamed)_"


def step_status_cell(step: Any) -> str:
    status = status_of(step)
    retries = int(getattr(step, "retries", 0) or 0)
    suffix = f" · retry {retries}" if retries else ""
    return f"{STEP_EMOJI.get(status, UNKNOWN_EMOJI)} {status_label(status)}{suffix}"


def qa_cell(step: Any) -> str:
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


def totals_line(protocol: Any, steps: Sequence[Any]) -> str:
    done = sum(1 for s in steps if status_of(s) == S.COMPLETED)
    tokens = format_tokens(total_tokens(protocol, steps))
    return f"**Total:** {done}/{len(steps)} steps completed · {tokens} tokens · {format_cost(total_cost(protocol, steps))}"


def attention_box(protocol: Any, steps: Sequence[Any]) -> str:
    """The reason a blocked or failed protocol stopped, as a GitHub alert."""
    status = status_of(protocol)
    if status not in ATTENTION_PROTOCOL:
        return ""
    kind = "WARNING" if status == P.BLOCKED else "CAUTION"
    lines = [f"[!{kind}]", f"**{status_label(status).capitalize()}**" + reason_suffix(protocol)]
    step = step_to_retry(steps)
    step = step if step is not None else step_to_approve(steps)
    if step is not None:
        lines += ["", step_problem(step)]
    return "\n".join("> " + line if line else ">" for line in "\n".join(lines).split("\n"))


def pull_request_problem(protocol: Any, prefix: str = DEFAULT_PREFIX) -> str:
    """Why the pull request could not be opened, and how to try again (empty when it could)."""
    reason = state_of(protocol).get("pr_error")
    if not reason:
        return ""
    lines = ["[!CAUTION]", "**The pull request could not be opened**" + labelled("", reason), "",
             f"Type {code_span(f'{prefix} open-pr', 80)} to try again."]
    return "\n".join("> " + line if line else ">" for line in "\n".join(lines).split("\n"))


def reason_suffix(protocol: Any) -> str:
    state = state_of(protocol)
    reason = state.get("blocked_reason") or state.get("error")
    return labelled("", reason) if reason else ""


def labelled(label: str, text: Any, limit: int = 1500) -> str:
    """``label: reason`` when the reason is one short line, else the label over a fenced block."""
    text = as_text(text).strip()
    if "\n" not in text and len(text) <= 200:
        return f"{label}: {inline_text(text)}"
    return f"{label}:\n\n{code_block(truncate_middle(text, limit))}"


def step_problem(step: Any) -> str:
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


def next_commands(protocol: Any, steps: Sequence[Any]) -> list[tuple[str, str]]:
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
        commands += approve_command(steps)
    commands += STATE_COMMANDS.get(status, ())
    if status == P.PLANNED and kind_of(protocol) == "plan":
        commands.insert(0, ("run", "start working on the issue"))
    if status == P.COMPLETED and not getattr(protocol, "pr_url", None) and kind_of(protocol) in {"run", "ralph"}:
        commands.append(("open-pr", "open the pull request"))
    return commands


def approve_command(steps: Sequence[Any]) -> list[tuple[str, str]]:
    step = step_to_approve(steps)
    if step is None:
        return []
    why = "despite the failed QA" if failed_qa(step) else "without waiting for QA"
    return [(f"approve {step_number(step)}", f"accept step {step_number(step)} {why}")]


STATE_COMMANDS: Mapping[str, tuple[tuple[str, str], ...]] = MappingProxyType({
    P.PENDING: (("cancel", "stop this run"),),
    P.PLANNING: (("cancel", "stop this run"),),
    P.PLANNED: (("cancel", "stop this run"),),
    P.RUNNING: (("pause", "pause the run"), ("cancel", "stop the run and its agents")),
    P.PAUSED: (("resume", "continue where it stopped"), ("cancel", "stop this run")),
    P.BLOCKED: (("cancel", "give up on this run"),),
    P.CANCELLED: (("run", "start a new run"),),
})


def next_section(protocol: Any, steps: Sequence[Any], next_hint: str | None, prefix: str) -> str:
    items = [f"- {next_hint}"] if next_hint else []
    items += [f"- {code_span(command_text(cmd, prefix))} — {what}" for cmd, what in next_commands(protocol, steps)]
    return "**What to do next**\n" + "\n".join(items) if items else ""


def ralph_section(protocol: Any, detail: Detail) -> str:
    iterations = [i for i in state_of(protocol).get("iterations") or [] if isinstance(i, Mapping)]
    if kind_of(protocol) != "ralph" or not iterations:
        return ""
    met = any(i.get("promise_met") for i in iterations)
    title = f"#### 🔁 Ralph loop · {len(iterations)} iterations" + (" · promise met ✅" if met else "")
    shown = iterations if detail.iterations is None else iterations[-detail.iterations:]
    rows = [table_row(["Iteration", "Agent", "Feedback", "Promise"]), "|--:|---|---|---|"]
    if len(shown) < len(iterations):
        rows.append(table_row(["…", f"_{len(iterations) - len(shown)} earlier iterations_", "", ""]))
    tails = feedback_tails(iterations[-1]) if detail.tails else ""
    return sections(title, join_within(chain(rows, (table_row(iteration_cells(i)) for i in shown))), tails)


def iteration_cells(iteration: Mapping[str, Any]) -> list[str]:
    feedback = [f for f in iteration.get("feedback") or [] if isinstance(f, Mapping)]
    checks = " · ".join(f"{exit_emoji(f.get('exit_code'))} {code_span(f.get('command'), 60)}" for f in feedback)
    promise = "✅ met" if iteration.get("promise_met") else "—"
    return [inline_text(iteration.get("iteration", "?"), 10), exit_cell(iteration.get("exit_code")), checks or "—", promise]


def exit_emoji(code: Any) -> str:
    return "⚪" if code is None else ("✅" if code == 0 else "❌")


def exit_cell(code: Any) -> str:
    return "—" if code is None else f"{exit_emoji(code)} exit {inline_text(code, 10)}"


def feedback_tails(iteration: Mapping[str, Any]) -> str:
    feedback = [f for f in iteration.get("feedback") or [] if isinstance(f, Mapping) and f.get("output_tail")]
    if not feedback:
        return ""
    blocks = [f"{code_span(f.get('command'), 100)} {exit_cell(f.get('exit_code'))}\n\n{code_block(keep_tail(str(f['output_tail']), 3000))}"
              for f in feedback]
    summary = f"Feedback output · iteration {inline_text(iteration.get('iteration', '?'), 10)}"
    return collapsible(summary, "\n\n".join(blocks))


def collapsible(summary: str, body: str) -> str:
    return f"<details><summary>{summary}</summary>\n\n{body}\n\n</details>"


def step_details(steps: Sequence[Any], detail: Detail) -> str:
    if detail.summary_chars == 0:
        return ""
    shown = (step for step in steps if not detail.attention_only or needs_attention(step))
    blocks = (step_detail(step, detail.summary_chars) for step in shown)
    return join_within((block for block in blocks if block), "\n\n")


def needs_attention(step: Any) -> bool:
    return status_of(step) in RETRYABLE_STEP or status_of(step) == S.NEEDS_QA or failed_qa(step)


def step_detail(step: Any, chars: int | None) -> str:
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


def footer(protocol: Any, trimmed: bool) -> str:
    notes = []
    updated = format_time(getattr(protocol, "updated_at", None))
    if updated:
        notes.append(f"Updated {updated}")
    if trimmed:
        notes.append("some details were shortened to fit GitHub's limits; the run logs have everything")
    return f"<sub>{' · '.join(notes)}</sub>" if notes else ""


NO_LINKS: Mapping[str, str] = MappingProxyType({})


def status_comment(
    protocol: Any,
    steps: Iterable[Any],
    *,
    links: Mapping[str, str] = NO_LINKS,
    next_hint: str | None = None,
    command_prefix: str = DEFAULT_PREFIX,
) -> str:
    """The one status comment of a protocol, always within COMMENT_BODY_MAX."""
    steps = ordered(steps)
    attention = attention_box(protocol, steps)
    upcoming = next_section(protocol, steps, next_hint, command_prefix)

    def render(detail: Detail) -> str:
        return sections(
            status_marker(protocol.id) + "\n" + status_header(protocol),
            meta_line(protocol),
            links_line(protocol, links),
            description_quote(protocol, detail),
            attention,
            pull_request_problem(protocol, command_prefix),
            unmet_promise_note(unmet) if (unmet := unmet_promise(steps)) is not None else None,
            upcoming if attention else None,
            step_table(steps, detail.rows) + "\n\n" + totals_line(protocol, steps),
            None if attention else upcoming,
            ralph_section(protocol, detail),
            step_details(steps, detail),
            footer(protocol, detail.trimmed),
        )

    return fit(render, COMMENT_BODY_MAX)


# --- check runs -------------------------------------------------------------------------------------------

def check_run_state(protocol: Any, steps: Iterable[Any] = ()) -> tuple[str, str | None]:
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


def unmet_promise(steps: Iterable[Any]) -> Any | None:
    """The Ralph step that stopped at its iteration limit without the promise it was given, if any."""
    return next((step for step in steps if state_of(step).get("stopped") == "max_iterations"
                 and (getattr(step, "policy", None) or {}).get("promise")), None)


def unmet_promise_note(step: Any) -> str:
    promise = (getattr(step, "policy", None) or {}).get("promise")
    iterations = len(state_of(step).get("iterations") or [])
    return (f"⚠️ The Ralph loop stopped at its limit of {iterations} iterations without the promise "
            f"{code_span(promise, 100)}: "
            "the work is kept as a draft to review, not a finished change.")


def check_run_name(protocol: Any) -> str:
    name = " ".join(strip_markers(str(protocol.protocol_name or "")).split())
    return truncate_end(f"agentry: {name}", CHECK_TITLE_MAX)


def check_title(protocol: Any, steps: Sequence[Any]) -> str:
    status = status_of(protocol)
    done = sum(1 for s in steps if status_of(s) == S.COMPLETED)
    title = (f"{PROTOCOL_EMOJI.get(status, UNKNOWN_EMOJI)} {status_label(status).capitalize()} · "
             f"{done}/{len(steps)} steps · {format_tokens(total_tokens(protocol, steps))} tokens · "
             f"{format_cost(total_cost(protocol, steps))}")
    return truncate_end(title, CHECK_TITLE_MAX)


def check_summary(protocol: Any, steps: Sequence[Any], prefix: str) -> str:
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


def check_text(protocol: Any, steps: Sequence[Any]) -> str:
    def render(detail: Detail) -> str:
        body = sections(ralph_section(protocol, detail), step_details(steps, detail))
        return sections(body or "_No step details yet._", footer(protocol, detail.trimmed))

    return fit(render, CHECK_OUTPUT_MAX)


def check_run_actions(protocol: Any, steps: Iterable[Any]) -> list[dict[str, str]]:
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
    protocol: Any,
    steps: Iterable[Any],
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
        payload.update(name=check_run_name(protocol), head_sha=head_sha)
    payload["status"] = status
    if conclusion:
        payload["conclusion"] = conclusion
    if details_url:
        payload["details_url"] = details_url
    payload["external_id"] = str(protocol.id)
    payload["output"] = {
        "title": check_title(protocol, steps),
        "summary": check_summary(protocol, steps, command_prefix),
        "text": check_text(protocol, steps),
    }
    payload["actions"] = check_run_actions(protocol, steps)
    return payload


# --- pull requests -----------------------------------------------------------------------------------------

def pr_title(protocol: Any, issue_title: str | None) -> str:
    """The issue's title, else the request's first line, else the protocol name; one line, capped."""
    description = str(getattr(protocol, "description", None) or "").strip().split("\n")[0]
    for candidate in (issue_title, description, str(protocol.protocol_name or "").replace("-", " ")):
        title = " ".join(strip_markers(str(candidate or "")).split())
        if title:
            return truncate_end(title, PR_TITLE_MAX)
    return f"agentry protocol {int(protocol.id)}"


def pr_body(
    protocol: Any,
    steps: Iterable[Any],
    *,
    issue_number: int | None,
    status_comment_url: str | None,
    summary: str | None,
) -> str:
    """PR description: `Closes #N` first, the summary, the step table, a link to the status comment."""
    steps = ordered(steps)
    closes = f"Closes #{int(issue_number)}" if issue_number else ""

    def render(detail: Detail) -> str:
        chars = detail.summary_chars if detail.summary_chars != 0 else 300
        text = markdown_block(summary if chars is None else truncate_middle(summary or "", chars, "\n\n…\n\n"))
        return sections(
            closes,
            text,
            "### Steps\n\n" + step_table(steps, detail.rows) + "\n\n" + totals_line(protocol, steps),
            pr_footer(protocol, status_comment_url, issue_number),
        )

    return fit(render, PR_BODY_MAX)


def pr_footer(protocol: Any, status_comment_url: str | None, issue_number: int | None) -> str:
    parts = [f"🤖 Opened by agentry for #{int(issue_number)}" if issue_number else "🤖 Opened by agentry"]
    if status_comment_url:
        parts.append(link("status and commands", status_comment_url))
    if getattr(protocol, "engine", None):
        parts.append(f"engine {code_span(value_of(protocol.engine), 40)}")
    return "---\n<sub>" + " · ".join(parts) + "</sub>"


# --- replies to commands -----------------------------------------------------------------------------------

def reply_denied(user: str, command: str, required: str, actual: str, repo: str) -> str:
    required_text = inline_text(required, 20) or "write"
    repo_text = inline_text(repo, 140)
    return (
        f"🔒 {mention(user)}, {code_span(command, 200)} needs **{required_text}** access to "
        f"{repo_text}; you have **{inline_text(actual, 20) or 'none'}**.\n\n"
        f"Only people with {required_text} access to {repo_text} can run it. "
        "Ask a maintainer to run it for you."
    )


def reply_unknown(name: str, suggestion: str | None, help_markdown: str, *, command_prefix: str = DEFAULT_PREFIX) -> str:
    lines = [f"❓ Unknown command {code_span(command_text(name, command_prefix), 100)}."]
    if suggestion:
        lines[0] += f" Did you mean {code_span(command_text(suggestion, command_prefix), 100)}?"
    body = sections(*lines, collapsible("Available commands", help_markdown) if help_markdown else None)
    return truncate_middle(body, COMMENT_BODY_MAX)


def reply_error(command: str, message: str, usage: str) -> str:
    text = "⚠️ " + labelled(f"{code_span(command, 200)} could not run", message, 4000)
    usage_block = "**Usage**\n\n" + code_block(usage) if usage else None
    return truncate_middle(sections(text, usage_block), COMMENT_BODY_MAX)


def reply_conflict(command: str, reason: str, *, command_prefix: str = DEFAULT_PREFIX) -> str:
    return (
        "⛔ " + labelled(f"{code_span(command, 200)} can't be done now", reason, 4000) + "\n\n"
        f"Nothing was changed. {code_span(command_text('status', command_prefix))} shows the current state."
    )


def reply_rate_limited(user: str, retry_after_seconds: int) -> str:
    return (
        f"⏳ {mention(user)}, you are sending commands faster than agentry accepts them. "
        f"Try again in {format_duration(retry_after_seconds)}."
    )


def reply_answer(question: str, answer: str, *, engine: str, session_note: str | None) -> str:
    """The result of `ask`: the question quoted, the answer, who answered."""
    quoted = "\n".join("> " + line if line else ">" for line in markdown_block(truncate_middle(question or "", 1000)).split("\n"))
    signature = f"<sub>💬 Answered by {code_span(value_of(engine), 40)} in a read-only session."
    signature += f" {session_note}</sub>" if session_note else "</sub>"
    room = COMMENT_BODY_MAX - len(quoted) - len(signature) - 200
    body = markdown_block(truncate_middle(answer or "_(no answer)_", max(room, 0) * 9 // 10))
    return truncate_middle(sections(quoted, body, signature), COMMENT_BODY_MAX)


__all__ = [
    "ACTIONS_MAX", "ACTION_DESCRIPTION_MAX", "ACTION_IDENTIFIER_MAX", "ACTION_LABEL_MAX",
    "ANNOTATIONS_PER_REQUEST", "CHECK_OUTPUT_MAX", "CHECK_TITLE_MAX", "COMMENT_BODY_MAX",
    "DEFAULT_PREFIX", "PR_BODY_MAX", "PR_TITLE_MAX",
    "check_run_actions", "check_run_name", "check_run_payload", "check_run_state", "code_span",
    "find_protocol_id", "format_cost", "format_tokens", "inline_text", "markdown_block",
    "next_commands", "pr_body", "pr_title", "reply_answer", "reply_conflict", "reply_denied",
    "reply_error", "reply_rate_limited", "reply_unknown", "status_comment", "status_header",
    "status_marker", "step_number", "step_to_approve", "step_to_retry", "truncate_middle",
]
