"""What the API answers, each resource declared once: a pydantic model whose fields are the answer's
keys, read from a row (`Resource.of`), and whose JSON Schema is the OpenAPI component
(`components`). A field's type, whether it may be null and the members of its enum are written here
and nowhere else.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, PlainSerializer, RootModel, WithJsonSchema

from bot.statuses import JOB_STATUS_WORDS, ClarificationStatus, JobStatus, ProjectStatus, RunStatus
from bot.workflow import ProtocolStatus, StepStatus

REDACTED = "[redacted]"


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat()


Time = Annotated[datetime, PlainSerializer(iso, return_type=str),
                 WithJsonSchema({"type": "string", "format": "date-time"})]
MaybeTime = Annotated[datetime | None, PlainSerializer(iso, return_type=str | None),
                      WithJsonSchema({"type": "string", "format": "date-time", "nullable": True})]
Obj = Annotated[dict[str, Any], BeforeValidator(lambda value: value or {})]  # a row's None shows as {}
Items = Annotated[list[Any], BeforeValidator(lambda value: value or [])]
Redacted = Annotated[dict[str, Literal["[redacted]"]],
                     BeforeValidator(lambda value: {str(key): REDACTED for key in (value or {})})]
MessageType = Literal["USER", "FACT", "PROGRESS", "DECISION", "ERROR", "QUESTION"]


def _job_word(word: str) -> str:
    if word not in JOB_STATUS_WORDS.values():
        raise ValueError(f"{word!r} is not a job state of the queue API")
    return word


JobWord = Annotated[str, AfterValidator(_job_word),
                    WithJsonSchema({"type": "string", "enum": list(JOB_STATUS_WORDS.values())})]


class Resource(BaseModel):
    @classmethod
    def of(cls, row: Any = None, **values: Any) -> dict[str, Any]:
        """The JSON answer for `row`, with `values` for the keys the row does not hold under that name."""
        read = cls.read(row) if row is not None else {}
        return cls.model_validate({**read, **values}).model_dump(mode="json", exclude_unset=True)

    @classmethod
    def read(cls, row: Any) -> dict[str, Any]:
        """The row's values under the answer's names: every field the row has an attribute for."""
        return {name: getattr(row, name) for name in cls.model_fields if hasattr(row, name)}


class Error(Resource):
    error: str
    fields: dict[str, str] | None = None


class Project(Resource):
    id: int
    name: str
    git_url: str | None
    local_path: str | None
    base_branch: str
    ci_provider: str | None
    default_models: Obj
    secrets: Redacted
    forge: str | None
    forge_repo: str | None
    active: bool
    status: ProjectStatus
    created_at: Time
    updated_at: Time


class ProtocolRun(Resource):
    id: int
    project_id: int
    protocol_name: str
    status: ProtocolStatus
    base_branch: str
    worktree_path: str | None
    protocol_root: str | None
    description: str | None
    template_config: dict[str, Any] | None
    template_source: dict[str, Any] | None
    kind: str
    branch: str | None
    issue_number: int | None
    issue_title: str | None
    pr_number: int | None
    pr_url: str | None
    engine: str | None
    model: str | None
    policy: Obj
    runtime_state: Obj
    depends_on: Items
    external_id: str | None
    tokens_used: int
    cost_usd: float | None
    created_at: Time
    updated_at: Time


class StepRun(Resource):
    id: int
    protocol_run_id: int
    step_index: int
    step_name: str
    step_type: str
    status: StepStatus
    model: str | None
    summary: str | None
    engine_id: str | None
    policy: Any
    retries: int
    runtime_state: Obj
    qa_policy: str
    changes_files: bool
    depends_on: Items
    prompt: str | None
    tokens_used: int
    cost_usd: float | None
    created_at: Time
    updated_at: Time


class Event(Resource):
    id: int
    project_id: int | None
    protocol_run_id: int | None
    step_run_id: int | None
    event_type: str
    message: str
    metadata: Obj
    created_at: Time
    protocol_name: str | None = None
    project_name: str | None = None

    @classmethod
    def read(cls, row: Any) -> dict[str, Any]:
        return {**super().read(row), "metadata": row.meta, "protocol_name": None, "project_name": None}


class CodexRun(Resource):
    run_id: str
    job_type: str
    run_kind: str | None
    status: RunStatus
    project_id: int | None
    protocol_run_id: int | None
    step_run_id: int | None
    queue: str | None
    attempt: int | None
    worker_id: str | None
    prompt_version: str | None
    engine: str | None
    model: str | None
    params: Obj
    result: Obj
    error: str | None
    log_path: str | None
    cost_tokens: int | None
    cost_usd: float | None
    created_at: Time
    updated_at: Time
    started_at: MaybeTime
    finished_at: MaybeTime

    @classmethod
    def read(cls, row: Any) -> dict[str, Any]:
        return {**super().read(row), "updated_at": row.finished_at or row.started_at or row.created_at}


class RunArtifact(Resource):
    id: int
    run_id: str
    name: str
    kind: str
    path: str
    sha256: str | None
    bytes: int | None
    created_at: Time


class LogTail(Resource):
    run_id: str
    offset: int
    next_offset: int
    eof: bool
    chunk: str


class Clarification(Resource):
    id: int
    scope: str
    project_id: int
    protocol_run_id: int | None
    step_run_id: int | None
    key: str
    question: str
    recommended: Any
    options: list[Any] | None
    applies_to: str | None
    blocking: bool
    answer: Any
    status: ClarificationStatus
    created_at: Time
    updated_at: Time
    answered_at: MaybeTime
    answered_by: str | None


class Message(Resource):
    id: int
    project_id: int
    protocol_run_id: int | None
    type: MessageType
    author: str | None
    body: str
    metadata: Obj
    created_at: Time

    @classmethod
    def read(cls, row: Any) -> dict[str, Any]:
        return {**super().read(row), "metadata": row.meta}


class Job(Resource):
    """A queued job (`queued_jobs`), or one an action just queued (then only the first four keys)."""

    job_id: str
    job_type: str
    payload: Obj
    status: JobWord
    attempts: int = 0
    error: str | None = None
    meta: Obj = {}
    enqueued_at: MaybeTime = None
    started_at: MaybeTime = None
    ended_at: MaybeTime = None

    @classmethod
    def read(cls, row: Any) -> dict[str, Any]:
        return {"job_id": row.job_id, "job_type": row.function, "attempts": row.attempts, "error": row.error,
                "payload": job_payload(row.args, row.project_id, row.protocol_run_id, row.step_run_id),
                "status": JOB_STATUS_WORDS[JobStatus(row.status)],
                "meta": {"delivery_id": row.delivery_id} if row.delivery_id else {},
                "enqueued_at": row.enqueued_at, "started_at": row.started_at, "ended_at": row.finished_at}

    @classmethod
    def queued(cls, job: Any) -> dict[str, Any] | None:
        """A job an action queued just now (`bot.queue.Job`), or None."""
        if job is None:
            return None
        return cls.of(job_id=job.job_id, job_type=job.function, status=JOB_STATUS_WORDS[JobStatus.QUEUED],
                          payload=job_payload(list(job.args), job.project_id, job.protocol_run_id, job.step_run_id))


def job_payload(args: list[Any], project_id: int | None, protocol_run_id: int | None,
                step_run_id: int | None) -> dict[str, Any]:
    ids = {"project_id": project_id, "protocol_run_id": protocol_run_id, "step_run_id": step_run_id}
    return {"args": list(args), **{key: value for key, value in ids.items() if value is not None}}


class ActionResponse(Resource):
    message: str
    job: Job | None = None
    jobs: list[Job] = []


def action(message: str, job: Any = None, jobs: Any = ()) -> dict[str, Any]:
    """What an action answers: what it did, and the jobs it queued (`bot.queue.Job`)."""
    return ActionResponse.of(message=message, job=Job.queued(job), jobs=[Job.queued(item) for item in jobs])


def event(row: Any, protocol_name: str | None = None, project_name: str | None = None) -> dict[str, Any]:
    """An event, with the names of its protocol and project when the caller has them."""
    return Event.of(row, protocol_name=protocol_name, project_name=project_name)


class OnboardingStage(Resource):
    key: str
    name: str
    status: str
    event_type: str | None = None
    message: str | None = None
    created_at: MaybeTime = None
    metadata: dict[str, Any] | None = None


class OnboardingSummary(Resource):
    project_id: int
    protocol_run_id: int | None = None
    status: str
    workspace_path: str | None = None
    hint: str | None = None
    last_event: Event | None = None
    stages: list[OnboardingStage]
    events: list[Event]


class CodeMachineImportResponse(Resource):
    protocol_run: ProtocolRun
    job: Job | None = None
    message: str
    steps: list[StepRun] = []


class BranchList(Resource):
    branches: list[str]


class BranchDeleted(Resource):
    deleted: bool
    branch: str


class Agent(Resource):
    engine: str
    installed: bool
    path: str | None = None
    version: str | None
    running: list[CodexRun]


RESOURCES: tuple[type[Resource], ...] = (
    Error, Project, ProtocolRun, StepRun, Event, CodexRun, RunArtifact, LogTail, Clarification, Message, Job,
    ActionResponse, OnboardingStage, OnboardingSummary, CodeMachineImportResponse, BranchList, BranchDeleted, Agent,
)


class QueueStats(RootModel[dict[str, dict[str, Any]]]):
    """Per queue: its counts by job state."""


def components() -> dict[str, dict[str, Any]]:
    """Every resource's JSON Schema, in OpenAPI 3.0's dialect, by name (enums get their own)."""
    found: dict[str, dict[str, Any]] = {}
    models: tuple[type[BaseModel], ...] = (*RESOURCES, QueueStats)
    for model in models:
        schema = model.model_json_schema(ref_template=REF + "{model}", mode="serialization")
        for name, definition in schema.pop("$defs", {}).items():
            found[name] = openapi_dialect(definition)
        found[model.__name__] = openapi_dialect(schema)
    return found


REF = "#/components/schemas/"


def openapi_dialect(node: Any) -> Any:
    """JSON Schema as OpenAPI 3.0 has it: `nullable` instead of a null alternative, `enum` for `const`,
    no titles."""
    if isinstance(node, list):
        return [openapi_dialect(item) for item in node]
    if not isinstance(node, dict):
        return node
    alternatives = node.get("anyOf", [])
    if {"type": "null"} in alternatives:
        others = [item for item in alternatives if item != {"type": "null"}]
        rest = {key: value for key, value in node.items() if key != "anyOf"}
        [other] = others if len(others) == 1 else [{"anyOf": others}]
        node = {**rest, **({"allOf": [other]} if "$ref" in other else other), "nullable": True}
    if "const" in node:
        node = {**{key: value for key, value in node.items() if key != "const"}, "enum": [node["const"]]}
    return {key: openapi_dialect(value) for key, value in node.items() if key != "title"}
