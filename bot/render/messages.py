"""Pull-request titles and bodies, and replies to commands."""

from __future__ import annotations

from collections.abc import Iterable

from bot.render.attention import labelled
from bot.render.fitting import Detail, fit, sections
from bot.render.markdown import (
    code_block,
    code_span,
    command_text,
    inline_text,
    link,
    markdown_block,
    mention,
    strip_markers,
)
from bot.render.status_comment import collapsible
from bot.render.status_parts import step_table, totals_line
from bot.render.text import (
    COMMENT_BODY_MAX,
    DEFAULT_PREFIX,
    PR_BODY_MAX,
    PR_TITLE_MAX,
    format_duration,
    truncate_end,
    truncate_middle,
)
from bot.render.views import ProtocolView, StepView, ordered, value_of

# --- pull requests -----------------------------------------------------------------------------------------

def pr_title(protocol: ProtocolView, issue_title: str | None) -> str:
    """The issue's title, else the request's first line, else the protocol name; one line, capped."""
    description = str(getattr(protocol, "description", None) or "").strip().split("\n")[0]
    for candidate in (issue_title, description, str(protocol.protocol_name or "").replace("-", " ")):
        title = " ".join(strip_markers(str(candidate or "")).split())
        if title:
            return truncate_end(title, PR_TITLE_MAX)
    return f"agentry protocol {protocol.id}"


def pr_body(
    protocol: ProtocolView,
    steps: Iterable[StepView],
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
            _pr_footer(protocol, status_comment_url, issue_number),
        )

    return fit(render, PR_BODY_MAX)


def _pr_footer(protocol: ProtocolView, status_comment_url: str | None, issue_number: int | None) -> str:
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

