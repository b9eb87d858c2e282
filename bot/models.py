"""Tables. Field names follow the TasksGodzilla reference so the REST API can mirror it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Annotated, Any, Optional

from pydantic import PlainSerializer
from sqlalchemy import JSON, BigInteger, Column, DateTime, Dialect, Index, Text, UniqueConstraint, text
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel
from sqlmodel.sql.sqltypes import AutoString

from bot.state import ProtocolState, StepState
from bot.statuses import ClarificationStatus, DeliveryStatus, JobStatus, ProjectStatus, RunStatus
from bot.workflow import ENDED_PROTOCOL_STATUSES, ProtocolStatus, StepStatus


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def created_field() -> Any:
    return Field(default_factory=utcnow, sa_type=DateTime(timezone=True), nullable=False)


def optional_time_field() -> Any:
    return Field(default=None, sa_type=DateTime(timezone=True), nullable=True)


def json_field(default: Any = dict) -> Any:
    return Field(default_factory=default, sa_type=JSON)


def text_field(default: Any = None) -> Any:
    return Field(default=default, sa_type=Text)


class StatusText(TypeDecorator[StrEnum]):
    """A status column: text in the database, its enum in Python; a value outside the enum is
    refused on write, so every status written is one the enum declares."""

    impl = AutoString
    cache_ok = True

    def __init__(self, enum: type[StrEnum]) -> None:
        super().__init__()
        self.enum = enum

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> StrEnum | None:
        return None if value is None else self.enum(value)


class StateJSON(TypeDecorator[Any]):
    """A typed state (`bot.state`) as a JSON column: stored as its set keys (a plain mapping written
    here is validated, so an undeclared key is refused), read back into its model."""

    impl = JSON
    cache_ok = True

    def __init__(self, model: type[ProtocolState] | type[StepState]) -> None:
        super().__init__()
        self.model = model

    def process_bind_param(self, value: Any, dialect: Dialect) -> dict[str, Any]:
        return (value if isinstance(value, self.model) else self.model.model_validate(value or {})).shown()

    def process_result_value(self, value: Any, dialect: Dialect) -> ProtocolState | StepState:
        return self.model.read(value)


def state_field(model: type[ProtocolState] | type[StepState]) -> Any:
    """The row's typed state, in the column the API calls `runtime_state`."""
    return Field(default_factory=model, sa_column=Column("runtime_state", StateJSON(model), nullable=False))


# A row built with a status as plain text (tests, the API's filters) holds the text until it is
# read back from the database: both serialize to the same string.
AS_TEXT = PlainSerializer(str, return_type=str)


def scope_indexes(table: str) -> tuple[Index, Index]:
    """The indexes of a table read a project's or a protocol run's rows at a time, in id order."""
    return (Index(f"ix_{table}_project", "project_id", "id"), Index(f"ix_{table}_protocol", "protocol_run_id", "id"))


def status_field(default: StrEnum, **options: Any) -> Any:
    return Field(default=default, sa_type=StatusText(type(default)), **options)


def forge_id_field(**options: Any) -> Any:
    """An id a forge hands out (comments, check runs, repositories, installations): already past
    2^31 on github.com, so 64 bits."""
    return Field(default=None, sa_type=BigInteger, **options)


# The kinds of protocol that work on their issue, one at a time (asks can run beside them).
WORKING_KINDS = ("run", "plan", "ralph", "code")
# ... and have not ended.
ACTIVE_WORK = ("issue_number IS NOT NULL AND kind IN (" + ", ".join(f"'{kind}'" for kind in WORKING_KINDS)
               + ") AND status NOT IN ("
               + ", ".join(f"'{status}'" for status in sorted(ENDED_PROTOCOL_STATUSES)) + ")")


class Project(SQLModel, table=True):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("forge", "forge_repo", name="uq_projects_forge_repo"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    name: str
    git_url: Optional[str] = None
    local_path: Optional[str] = None
    base_branch: str = "main"
    ci_provider: Optional[str] = None
    forge: Optional[str] = None  # github | gitlab | None for API-only projects
    forge_repo: Optional[str] = None  # owner/name or group/project path
    forge_repo_id: Optional[int] = forge_id_field()
    installation_id: Optional[int] = forge_id_field(index=True)
    active: bool = True
    secrets: dict = json_field()
    default_models: dict = json_field()
    status: Annotated[ProjectStatus, AS_TEXT] = status_field(ProjectStatus.REGISTERED)
    created_at: datetime = created_field()
    updated_at: datetime = created_field()


class Spending(SQLModel):
    """What a protocol run or a step run has spent, and when it was made and last changed."""

    tokens_used: int = 0
    cost_usd: Optional[float] = None
    created_at: datetime = created_field()
    updated_at: datetime = created_field()


class ProtocolRun(Spending, table=True):
    __tablename__ = "protocol_runs"
    __table_args__ = (
        Index("ix_protocol_runs_project_issue", "project_id", "issue_number"),
        Index("ix_protocol_runs_project_created", "project_id", "id"),
        Index("ix_protocol_runs_branch", "project_id", "branch"),
        # At most one protocol working on an issue or pull request at a time, whoever races to start it.
        Index("uq_protocol_runs_active_issue", "project_id", "issue_number", unique=True,
              sqlite_where=text(ACTIVE_WORK), postgresql_where=text(ACTIVE_WORK)),
        Index("uq_protocol_runs_external_id", "project_id", "external_id", unique=True),
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id")
    protocol_name: str
    status: Annotated[ProtocolStatus, AS_TEXT] = status_field(ProtocolStatus.PENDING, index=True)
    kind: str = "run"  # run | plan | ralph | code | ask
    base_branch: str = "main"
    branch: Optional[str] = None
    worktree_path: Optional[str] = None
    protocol_root: Optional[str] = None
    description: Optional[str] = text_field()
    template_config: Optional[dict] = json_field(lambda: None)
    template_source: Optional[dict] = json_field(lambda: None)
    policy: dict = json_field()
    state: ProtocolState = state_field(ProtocolState)
    awaiting_merge: bool = False  # its work is done and its pull request open: a merge completes it
    awaiting_answers: bool = False  # paused until the plan's blocking questions are answered
    depends_on: list[int] = Field(default_factory=list, sa_type=JSON,
                                  sa_column_kwargs={"server_default": "[]"})  # protocols that complete first
    external_id: Optional[str] = None  # the id its creator gave it, unique in the project
    issue_number: Optional[int] = None
    issue_title: Optional[str] = None
    pr_number: Optional[int] = None
    pr_url: Optional[str] = None
    head_sha: Optional[str] = None
    engine: Optional[str] = None
    model: Optional[str] = None
    created_by: Optional[str] = None
    status_comment_id: Optional[int] = forge_id_field()
    check_run_id: Optional[int] = forge_id_field()
    check_run_sha: Optional[str] = None
    check_run_completed: bool = False

    @property
    def runtime_state(self) -> dict[str, Any]:
        """The state as the API shows it: the typed state's keys, and the flags that are set."""
        flags = {name: True for name in ("awaiting_merge", "awaiting_answers") if getattr(self, name)}
        return {**self.state.shown(), **flags}


class StepRun(Spending, table=True):
    __tablename__ = "step_runs"
    __table_args__ = (UniqueConstraint("protocol_run_id", "step_index", name="uq_step_runs_index"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    protocol_run_id: int = Field(foreign_key="protocol_runs.id", index=True)
    step_index: int
    step_name: str
    step_type: str = "code"
    status: Annotated[StepStatus, AS_TEXT] = status_field(StepStatus.PENDING)
    retries: int = 0
    model: Optional[str] = None
    engine_id: Optional[str] = None
    prompt: Optional[str] = text_field()
    qa_policy: str = "full"
    changes_files: bool = True  # False: a check-only step, which may leave the files as they are
    depends_on: list = json_field(list)
    policy: dict = json_field()
    state: StepState = state_field(StepState)
    summary: Optional[str] = text_field()

    @property
    def runtime_state(self) -> dict[str, Any]:
        """The state as the API shows it."""
        return self.state.shown()


class Event(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = scope_indexes("events")

    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: Optional[int] = None
    protocol_run_id: Optional[int] = None
    step_run_id: Optional[int] = None
    event_type: str
    message: str = text_field("")
    meta: dict = Field(default_factory=dict, sa_column=Column("metadata", JSON))
    created_at: datetime = created_field()


class CodexRun(SQLModel, table=True):
    """One job attempt (the reference calls the table codex_runs whatever the engine)."""

    __tablename__ = "codex_runs"
    __table_args__ = (
        Index("ix_codex_runs_step", "step_run_id"),
        Index("ix_codex_runs_protocol", "protocol_run_id"),
        Index("ix_codex_runs_status", "status"),
        Index("ix_codex_runs_created", "created_at"),
        Index("ix_codex_runs_project_created", "project_id", "created_at"),
    )

    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex, primary_key=True)
    job_type: str
    run_kind: str = "exec"  # plan | exec | qa | ralph | ask | setup | pr | import
    status: Annotated[RunStatus, AS_TEXT] = status_field(RunStatus.QUEUED)
    project_id: Optional[int] = None
    protocol_run_id: Optional[int] = None
    step_run_id: Optional[int] = None
    attempt: int = 1
    worker_id: Optional[str] = None
    queue: str = "default"
    prompt_version: Optional[str] = None
    engine: Optional[str] = None
    model: Optional[str] = None
    params: dict = json_field()
    result: dict = json_field()
    error: Optional[str] = text_field()
    log_path: Optional[str] = None
    cost_tokens: int = 0
    cost_usd: Optional[float] = None
    created_at: datetime = created_field()
    started_at: Optional[datetime] = optional_time_field()
    finished_at: Optional[datetime] = optional_time_field()


class RunArtifact(SQLModel, table=True):
    __tablename__ = "run_artifacts"

    id: Optional[int] = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="codex_runs.run_id", index=True)
    name: str
    kind: str = "file"
    path: str
    sha256: Optional[str] = None
    bytes: Optional[int] = None
    created_at: datetime = created_field()


class Clarification(SQLModel, table=True):
    __tablename__ = "clarifications"
    __table_args__ = (Index("ix_clarifications_scope", "project_id", "protocol_run_id", "key"),)

    id: Optional[int] = Field(default=None, primary_key=True)
    scope: str = "protocol"  # project | protocol | step
    project_id: int = Field(foreign_key="projects.id")
    protocol_run_id: Optional[int] = None
    step_run_id: Optional[int] = None
    key: str
    question: str = text_field("")
    recommended: Optional[Any] = json_field(lambda: None)
    options: Optional[list] = json_field(lambda: None)
    applies_to: Optional[str] = None
    blocking: bool = False
    answer: Optional[Any] = json_field(lambda: None)
    status: Annotated[ClarificationStatus, AS_TEXT] = status_field(ClarificationStatus.OPEN)
    answered_at: Optional[datetime] = optional_time_field()
    answered_by: Optional[str] = None
    created_at: datetime = created_field()
    updated_at: datetime = created_field()


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_deliveries"

    id: Optional[int] = Field(default=None, primary_key=True)
    delivery_id: str = Field(unique=True, max_length=200)
    forge: str = "github"
    event: str
    action: Optional[str] = None
    status: Annotated[DeliveryStatus, AS_TEXT] = status_field(DeliveryStatus.ACCEPTED, index=True)
    repo: Optional[str] = None
    installation_id: Optional[int] = forge_id_field()
    payload: dict = json_field()
    error: Optional[str] = text_field()
    received_at: datetime = created_field()
    processed_at: Optional[datetime] = optional_time_field()


@dataclass(frozen=True)
class IncomingDelivery:
    """A delivery as intake records it (a `webhook_deliveries` row): its JSON stored as received,
    not decoded and encoded again."""

    delivery_id: str
    forge: str
    event: str
    status: DeliveryStatus
    payload_json: str = "{}"
    action: str | None = None
    repo: str | None = None
    installation_id: int | None = None
    error: str | None = None

    def row(self) -> dict[str, Any]:
        """Its `webhook_deliveries` columns, the payload as the JSON text it came as."""
        return {"delivery_id": self.delivery_id, "forge": self.forge, "event": self.event, "action": self.action,
                "status": self.status, "repo": self.repo, "installation_id": self.installation_id,
                "payload": self.payload_json, "error": self.error, "received_at": utcnow()}


class QueuedJob(SQLModel, table=True):
    """The durable side of the queue: a job is recorded here before it reaches arq, so a lost queue loses nothing."""

    __tablename__ = "queued_jobs"
    __table_args__ = (Index("ix_queued_jobs_status", "status", "enqueued_at"),
                      Index("ix_queued_jobs_lease", "status", "lease_until"))

    job_id: str = Field(primary_key=True, max_length=250)
    function: str
    args: list = json_field(list)
    status: Annotated[JobStatus, AS_TEXT] = status_field(JobStatus.QUEUED)
    attempts: int = 0
    delivery_id: Optional[str] = Field(default=None, index=True)
    project_id: Optional[int] = None
    protocol_run_id: Optional[int] = None
    step_run_id: Optional[int] = None
    error: Optional[str] = text_field()
    enqueued_at: datetime = created_field()
    started_at: Optional[datetime] = optional_time_field()
    finished_at: Optional[datetime] = optional_time_field()
    # A running job's lease, renewed by its worker while it works; once it lapses any worker takes over.
    lease_until: Optional[datetime] = optional_time_field()
    worker_id: Optional[str] = Field(default=None, max_length=200)


class Message(SQLModel, table=True):
    __tablename__ = "messages"
    __table_args__ = scope_indexes("messages")

    id: Optional[int] = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id")
    protocol_run_id: Optional[int] = None
    type: str = "USER"  # USER | FACT | PROGRESS | DECISION | ERROR | QUESTION
    author: Optional[str] = None
    body: str = text_field("")
    meta: dict = Field(default_factory=dict, sa_column=Column("metadata", JSON))
    created_at: datetime = created_field()


ALL_TABLES = SQLModel.metadata
