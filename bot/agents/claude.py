"""Claude Code: ``claude -p --output-format stream-json --verbose`` (tested with 2.1.197).

Success (research README §2.2, §7.2): exit code 0, ``result.is_error`` false and
``result.subtype == "success"``. API errors give ``subtype "success"`` with
``is_error: true``, so both are checked. Usage and cost come from the ``result`` line.
"""

from __future__ import annotations

from typing import Any

from . import cli
from .base import AgentRequest, EngineConfig, JsonLinesParser, ParseOutcome, TokenUsage, as_dict, as_float, as_int

NAME = "claude"
INSTALL_HINT = "npm install -g @anthropic-ai/claude-code"
CONFIG_NAME = ".claude/settings.json"  # inside CLAUDE_CONFIG_DIR
DEFAULT_CONFIG = None
# README §2.3 / §7.5: no telemetry or update traffic, fail at once on API errors.
QUIET_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "CLAUDE_CODE_MAX_RETRIES": "0",
}
PROMPT_ON_STDIN = False


def build_command(request: AgentRequest, config: EngineConfig) -> list[str]:
    """``claude [extra] -p PROMPT --output-format stream-json --verbose --permission-mode M ...``."""
    extra = cli.extra_args(NAME, config)
    argv = [cli.executable(NAME, config), *extra, "-p", cli.prompt_argument(request.prompt)]
    argv += ["--output-format", "stream-json", "--verbose"]  # stream-json needs --verbose
    argv += _permission_mode(request, extra)
    argv += cli.model_and_session(request, "--model", "--resume")
    return argv


def _permission_mode(request: AgentRequest, extra: list[str]) -> list[str]:
    if request.read_only:
        return ["--permission-mode", "plan"]
    if cli.has_option(extra, ("--permission-mode", "--dangerously-skip-permissions")):
        return []  # the operator chose it in AGENTRY_CLAUDE_ARGS
    return ["--permission-mode", "acceptEdits"]


run_env = cli.no_run_env


class ClaudeParser(JsonLinesParser):
    def __init__(self, max_message_chars: int = 200_000) -> None:
        super().__init__(max_message_chars)
        self.session_id: str | None = None
        self.last_assistant_text = ""
        self.result: dict[str, Any] | None = None

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if isinstance(event.get("session_id"), str):
            self.session_id = event["session_id"]
        if kind == "system" and event.get("subtype") == "api_retry":
            self.note_retry(_retry_notice(event))
        elif kind == "assistant":
            self._assistant(as_dict(event.get("message")))
        elif kind == "result":
            self.result = _slim_result(event)

    def _assistant(self, message: dict[str, Any]) -> None:
        blocks = message.get("content")
        text = "".join(
            block["text"]
            for block in blocks or ()
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
        )
        if text:
            self.last_assistant_text = self.cap(text)

    def finish(self, exit_code: int | None) -> ParseOutcome:
        result = self.result or {}
        ok = (
            exit_code == 0
            and self.result is not None
            and result.get("is_error") is False
            and result.get("subtype") == "success"
        )
        return ParseOutcome(
            ok=ok,
            final_message=self._final_message(),
            session_id=self.session_id,
            usage=_usage(as_dict(result.get("usage"))),
            cost_usd=as_float(result.get("total_cost_usd")),
            error=None if ok else self._error(exit_code),
        )

    def _final_message(self) -> str:
        text = (self.result or {}).get("result")
        if isinstance(text, str) and text:
            return self.cap(text)
        return self.last_assistant_text

    def _error(self, exit_code: int | None) -> str:
        if self.result is None:
            return self.fallback_error(exit_code, "no result event")
        errors = self.result.get("errors")
        if isinstance(errors, list) and errors:
            return "; ".join(str(e) for e in errors)
        if self.result.get("is_error") and isinstance(self.result.get("result"), str):
            return self.result["result"]
        if self.result.get("subtype") != "success":
            return f"claude ended with {self.result.get('subtype')}"
        return self.explain(f"exit code {exit_code}")


def _retry_notice(event: dict[str, Any]) -> str:
    attempt, limit = event.get("attempt"), event.get("max_retries")
    status = event.get("error_status")
    return f"API retry {attempt}/{limit}: {status or ''} {event.get('error') or 'error'}".replace("  ", " ")


def _slim_result(event: dict[str, Any]) -> dict[str, Any]:
    keys = ("subtype", "is_error", "result", "errors", "total_cost_usd", "usage", "session_id")
    return {key: event.get(key) for key in keys}


def _usage(usage: dict[str, Any]) -> TokenUsage:
    cache_read = as_int(usage.get("cache_read_input_tokens"))
    cache_write = as_int(usage.get("cache_creation_input_tokens"))
    prompt = as_int(usage.get("input_tokens")) + cache_read + cache_write
    output = as_int(usage.get("output_tokens"))
    return TokenUsage(input=prompt, output=output, cached=cache_read, total=prompt + output)


PARSER = ClaudeParser
