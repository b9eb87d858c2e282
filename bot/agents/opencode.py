"""opencode: ``opencode run --format json`` (tested with 1.18.33).

Success (research README §3.2, §7.2): exit code 0, no ``error`` event, and the last
``step_finish`` has a reason other than ``tool-calls``. The final message is the
text of that last step; usage and cost are summed over every ``step_finish``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from . import cli
from .base import AgentRequest, EngineConfig, JsonLinesParser, ParseOutcome, TokenUsage, as_dict, as_float, as_int

NAME = "opencode"
INSTALL_HINT = "npm install -g opencode-ai"
CONFIG_NAME = ".config/opencode/opencode.json"  # inside XDG_CONFIG_HOME, also OPENCODE_CONFIG
DEFAULT_CONFIG = None
# README §3.3 / §7.5: no models.dev fetch, no self-update.
QUIET_ENV = {"OPENCODE_DISABLE_MODELS_FETCH": "1", "OPENCODE_DISABLE_AUTOUPDATE": "1"}
PROMPT_ON_STDIN = False


def build_command(request: AgentRequest, config: EngineConfig) -> list[str]:
    """``opencode run [extra] --format json [--agent plan] [--model P/M] [-s ID] PROMPT``.

    Read-only runs use opencode's built-in ``plan`` agent, which denies edits.
    """
    argv = [cli.executable(NAME, config), "run", *cli.extra_args(NAME, config), "--format", "json", *LOG_ARGS]
    if request.read_only:
        argv += ["--agent", "plan"]
    argv += cli.model_and_session(request, "--model", "-s")
    argv.append(cli.prompt_argument(request.prompt))
    return argv


# Errors on stderr: the only sign of opencode's silent retries of a failing provider.
LOG_ARGS = ("--print-logs", "--log-level", "ERROR")
# Applied after every config file, so a read-only run stays one whatever they allow.
# Inside agentry's sandbox the worktree is mounted read-only, so commands may run (tests, linters);
# without it only denying the shell keeps the worktree unchanged.
READ_ONLY_DENIED = ("edit",)


def run_env(request: AgentRequest, home: Path, config_file: Path | None, config: EngineConfig) -> dict[str, str]:
    """The operator's config; the repository's own opencode.json is not read (it would rank above
    it). Read-only runs get a per-run config and permission that rank above every file."""
    env = {"OPENCODE_DISABLE_PROJECT_CONFIG": "1"}
    if config_file:
        env["OPENCODE_CONFIG"] = str(config_file)
    if request.read_only:
        denied = READ_ONLY_DENIED if cli.outer_sandbox(config) else (*READ_ONLY_DENIED, "bash")
        env["OPENCODE_CONFIG_CONTENT"] = json.dumps({"permission": dict.fromkeys(denied, "deny"),
                                                     "agent": {"plan": {"permission": dict.fromkeys(denied, "deny")}}})
        env["OPENCODE_PERMISSION"] = json.dumps(dict.fromkeys(denied, "deny"))  # merged last of all
    return env


# With --print-logs, each failed provider call that opencode is about to retry is logged on stderr.
STREAM_ERROR = re.compile(r'message="stream error".*?error\.error="(?P<error>(?:[^"\\]|\\.)*)"')


class OpencodeParser(JsonLinesParser):
    def __init__(self, max_message_chars: int = 200_000) -> None:
        super().__init__(max_message_chars)
        self.session_id: str | None = None
        self.step_texts: list[str] = []
        self.last_text = ""
        self.final_message = ""
        self.usage = TokenUsage()
        self.reported_total = 0
        self.cost = 0.0
        self.saw_cost = False
        self.last_reason: str | None = None
        self.failure: str | None = None

    def stderr_retry(self, line: str) -> str | None:
        match = STREAM_ERROR.search(line)
        return match.group("error") if match else None

    def handle(self, event: dict[str, Any]) -> None:
        if isinstance(event.get("sessionID"), str) and not self.session_id:
            self.session_id = event["sessionID"]
        kind = event.get("type")
        part = as_dict(event.get("part"))
        if kind == "step_start":
            self.step_texts = []
        elif kind == "text":
            self._text(part)
        elif kind == "step_finish":
            self._step_finish(part)
        elif kind == "error":
            self.failure = _error_message(as_dict(event.get("error")))

    def _text(self, part: dict[str, Any]) -> None:
        text = part.get("text")
        if isinstance(text, str) and text:
            self.step_texts.append(text)
            self.last_text = self.cap("\n\n".join(self.step_texts))

    def _step_finish(self, part: dict[str, Any]) -> None:
        self.last_reason = part.get("reason") if isinstance(part.get("reason"), str) else None
        self._add_tokens(as_dict(part.get("tokens")))
        cost = as_float(part.get("cost"))
        if cost is not None:
            self.cost += cost
            self.saw_cost = True
        if self.last_reason != "tool-calls":
            self.final_message = self.cap("\n\n".join(self.step_texts)) or self.last_text

    def _add_tokens(self, tokens: dict[str, Any]) -> None:
        cache = as_dict(tokens.get("cache"))
        cache_read = as_int(cache.get("read"))
        self.usage.input += as_int(tokens.get("input")) + cache_read + as_int(cache.get("write"))
        self.usage.cached += cache_read
        self.usage.output += as_int(tokens.get("output")) + as_int(tokens.get("reasoning"))
        self.reported_total += as_int(tokens.get("total"))
        self.usage.total = self.reported_total or self.usage.input + self.usage.output

    def finish(self, exit_code: int | None) -> ParseOutcome:
        finished = self.last_reason is not None and self.last_reason != "tool-calls"
        ok = exit_code == 0 and self.failure is None and finished
        return ParseOutcome(
            ok=ok,
            final_message=self.final_message or self.last_text,
            session_id=self.session_id,
            usage=self.usage,
            cost_usd=self.cost if self.saw_cost else None,
            error=None if ok else self._error(exit_code),
        )

    def _error(self, exit_code: int | None) -> str:
        if self.failure:
            return self.failure
        if self.last_reason == "tool-calls":
            return self.fallback_error(exit_code, "stopped after a tool call (reason tool-calls)")
        return self.fallback_error(exit_code, "no final step_finish event")


def _error_message(error: dict[str, Any]) -> str:
    message = as_dict(error.get("data")).get("message")
    name = error.get("name") if isinstance(error.get("name"), str) else "error"
    return f"{name}: {message}" if isinstance(message, str) and message else name


PARSER = OpencodeParser
