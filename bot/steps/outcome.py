"""What an agent's run on a step came to, before it is settled."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot import render
from bot.agents import AgentResult
from bot.workflow import StepStatus

SUMMARY_CHARS = 4000
REASON_CHARS = 500


@dataclass
class Outcome:
    ok: bool
    error: str | None = None
    summary: str | None = None
    tokens: int = 0
    cost_usd: float | None = None
    head_sha: str | None = None
    state: dict = field(default_factory=dict)
    settle_as: StepStatus | None = None
    stopped: bool = False  # its agent was killed on request


def failed(error: str, **state) -> Outcome:
    return Outcome(ok=False, error=error, state=state)


def from_result(result: AgentResult, **fields) -> Outcome:
    return Outcome(ok=result.ok, error=None if result.ok else agent_error(result), tokens=result.usage.total,
                   cost_usd=result.cost_usd, summary=result.final_message[:SUMMARY_CHARS] or None,
                   state={"session_id": result.session_id} if result.session_id else {}, stopped=result.stopped,
                   **fields)


def agent_error(result: AgentResult) -> str:
    """What went wrong, with the cause the runner found (the CLI's error or its last lines)."""
    if result.stopped:
        return f"{result.engine} was {result.error or 'stopped'}"
    return f"{result.engine}: {result.error or f'exited with code {result.exit_code}'}"


@dataclass
class Review:
    """What a QA run concluded: a verdict, or none when QA itself could not run."""

    verdict: str | None  # PASS | FAIL | None
    reasons: str
    tokens: int = 0
    cost_usd: float | None = None


def because(doing: str, error: str) -> str:
    """A failure of agentry's own (not the agent's), as people are told it."""
    return f"agentry failed while {doing}: {render.truncate_end(error, REASON_CHARS)}"
