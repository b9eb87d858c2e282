"""The ``command`` engine: any executable from ``AGENTRY_ENGINE_COMMAND``.

The prompt goes on stdin, the step's context in ``AGENTRY_STEP_KIND`` (and whatever
the caller puts in ``request.env``, e.g. ``AGENTRY_PROTOCOL_ID``, ``AGENTRY_STEP_ID``).
Success is exit code 0; the final message is stdout (capped).
"""

from __future__ import annotations

from pathlib import Path

from . import cli
from .base import AgentRequest, EngineConfig, EngineNotInstalled, ParseOutcome, StreamParser

NAME = "command"
INSTALL_HINT = "set `AGENTRY_ENGINE_COMMAND` to the command line of your agent"
CONFIG_NAME = None
DEFAULT_CONFIG = None
QUIET_ENV: dict[str, str] = {}
PROMPT_ON_STDIN = True


def build_command(request: AgentRequest, config: EngineConfig) -> list[str]:
    """``AGENTRY_ENGINE_COMMAND`` (already split) followed by ``AGENTRY_COMMAND_ARGS``."""
    if not config.command_line:
        raise EngineNotInstalled(f"the command engine has no command: {INSTALL_HINT}")
    return [*config.command_line, *cli.extra_args(NAME, config)]


def run_env(request: AgentRequest, home: Path, config_file: Path | None, config: EngineConfig) -> dict[str, str]:
    env = {"AGENTRY_STEP_KIND": request.kind}
    env["AGENTRY_READ_ONLY"] = "1" if request.read_only else "0"
    if request.model:
        env["AGENTRY_MODEL"] = request.model
    if request.session_id:
        env["AGENTRY_SESSION_ID"] = request.session_id
    return env


class CommandParser(StreamParser):
    def __init__(self, max_message_chars: int = 200_000) -> None:
        super().__init__(max_message_chars)
        self.lines: list[str] = []
        self.chars = 0
        self.truncated = False

    def feed(self, line: str) -> None:
        room = self.max_message_chars - self.chars
        if room <= 0:
            self.truncated = True
            return
        kept = line[:room]
        self.truncated = self.truncated or len(kept) < len(line)
        self.lines.append(kept)
        self.chars += len(kept) + 1

    def finish(self, exit_code: int | None) -> ParseOutcome:
        message = "\n".join(self.lines)
        if self.truncated:
            message += "\n[... truncated]"
        ok = exit_code == 0
        error = None if ok else self.explain(f"exit code {exit_code}")
        return ParseOutcome(ok=ok, final_message=message, error=error)


PARSER = CommandParser
