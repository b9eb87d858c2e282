"""aider: ``aider --message`` (tested with aider-chat 0.86.2).

aider prints human text only and exits 0 even when the API fails (research README
§5.1), so success here means: no litellm/API error pattern in stdout or stderr,
a ``Tokens:`` report (a model reply arrived), and exit code 0. The caller also
checks the git diff. The final message is the reply text printed just before the
last ``Tokens:`` line; tokens and cost come from the ``Tokens:``/``Cost:`` reports.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import cli
from .base import AgentRequest, EngineConfig, ParseOutcome, StreamParser, TokenUsage

NAME = "aider"
INSTALL_HINT = "pip install aider-chat"
CONFIG_NAME = None
DEFAULT_CONFIG = None
# litellm reads its bundled price map instead of fetching one from GitHub.
QUIET_ENV = {"LITELLM_LOCAL_MODEL_COST_MAP": "True"}
PROMPT_ON_STDIN = False
# aider fetches the same map itself unless a fresh copy is in its cache; a non-empty placeholder
# sends it to litellm's bundled one.
HOME_FILES = {".aider/caches/model_prices_and_context_window.json": '{"agentry": {}}\n'}
IDENTITY = {"user.name": "agentry", "user.email": "agentry@localhost"}

# agentry commits, not the agent; nothing aider-specific is written to .gitignore.
HEADLESS_ARGS = (
    "--yes-always",
    "--no-check-update",
    "--analytics-disable",
    "--no-show-model-warnings",
    "--no-show-release-notes",
    "--no-pretty",
    "--no-fancy-input",
    "--no-auto-commits",
    "--no-dirty-commits",
    "--no-gitignore",
)
READ_ONLY_ARGS = ("--chat-mode", "ask", "--dry-run")

ERROR_PATTERNS = (
    re.compile(r"litellm\.\w+Error"),
    re.compile(r"The API provider"),
    re.compile(r"^aider: error:"),
)
# Startup banner and status lines: never part of the model's reply.
STATUS_LINE = re.compile(
    r"^(Aider v\d|Model: |Main model: |Weak model: |Editor model: |Git repo: |Repo-map: "
    r"|Added .* to the chat|Analytics have been|Creating empty file |Use /help "
    r"|HTTPSConnectionPool\(|Applied edit to |Commit [0-9a-f]{7,} |Cost: )"
)
RETRY_LINE = re.compile(r"^Retrying in [\d.]+ seconds")
TOKENS_LINE = re.compile(r"^Tokens: (?P<report>.*)")
TOKEN_COUNT = re.compile(r"(?P<n>[\d.]+)(?P<unit>[kM]?) (?P<what>sent|received|cache write|cache hit)")
SESSION_COST = re.compile(r"\$(?P<usd>[\d.]+) session")


def build_command(request: AgentRequest, config: EngineConfig) -> list[str]:
    """``aider [extra] --message PROMPT --yes-always ... --no-auto-commits [--model M]``.

    aider has no session id; ``request.session_id`` is ignored.
    """
    argv = [cli.executable(NAME, config), *cli.extra_args(NAME, config)]
    argv += ["--message", cli.prompt_argument(request.prompt), *HEADLESS_ARGS]
    if request.read_only:
        argv += READ_ONLY_ARGS
    return argv + cli.model_and_session(request, "--model")


def run_env(request: AgentRequest, home: Path, config_file: Path | None, config: EngineConfig) -> dict[str, str]:
    """Keep aider's history files out of the worktree (aider reads ``AIDER_*`` variables), and give
    git an identity so aider does not write one into the worktree's config (read-only in some runs)."""
    env = {
        "AIDER_CHAT_HISTORY_FILE": str(home / "aider.chat.history.md"),
        "AIDER_INPUT_HISTORY_FILE": str(home / "aider.input.history"),
        "GIT_CONFIG_COUNT": str(len(IDENTITY)),
    }
    for number, (key, value) in enumerate(IDENTITY.items()):
        env[f"GIT_CONFIG_KEY_{number}"], env[f"GIT_CONFIG_VALUE_{number}"] = key, value
    return env


class AiderParser(StreamParser):
    def __init__(self, max_message_chars: int = 200_000) -> None:
        super().__init__(max_message_chars)
        self.reply_lines: list[str] = []
        self.reply_chars = 0
        self.final_message = ""
        self.usage = TokenUsage()
        self.cost: float | None = None
        self.saw_tokens = False
        self.failure: str | None = None
        self.last_error: str | None = None

    def feed(self, line: str) -> None:
        self._check_error(line)
        tokens = TOKENS_LINE.match(line)
        if RETRY_LINE.match(line):
            self.note_retry(self.last_error or line)
        elif tokens:
            self.progress += 1
            self._reply_done(tokens.group("report"))
        elif STATUS_LINE.match(line):
            self._status(line)
        elif self.reply_chars < 2 * self.max_message_chars:
            self.reply_lines.append(line)
            self.reply_chars += len(line) + 1

    def feed_stderr(self, line: str) -> None:
        super().feed_stderr(line)
        self._check_error(line)

    def _check_error(self, line: str) -> None:
        if any(p.search(line) for p in ERROR_PATTERNS):
            self.failure = self.failure or line.strip()[:1000]
            if ERROR_PATTERNS[0].search(line) or self.last_error is None:
                self.last_error = line.strip()[:1000]

    def _status(self, line: str) -> None:
        self._read_cost(line)
        self._new_reply()

    def _reply_done(self, report: str) -> None:
        self.saw_tokens = True
        self.final_message = self.cap("\n".join(self.reply_lines).strip())
        self._new_reply()
        self._add_tokens(report)
        self._read_cost(report)

    def _new_reply(self) -> None:
        self.reply_lines = []
        self.reply_chars = 0

    def _add_tokens(self, report: str) -> None:
        for match in TOKEN_COUNT.finditer(report):
            count = _count(match.group("n"), match.group("unit"))
            what = match.group("what")
            if what == "sent":
                self.usage.input += count
            elif what == "received":
                self.usage.output += count
            elif what == "cache hit":
                self.usage.cached += count
        self.usage.total = self.usage.input + self.usage.output

    def _read_cost(self, text: str) -> None:
        match = SESSION_COST.search(text)
        if match:
            self.cost = float(match.group("usd"))

    def finish(self, exit_code: int | None) -> ParseOutcome:
        ok = exit_code == 0 and self.failure is None and self.saw_tokens
        return ParseOutcome(
            ok=ok,
            final_message=self.final_message,
            session_id=None,
            usage=self.usage,
            cost_usd=self.cost,
            error=None if ok else self._error(exit_code),
        )

    def _error(self, exit_code: int | None) -> str:
        if self.failure:
            return self.failure
        if exit_code not in (0, None):
            return self.explain(f"exit code {exit_code}")
        return self.explain("aider printed no model reply (no 'Tokens:' report)")


def _count(number: str, unit: str) -> int:
    scale = {"": 1, "k": 1_000, "M": 1_000_000}[unit]
    try:
        return int(float(number) * scale)
    except ValueError:
        return 0


PARSER = AiderParser
