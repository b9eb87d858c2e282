"""GitHub's size limits, agentry's hidden markers, and cutting and formatting plain text."""

from __future__ import annotations

import hashlib
import math
import re
from datetime import datetime, timezone

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
_TRUNCATION_MARKER = "\n…(truncated)…\n"
# --- markers ------------------------------------------------------------------------------------

_MARKER_RE = re.compile(r"\s*<!-- agentry:status protocol=(\d+) -->")
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
    match = _MARKER_RE.match(comment_body or "")
    return int(match.group(1)) if match else None
# --- plain text helpers -------------------------------------------------------------------------

def truncate_middle(text: str, limit: int, marker: str = _TRUNCATION_MARKER) -> str:
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
