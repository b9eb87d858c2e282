"""Gemini CLI: ``gemini -p --output-format stream-json`` (tested with 0.61.0).

Success (research README §4.2, §7.2): exit code 0 and ``result.status == "success"``.
The final message is the assistant text after the last tool call (``delta`` chunks
are concatenated); usage comes from ``result.stats``; gemini reports no cost.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from . import cli
from .base import AgentRequest, EngineConfig, JsonLinesParser, ParseOutcome, TokenUsage, as_dict, as_int

NAME = "gemini"
INSTALL_HINT = "npm install -g @google/gemini-cli"
CONFIG_NAME = ".gemini/settings.json"  # inside HOME
# README §4.3 / §7.5: the quiet switches live in settings.json. Authentication
# is left to the provider variables (GEMINI_API_KEY, GOOGLE_*).
DEFAULT_CONFIG = json.dumps(
    {
        "privacy": {"usageStatisticsEnabled": False},
        "general": {"disableAutoUpdate": True, "disableUpdateNag": True},
        "telemetry": {"enabled": False},
    },
    indent=2,
)
QUIET_ENV: dict[str, str] = {}
PROMPT_ON_STDIN = False
APPROVAL_OPTIONS = ("-y", "--yolo", "--approval-mode")


def build_command(request: AgentRequest, config: EngineConfig) -> list[str]:
    """``gemini [extra] -p PROMPT --output-format stream-json --yolo|--approval-mode plan --skip-trust``."""
    extra = cli.extra_args(NAME, config)
    argv = [cli.executable(NAME, config), *extra, "-p", cli.prompt_argument(request.prompt)]
    argv += ["--output-format", "stream-json", *_approval(request, extra), "--skip-trust"]
    argv += cli.model_and_session(request, "-m", "--resume")
    return argv


def _approval(request: AgentRequest, extra: list[str]) -> list[str]:
    if request.read_only:
        return ["--approval-mode", "plan"]
    if cli.has_option(extra, APPROVAL_OPTIONS):
        return []  # the operator chose it in AGENTRY_GEMINI_ARGS
    return ["--yolo"]


run_env = cli.no_run_env


MAX_ATTEMPTS = 3  # gemini-cli's own retries of a failing request (its default, 10, takes minutes)


def complete_config(text: str, env: Mapping[str, str]) -> str:
    """The settings with a bounded number of attempts and an auth type when they name none: with
    ``GOOGLE_GEMINI_BASE_URL`` set, gemini-cli guesses a "gateway" type that it then refuses in
    headless runs."""
    try:
        settings = json.loads(text)
    except ValueError:
        return text
    if not isinstance(settings, dict):
        return text
    general = settings.setdefault("general", {})
    if isinstance(general, dict):
        general.setdefault("maxAttempts", MAX_ATTEMPTS)
    security = settings.setdefault("security", {})
    auth = security.setdefault("auth", {}) if isinstance(security, dict) else None
    if not isinstance(auth, dict) or auth.get("selectedType"):
        return json.dumps(settings, indent=2)
    if env.get("GOOGLE_GENAI_USE_VERTEXAI", "").lower() == "true":
        auth["selectedType"] = "vertex-ai"
    elif env.get("GEMINI_API_KEY"):
        auth["selectedType"] = "gemini-api-key"
    return json.dumps(settings, indent=2)


RETRY_LINE = re.compile(r"^Attempt \d+ failed\b")


class GeminiParser(JsonLinesParser):
    def __init__(self, max_message_chars: int = 200_000) -> None:
        super().__init__(max_message_chars)
        self.session_id: str | None = None
        self.current_text = ""
        self.previous_text = ""
        self.result: dict[str, Any] | None = None

    def stderr_retry(self, line: str) -> str | None:
        """gemini-cli's "Attempt N failed with status 500. Retrying with backoff..." lines."""
        return line.strip() if RETRY_LINE.match(line.strip()) else None

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "init" and isinstance(event.get("session_id"), str):
            self.session_id = event["session_id"]
        elif kind == "message" and event.get("role") == "assistant":
            self._assistant(event)
        elif kind in ("tool_use", "tool_result"):
            self._start_new_text()
        elif kind == "result":
            self.result = {key: event.get(key) for key in ("status", "error", "stats")}

    def _assistant(self, event: dict[str, Any]) -> None:
        content = event.get("content")
        if not isinstance(content, str):
            return
        text = self.current_text + content if event.get("delta") else content
        self.current_text = self.cap(text)

    def _start_new_text(self) -> None:
        if self.current_text:
            self.previous_text = self.current_text
            self.current_text = ""

    def finish(self, exit_code: int | None) -> ParseOutcome:
        result = self.result or {}
        ok = exit_code == 0 and result.get("status") == "success"
        return ParseOutcome(
            ok=ok,
            final_message=self.current_text or self.previous_text,
            session_id=self.session_id,
            usage=_usage(as_dict(result.get("stats"))),
            cost_usd=None,
            error=None if ok else self._error(exit_code),
        )

    def _error(self, exit_code: int | None) -> str:
        if self.result is None:
            return self.fallback_error(exit_code, "no result event")
        message = as_dict(self.result.get("error")).get("message")
        if isinstance(message, str) and message:
            return message
        if self.result.get("status") != "success":
            return f"gemini ended with status {self.result.get('status')}"
        return self.explain(f"exit code {exit_code}")


def _usage(stats: dict[str, Any]) -> TokenUsage:
    prompt = as_int(stats.get("input_tokens"))
    output = as_int(stats.get("output_tokens"))
    total = as_int(stats.get("total_tokens")) or prompt + output
    return TokenUsage(input=prompt, output=output, cached=as_int(stats.get("cached")), total=total)


PARSER = GeminiParser
