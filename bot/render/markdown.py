"""The doors user and agent text goes through: one line, a markdown block, a code span."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from bot.render.text import ANY_MARKER_RE, DEFAULT_PREFIX, truncate_end

# --- escaping user text ---------------------------------------------------------------------------

ZWJ = "\u200d"
_MENTION_RE = re.compile(r"(?<![A-Za-z0-9])@(?=[A-Za-z0-9])")
_SLASH_COMMAND_RE = re.compile(r"(?<![\w/.~:\-])/(?=[A-Za-z])")
_TAG_RE = re.compile(r"<(?=[A-Za-z/!?])")
_LINE_TRIGGER_RE = re.compile(r"^(\s*)([/@])(?=[A-Za-z])")
_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_PIPE_RE = re.compile(r"(\\*)\|")
_CODE_SPAN_RE = re.compile(r"(?<!`)(`+)(?!`).+?(?<!`)\1(?!`)")
_LOGIN_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]*)(?:\[bot\])?$")


def strip_markers(text: str) -> str:
    return ANY_MARKER_RE.sub("", text)


def _neutralise(text: str) -> str:
    """Defuse mentions, slash commands and HTML tags in one piece of prose; code spans, which
    never ping or trigger, are kept as they are so that what they show can be copied."""
    pieces, at = [], 0
    for span in _CODE_SPAN_RE.finditer(text):
        pieces += [_neutralise_prose(text[at:span.start()]), span.group(0)]
        at = span.end()
    return "".join([*pieces, _neutralise_prose(text[at:])])


def _neutralise_prose(text: str) -> str:
    text = _MENTION_RE.sub("@" + ZWJ, text)
    text = _SLASH_COMMAND_RE.sub("/" + ZWJ, text)
    return _TAG_RE.sub("&lt;", text)


def inline_text(text: str | None, limit: int | None = None) -> str:
    """User text made safe for one line of markdown (a heading, a list item, a table cell)."""
    flat = " ".join(strip_markers(as_text(text)).split())
    if limit is not None:
        flat = truncate_end(flat, limit)
    return _neutralise(flat)


def as_text(value: Any) -> str:
    return "" if value is None else str(value)


def markdown_block(text: str | None) -> str:
    """Multi-line user or agent markdown made safe: prose neutralised, code fences kept and closed."""
    lines, fence = [], None
    for line in strip_markers(as_text(text)).replace("\r\n", "\n").split("\n"):
        opening = _FENCE_RE.match(line)
        if fence is None:
            fence = opening.group(1) if opening else None
            lines.append(line if opening else _neutralise(line))
        else:
            fence = None if _closes_fence(line, fence) else fence
            lines.append(_LINE_TRIGGER_RE.sub(r"\1\2" + ZWJ, line))
    if fence is not None:
        lines.append(fence)
    return "\n".join(lines).strip("\n")


def _closes_fence(line: str, fence: str) -> bool:
    body = line.strip()
    return len(body) >= len(fence) and set(body) == {fence[0]} and len(line) - len(line.lstrip(" ")) < 4


def code_span(text: str | None, limit: int | None = None) -> str:
    """Inline code that survives backticks in the text; code never pings or triggers."""
    flat = " ".join(strip_markers(as_text(text)).split())
    if limit is not None:
        flat = truncate_end(flat, limit)
    ticks = "`" * (_longest_run(flat, "`") + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") or not flat else ""
    return f"{ticks}{pad}{flat}{pad}{ticks}"


def code_block(text: str | None, info: str = "text") -> str:
    body = strip_markers(as_text(text)).replace("\r\n", "\n").strip("\n")
    fence = "`" * max(3, _longest_run(body, "`") + 1)
    return f"{fence}{info}\n{body}\n{fence}"


def _longest_run(text: str, char: str) -> int:
    runs = re.findall(re.escape(char) + "+", text)
    return max((len(run) for run in runs), default=0)


def escape_pipes(cell: str) -> str:
    """Make every ``|`` literal in a table cell (an odd number of backslashes before it)."""
    return _PIPE_RE.sub(lambda m: m.group(1) + ("\\" if len(m.group(1)) % 2 == 0 else "") + "|", cell)


def table_row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(escape_pipes(cell) for cell in cells) + " |"


def link(label: str, url: str) -> str:
    safe = "".join(_URL_ESCAPES.get(char, char) for char in str(url))
    return f"[{label}]({safe})"


_URL_ESCAPES = {" ": "%20", "(": "%28", ")": "%29", "|": "%7C", "<": "%3C", ">": "%3E", "\n": ""}


def mention(login: str | None) -> str:
    """Ping a GitHub login we are replying to; anything that is not a login is neutralised."""
    login = str(login or "").strip().lstrip("@")
    return f"@{login}" if _LOGIN_RE.match(login) else inline_text(login)


def quiet_user(login: str | None) -> str:
    """Name a person without pinging them."""
    return "@" + ZWJ + inline_text(str(login).lstrip("@"), 60) if login else ""


def command_text(command: str, prefix: str = DEFAULT_PREFIX) -> str:
    """A command as typed: bare names get the prefix, full commands are kept."""
    command = " ".join(str(command or "").split())
    if command.startswith(("/", "@")):
        return command
    return f"{prefix} {command}".strip()
