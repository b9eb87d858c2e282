"""Types and small helpers shared by the runner and the per-CLI modules.

The per-CLI modules (``codex``, ``claude``, ``opencode``, ``gemini``, ``aider``,
``command``) each expose the same surface:

* ``NAME``, ``INSTALL_HINT``
* ``CONFIG_NAME``: where ``AGENTRY_<ENGINE>_CONFIG`` is copied, relative to the
  run home (``None``: the engine takes no config file)
* ``DEFAULT_CONFIG``: file content written there when no config file is set
  (``None``: nothing is written)
* ``QUIET_ENV``: static variables that switch off update checks and telemetry
* ``PROMPT_ON_STDIN``: the prompt goes on stdin instead of argv
* ``build_command(request, config) -> list[str]`` (``argv[0]`` is the
  configured path or the bare executable name; the runner resolves it)
* ``run_env(request, home, config_file, config) -> dict[str, str]``
* ``PARSER``: a :class:`StreamParser` subclass fed one stdout line at a time

and optionally:

* ``HOME_FILES``: ``{path relative to the run home: content}`` written before each run
* ``complete_config(text, env) -> str``: the installed config file, completed for this run
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class EngineNotInstalled(Exception):
    """The engine's executable cannot be found; the message says what to install."""


@dataclass(frozen=True)
class EngineConfig:
    """Engine settings, built by the integrator from ``AGENTRY_*`` variables."""

    bins: Mapping[str, str] = field(default_factory=dict)
    extra_args: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    config_files: Mapping[str, str] = field(default_factory=dict)
    command_line: tuple[str, ...] = ()
    timeout_seconds: float = 3600
    idle_timeout_seconds: float = 600
    base_env: Mapping[str, str] = field(default_factory=dict)
    max_final_message_chars: int = 200_000
    # Not in the original brief; all optional.
    kill_grace_seconds: float = 5.0  # SIGTERM -> SIGKILL delay for the process group
    max_log_bytes: int = 64 * 1024 * 1024  # per run; later output is counted, not logged
    home_parent: str | None = None  # where fresh run homes are created (default: TMPDIR)
    sandbox: Any = None  # a bot.sandbox.Sandbox; None runs the agent unsandboxed (AGENTRY_SANDBOX=none)
    allow_hosts: tuple[str, ...] = ()  # AGENTRY_SANDBOX_ALLOW_HOSTS, besides the provider endpoints
    redact: Callable[[str], str] = str  # applied to every output line before it goes anywhere
    max_retries: int = 3  # the CLI's retry/reconnect notices in a row, with no progress, before it is stopped


@dataclass(frozen=True)
class AgentRequest:
    engine: str
    prompt: str
    cwd: Path
    kind: str  # plan | execute | qa | ralph | ask
    model: str | None = None
    session_id: str | None = None
    read_only: bool = False
    env: Mapping[str, str] = field(default_factory=dict)
    # Not in the original brief: a persistent home reused across runs (kept
    # after the run). Resuming a session needs it, since the CLIs keep their
    # sessions in the home. None: a fresh temp home, deleted after the run.
    home_dir: Path | None = None


@dataclass
class TokenUsage:
    """Token counts as the CLI reports them.

    ``input`` counts every prompt token, cached ones included; ``cached`` is
    the part served from the provider's cache; ``total`` is the CLI's own
    total when it reports one, else ``input + output``.
    """

    input: int = 0
    output: int = 0
    cached: int = 0
    total: int = 0


@dataclass
class AgentResult:
    ok: bool
    engine: str
    exit_code: int | None
    final_message: str
    session_id: str | None
    usage: TokenUsage
    cost_usd: float | None
    error: str | None
    timed_out: bool = False
    idle_timed_out: bool = False
    duration_seconds: float = 0.0
    output_bytes: int = 0
    gave_up_retrying: bool = False  # stopped: the CLI kept retrying its provider
    stopped: bool = False  # stopped on request (the caller's stop event)


@dataclass
class ParseOutcome:
    """What a parser concludes from a finished stream."""

    ok: bool
    final_message: str = ""
    session_id: str | None = None
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost_usd: float | None = None
    error: str | None = None


class StreamParser:
    """Consumes one output line at a time; keeps only what the result needs. No I/O.

    ``progress`` counts the lines that show the agent working; ``retries`` holds the CLI's own
    notices that it is retrying or reconnecting to its provider, which are no progress.
    """

    def __init__(self, max_message_chars: int = 200_000) -> None:
        self.max_message_chars = max_message_chars
        self.stderr_tail: deque[str] = deque(maxlen=3)
        self.progress = 0
        self.retries: list[str] = []

    def feed(self, line: str) -> None:
        """One stdout line, without its newline."""

    def feed_stderr(self, line: str) -> None:
        """One stderr line; the last few explain failures the stream does not."""
        if line.strip():
            self.stderr_tail.append(line.strip()[:300])
        notice = self.stderr_retry(line)
        if notice:
            self.note_retry(notice)

    def stderr_retry(self, line: str) -> str | None:
        """The retry notice a stderr line is, if it is one."""
        return None

    def note_retry(self, notice: str) -> None:
        self.retries.append(notice.strip()[:500])
        del self.retries[:-20]

    def tail(self) -> str:
        """The last stderr lines, for messages that have no better cause."""
        return " | ".join(self.stderr_tail)

    def explain(self, reason: str, detail: str | None = None) -> str:
        """``reason``, followed by ``detail`` or else the last stderr lines."""
        detail = detail or " | ".join(self.stderr_tail)
        return f"{reason}: {detail}" if detail else reason

    def finish(self, exit_code: int | None) -> ParseOutcome:
        raise NotImplementedError

    def cap(self, text: str) -> str:
        return cap_text(text, self.max_message_chars)


class JsonLinesParser(StreamParser):
    """Base for the CLIs that print one JSON object per line."""

    def __init__(self, max_message_chars: int = 200_000) -> None:
        super().__init__(max_message_chars)
        self.last_text_line: str | None = None  # last non-JSON line, for error reports

    def feed(self, line: str) -> None:
        event = parse_json_object(line)
        if event is None:
            if line.strip():
                self.last_text_line = line.strip()[:500]
            return
        retries = len(self.retries)
        self.handle(event)
        if len(self.retries) == retries:
            self.progress += 1

    def handle(self, event: dict[str, Any]) -> None:
        raise NotImplementedError

    def fallback_error(self, exit_code: int | None, what: str) -> str:
        """An error text when the stream itself did not say what went wrong."""
        reason = f"exit code {exit_code}" if exit_code not in (0, None) else what
        return self.explain(reason, self.last_text_line)


ANSI_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def strip_ansi(text: str) -> str:
    """``text`` without terminal colour and cursor sequences."""
    return ANSI_ESCAPE.sub("", text) if "\x1b" in text else text


def parse_json_object(line: str) -> dict[str, Any] | None:
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def cap_text(text: str, limit: int) -> str:
    if limit <= 0 or len(text) <= limit:
        return text
    return text[:limit] + "\n[... truncated]"


def as_int(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, (int, float)):
        return int(value)
    return 0


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
