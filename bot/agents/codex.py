"""OpenAI Codex CLI: ``codex exec --json`` (tested with codex-cli 0.169.0).

Success (research README §7.2): exit code 0 and a ``turn.completed`` event, with
no ``turn.failed``. Usage comes from ``turn.completed.usage``; codex reports no cost.
"""

from __future__ import annotations

from typing import Any

from . import cli
from .base import AgentRequest, EngineConfig, JsonLinesParser, ParseOutcome, TokenUsage, as_dict, as_int

NAME = "codex"
INSTALL_HINT = "npm install -g @openai/codex"
CONFIG_NAME = ".codex/config.toml"  # inside CODEX_HOME
DEFAULT_CONFIG = None
QUIET_ENV: dict[str, str] = {}
PROMPT_ON_STDIN = False

# README §1.3 / §7.5: no plugin, analytics, feedback or update traffic.
QUIET_ARGS = (
    "--disable", "plugins",
    "-c", "analytics.enabled=false",
    "-c", "feedback.enabled=false",
    "-c", "check_for_update_on_startup=false",
)
SANDBOX_FLAGS = ("--dangerously-bypass-approvals-and-sandbox", "--full-auto")
SANDBOX_VALUED = ("-s", "--sandbox")


def build_command(request: AgentRequest, config: EngineConfig) -> list[str]:
    """``codex exec [extra] --json --skip-git-repo-check SANDBOX -C CWD ... [resume ID] PROMPT``.

    Every option goes before ``resume``: only some of them are global in clap.
    """
    extra = cli.extra_args(NAME, config)
    chosen = _sandbox(request, extra, cli.outer_sandbox(config))
    if chosen:
        extra = cli.without_options(extra, SANDBOX_FLAGS, SANDBOX_VALUED)
    argv = [cli.executable(NAME, config), "exec", *extra, "--json", "--skip-git-repo-check", *chosen]
    argv += ["-C", str(request.cwd), *QUIET_ARGS]
    argv += cli.model_and_session(request, "-m", "resume")
    argv.append(cli.prompt_argument(request.prompt))
    return argv


def _sandbox(request: AgentRequest, extra: list[str], outer: bool) -> list[str]:
    """Inside agentry's sandbox codex's own cannot start (no nested namespaces) and is not needed:
    the outer one mounts the worktree read-only for read-only runs. Without it, codex's sandbox
    enforces read-only runs whatever AGENTRY_CODEX_ARGS says."""
    if outer:
        return ["--dangerously-bypass-approvals-and-sandbox"]
    if request.read_only:
        return ["-s", "read-only"]
    if cli.has_option(extra, (*SANDBOX_FLAGS, *SANDBOX_VALUED)):
        return []  # the operator chose the sandbox of writing runs in AGENTRY_CODEX_ARGS
    return ["-s", "workspace-write"]


run_env = cli.no_run_env


class CodexParser(JsonLinesParser):
    def __init__(self, max_message_chars: int = 200_000) -> None:
        super().__init__(max_message_chars)
        self.session_id: str | None = None
        self.final_message = ""
        self.usage = TokenUsage()
        self.completed = False
        self.failure: str | None = None
        self.last_error_event: str | None = None

    def handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "thread.started":
            self.session_id = event.get("thread_id") or self.session_id
        elif kind == "item.completed":
            self._item(as_dict(event.get("item")))
        elif kind == "turn.completed":
            self.completed = True
            self._add_usage(as_dict(event.get("usage")))
        elif kind == "turn.failed":
            self.failure = _message(event.get("error")) or "turn failed"
        elif kind == "error":  # codex's notices of a retry or reconnect, and the fatal error's first line
            self.last_error_event = _message(event) or self.last_error_event
            self.note_retry(self.last_error_event or "error")

    def _item(self, item: dict[str, Any]) -> None:
        if item.get("type") == "agent_message" and isinstance(item.get("text"), str):
            self.final_message = self.cap(item["text"])

    def _add_usage(self, usage: dict[str, Any]) -> None:
        self.usage.input += as_int(usage.get("input_tokens"))
        self.usage.cached += as_int(usage.get("cached_input_tokens"))
        self.usage.output += as_int(usage.get("output_tokens"))
        self.usage.total = self.usage.input + self.usage.output

    def finish(self, exit_code: int | None) -> ParseOutcome:
        ok = exit_code == 0 and self.completed and self.failure is None
        return ParseOutcome(
            ok=ok,
            final_message=self.final_message,
            session_id=self.session_id,
            usage=self.usage,
            cost_usd=None,
            error=None if ok else self._error(exit_code),
        )

    def _error(self, exit_code: int | None) -> str:
        if self.failure:
            return self.failure
        if self.last_error_event:
            return self.last_error_event
        return self.fallback_error(exit_code, "no turn.completed event")


def _message(value: Any) -> str | None:
    message = as_dict(value).get("message")
    return message if isinstance(message, str) and message else None


PARSER = CodexParser
