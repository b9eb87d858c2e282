"""What a protocol and a step remember between jobs, typed: one pydantic model each, stored as JSON.

A key is declared here or it is not stored: `changed` validates every change and refuses a key
the model does not declare. What drives scheduling (`awaiting_merge`, `awaiting_answers`) is not
here but in columns of its own, which queries can read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def changed(self, **changes: Any) -> Self:
        """A copy with `changes`, validated: a key the model does not declare, or a wrong type, is refused."""
        return self.model_validate({**self.model_dump(exclude_unset=True), **changes})

    def shown(self) -> dict[str, Any]:
        """The keys ever set, as JSON: what is stored, and what the API shows as `runtime_state`."""
        return self.model_dump(mode="json", exclude_unset=True)

    @classmethod
    def read(cls, stored: Mapping[str, Any] | None) -> Self:
        """Stored JSON read back; a key no longer declared (an older version wrote it) is dropped."""
        return cls.model_validate({key: value for key, value in (stored or {}).items() if key in cls.model_fields})


class Fork(_State):
    """A protocol on a pull request from a fork: it starts from the commit a maintainer approved."""

    number: int | None = None
    head_repo: str | None = None
    head_sha: str | None = None
    head_ref: str | None = None
    approved_sha: str | None = None
    approved_by: str | None = None


class ProtocolState(_State):
    issue_url: str | None = None
    on_pull_request: bool = False  # the protocol was started on a pull request (a merge request)
    existing_pull: int | None = None  # the pull request whose branch it works on
    fork: Fork | None = None
    session_id: str | None = None  # an `ask` protocol's agent session, for follow-ups
    session_engine: str | None = None
    plan_summary: str | None = None
    plan_feedback: str = ""  # why the previous plan was rejected, for the next one
    plan_attempts: int = 0
    plan_failed: bool = False
    error: str | None = None
    blocked_reason: str | None = None
    pr_error: str | None = None  # why the pull request could not be opened
    finished_rounds: int = 0  # Ralph rounds that ended waiting for a merge
    iterations: list[dict[str, Any]] = []  # the Ralph loop's iterations, as its step records them
    codemachine_workspace: str | None = None
    stop_requested_by: str | None = None  # who asked it to stop: no step starts after the running one
    stop_now: bool = False  # ... and the running agent is killed
    completion_reason: Literal["manual_stop"] | None = None
    waiting_for_protocols: bool = False  # started, and blocked until the protocols it depends on complete
    chosen_branch: bool = False  # its creator named the branch: one the remote already has is refused
    branch_pushed: bool = False  # agentry pushed that branch: it is the protocol's own


class StepState(_State):
    asked_by: str | None = None  # an `ask` step's asker
    error: str | None = None
    session_id: str | None = None
    commit_sha: str | None = None  # the commit its work made (None: it changed no file)
    feedback: str = ""  # what the next attempt is told: QA's or CI's rejection, a loop's reason
    verdict: str | None = None  # QA's: PASS or FAIL
    qa_reasons: str | None = None
    qa_error: str | None = None  # QA could not run: why
    qa_engine: str | None = None  # a `qa --engine` choice
    qa_model: str | None = None
    qa_attempts: int = 0
    ci_output: str | None = None
    ci_fix_attempts: int = 0
    loops: int = 0  # times its loop policy sent the work back
    triggers: int = 0  # times its trigger policy ran another step
    iterations: list[dict[str, Any]] = []  # a Ralph step's iterations
    stopped: Literal["promise", "max_iterations", "cancelled", "agent_failed", "budget", "manual_stop"] | None = None
    stop_requested_by: str | None = None  # who asked for its running agent to be killed
    budget: str | None = None  # the budget a Ralph loop ran out of


def kill_requested_by(protocol: ProtocolState, step: StepState | None) -> str | None:
    """Who asked for the running agent to be killed now: the step's own stop, or its protocol's stop now."""
    if step is not None and step.stop_requested_by:
        return step.stop_requested_by
    return protocol.stop_requested_by if protocol.stop_now else None
