"""What the API answers: rows turned into the reference's JSON shapes, and those shapes as JSON Schema."""

from __future__ import annotations

from datetime import datetime, timezone
from collections.abc import Iterable
from typing import Any

from bot.models import (
    Clarification,
    CodexRun,
    Event,
    Message,
    Project,
    ProtocolRun,
    QueuedJob,
    RunArtifact,
    StepRun,
)
from bot.queue import Job
from bot.statuses import JOB_STATUS_WORDS, ClarificationStatus, JobStatus, ProjectStatus, RunStatus
from bot.workflow import ProtocolStatus, StepStatus

REDACTED = "[redacted]"

# queued_jobs.status -> the reference's queue vocabulary


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.isoformat()


def parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def redacted_secrets(secrets: dict | None) -> dict:
    return {str(key): REDACTED for key in (secrets or {})}


def project_out(project: Project) -> dict:
    return {
        "id": project.id,
        "name": project.name,
        "git_url": project.git_url,
        "local_path": project.local_path,
        "base_branch": project.base_branch,
        "ci_provider": project.ci_provider,
        "default_models": project.default_models or {},
        "secrets": redacted_secrets(project.secrets),
        "forge": project.forge,
        "forge_repo": project.forge_repo,
        "active": project.active,
        "status": project.status,
        "created_at": iso(project.created_at),
        "updated_at": iso(project.updated_at),
    }


def protocol_out(protocol: ProtocolRun) -> dict:
    return {
        "id": protocol.id,
        "project_id": protocol.project_id,
        "protocol_name": protocol.protocol_name,
        "status": protocol.status,
        "base_branch": protocol.base_branch,
        "worktree_path": protocol.worktree_path,
        "protocol_root": protocol.protocol_root,
        "description": protocol.description,
        "template_config": protocol.template_config,
        "template_source": protocol.template_source,
        "kind": protocol.kind,
        "branch": protocol.branch,
        "issue_number": protocol.issue_number,
        "issue_title": protocol.issue_title,
        "pr_number": protocol.pr_number,
        "pr_url": protocol.pr_url,
        "engine": protocol.engine,
        "model": protocol.model,
        "policy": protocol.policy or {},
        "runtime_state": protocol.runtime_state or {},
        "tokens_used": protocol.tokens_used,
        "cost_usd": protocol.cost_usd,
        "created_at": iso(protocol.created_at),
        "updated_at": iso(protocol.updated_at),
    }


def step_out(step: StepRun) -> dict:
    return {
        "id": step.id,
        "protocol_run_id": step.protocol_run_id,
        "step_index": step.step_index,
        "step_name": step.step_name,
        "step_type": step.step_type,
        "status": step.status,
        "model": step.model,
        "summary": step.summary,
        "engine_id": step.engine_id,
        "policy": step.policy,
        "retries": step.retries,
        "runtime_state": step.runtime_state or {},
        "qa_policy": step.qa_policy,
        "changes_files": step.changes_files,
        "depends_on": step.depends_on or [],
        "prompt": step.prompt,
        "tokens_used": step.tokens_used,
        "cost_usd": step.cost_usd,
        "created_at": iso(step.created_at),
        "updated_at": iso(step.updated_at),
    }


def event_out(event: Event, protocol_name: str | None = None, project_name: str | None = None) -> dict:
    return {
        "id": event.id,
        "project_id": event.project_id,
        "protocol_run_id": event.protocol_run_id,
        "step_run_id": event.step_run_id,
        "event_type": event.event_type,
        "message": event.message,
        "metadata": event.meta or {},
        "created_at": iso(event.created_at),
        "protocol_name": protocol_name,
        "project_name": project_name,
    }


def run_out(run: CodexRun) -> dict:
    return {
        "run_id": run.run_id,
        "job_type": run.job_type,
        "run_kind": run.run_kind,
        "status": run.status,
        "project_id": run.project_id,
        "protocol_run_id": run.protocol_run_id,
        "step_run_id": run.step_run_id,
        "queue": run.queue,
        "attempt": run.attempt,
        "worker_id": run.worker_id,
        "prompt_version": run.prompt_version,
        "engine": run.engine,
        "model": run.model,
        "params": run.params or {},
        "result": run.result or {},
        "error": run.error,
        "log_path": run.log_path,
        "cost_tokens": run.cost_tokens,
        "cost_usd": run.cost_usd,
        "created_at": iso(run.created_at),
        "updated_at": iso(run.finished_at or run.started_at or run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
    }


def artifact_out(artifact: RunArtifact) -> dict:
    return {
        "id": artifact.id,
        "run_id": artifact.run_id,
        "name": artifact.name,
        "kind": artifact.kind,
        "path": artifact.path,
        "sha256": artifact.sha256,
        "bytes": artifact.bytes,
        "created_at": iso(artifact.created_at),
    }


def clarification_out(item: Clarification) -> dict:
    return {
        "id": item.id,
        "scope": item.scope,
        "project_id": item.project_id,
        "protocol_run_id": item.protocol_run_id,
        "step_run_id": item.step_run_id,
        "key": item.key,
        "question": item.question,
        "recommended": item.recommended,
        "options": item.options,
        "applies_to": item.applies_to,
        "blocking": item.blocking,
        "answer": item.answer,
        "status": item.status,
        "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at),
        "answered_at": iso(item.answered_at),
        "answered_by": item.answered_by,
    }


def message_out(message: Message) -> dict:
    return {
        "id": message.id,
        "project_id": message.project_id,
        "protocol_run_id": message.protocol_run_id,
        "type": message.type,
        "author": message.author,
        "body": message.body,
        "metadata": message.meta or {},
        "created_at": iso(message.created_at),
    }


def queued_job_out(job: QueuedJob) -> dict:
    return {
        "job_id": job.job_id,
        "job_type": job.function,
        "payload": job_payload(job.args, job.project_id, job.protocol_run_id, job.step_run_id),
        "status": JOB_STATUS_WORDS[JobStatus(job.status)],
        "attempts": job.attempts,
        "error": job.error,
        "meta": {"delivery_id": job.delivery_id} if job.delivery_id else {},
        "enqueued_at": iso(job.enqueued_at),
        "started_at": iso(job.started_at),
        "ended_at": iso(job.finished_at),
    }


def job_out(job: Job | None) -> dict | None:
    if job is None:
        return None
    return {
        "job_id": job.job_id,
        "job_type": job.function,
        "payload": job_payload(list(job.args), job.project_id, job.protocol_run_id, job.step_run_id),
        "status": JOB_STATUS_WORDS[JobStatus.QUEUED],
    }


def job_payload(args: list, project_id: int | None, protocol_run_id: int | None, step_run_id: int | None) -> dict:
    ids = {"project_id": project_id, "protocol_run_id": protocol_run_id, "step_run_id": step_run_id}
    return {"args": list(args), **{key: value for key, value in ids.items() if value is not None}}


def action_out(message: str, job: Job | None, jobs: list[Job] = ()) -> dict:
    return {"message": message, "job": job_out(job), "jobs": [job_out(item) for item in jobs]}


# --- JSON Schemas of the answers ----------------------------------------------------------------


def _nullable(kind: str, **extra: Any) -> dict:
    return {"type": kind, "nullable": True, **extra}


def _object(required: list[str], properties: dict) -> dict:
    return {"type": "object", "required": required, "properties": properties}


def _one_of(values: Iterable[str]) -> dict:
    """A string that is one of `values` (an enum's members, for a status)."""
    return {"type": "string", "enum": [str(value) for value in values]}


TIME = {"type": "string", "format": "date-time"}
MAYBE_TIME = _nullable("string", format="date-time")
INT, TEXT, BOOL, OBJ = {"type": "integer"}, {"type": "string"}, {"type": "boolean"}, {"type": "object"}
MAYBE_INT, MAYBE_TEXT, MAYBE_OBJ = _nullable("integer"), _nullable("string"), _nullable("object")
MAYBE_NUMBER = _nullable("number")

SCHEMAS: dict[str, dict] = {
    "Error": _object(["error"], {"error": TEXT, "fields": {"type": "object",
                                                          "additionalProperties": {"type": "string"}}}),
    "Project": _object(["id", "name", "base_branch", "secrets", "created_at", "updated_at"], {
        "id": INT, "name": TEXT, "git_url": MAYBE_TEXT, "local_path": MAYBE_TEXT, "base_branch": TEXT,
        "ci_provider": MAYBE_TEXT, "default_models": OBJ,
        "secrets": {"type": "object", "additionalProperties": {"type": "string", "enum": [REDACTED]}},
        "forge": MAYBE_TEXT, "forge_repo": MAYBE_TEXT, "active": BOOL, "status": _one_of(ProjectStatus),
        "created_at": TIME, "updated_at": TIME}),
    "ProtocolRun": _object(["id", "project_id", "protocol_name", "status", "base_branch", "created_at", "updated_at"], {
        "id": INT, "project_id": INT, "protocol_name": TEXT,
        "status": _one_of(ProtocolStatus),
        "base_branch": TEXT, "worktree_path": MAYBE_TEXT, "protocol_root": MAYBE_TEXT, "description": MAYBE_TEXT,
        "template_config": MAYBE_OBJ, "template_source": MAYBE_OBJ, "kind": TEXT, "branch": MAYBE_TEXT,
        "issue_number": MAYBE_INT, "issue_title": MAYBE_TEXT, "pr_number": MAYBE_INT, "pr_url": MAYBE_TEXT,
        "engine": MAYBE_TEXT, "model": MAYBE_TEXT, "policy": OBJ, "runtime_state": OBJ, "tokens_used": INT,
        "cost_usd": MAYBE_NUMBER, "created_at": TIME, "updated_at": TIME}),
    "StepRun": _object(["id", "protocol_run_id", "step_index", "step_name", "step_type", "status", "retries",
                        "created_at", "updated_at"], {
        "id": INT, "protocol_run_id": INT, "step_index": INT, "step_name": TEXT, "step_type": TEXT,
        "status": _one_of(StepStatus),
        "model": MAYBE_TEXT, "summary": MAYBE_TEXT, "engine_id": MAYBE_TEXT, "policy": {}, "retries": INT,
        "runtime_state": OBJ, "qa_policy": TEXT, "changes_files": {"type": "boolean"},
        "depends_on": {"type": "array"}, "prompt": MAYBE_TEXT,
        "tokens_used": INT, "cost_usd": MAYBE_NUMBER, "created_at": TIME, "updated_at": TIME}),
    "Event": _object(["id", "event_type", "message", "created_at"], {
        "id": INT, "project_id": MAYBE_INT, "protocol_run_id": MAYBE_INT, "step_run_id": MAYBE_INT,
        "event_type": TEXT, "message": TEXT, "metadata": OBJ, "created_at": TIME,
        "protocol_name": MAYBE_TEXT, "project_name": MAYBE_TEXT}),
    "CodexRun": _object(["run_id", "job_type", "status", "created_at", "updated_at"], {
        "run_id": TEXT, "job_type": TEXT, "run_kind": MAYBE_TEXT, "status": _one_of(RunStatus), "project_id": MAYBE_INT,
        "protocol_run_id": MAYBE_INT, "step_run_id": MAYBE_INT, "queue": MAYBE_TEXT, "attempt": MAYBE_INT,
        "worker_id": MAYBE_TEXT, "prompt_version": MAYBE_TEXT, "engine": MAYBE_TEXT, "model": MAYBE_TEXT,
        "params": OBJ, "result": OBJ, "error": MAYBE_TEXT, "log_path": MAYBE_TEXT, "cost_tokens": MAYBE_INT,
        "cost_usd": MAYBE_NUMBER, "created_at": TIME, "updated_at": TIME, "started_at": MAYBE_TIME,
        "finished_at": MAYBE_TIME}),
    "RunArtifact": _object(["id", "run_id", "name", "kind", "path", "created_at"], {
        "id": INT, "run_id": TEXT, "name": TEXT, "kind": TEXT, "path": TEXT, "sha256": MAYBE_TEXT,
        "bytes": MAYBE_INT, "created_at": TIME}),
    "LogTail": _object(["run_id", "offset", "next_offset", "eof", "chunk"], {
        "run_id": TEXT, "offset": INT, "next_offset": INT, "eof": BOOL, "chunk": TEXT}),
    "Clarification": _object(["id", "scope", "project_id", "key", "question", "blocking", "status",
                              "created_at", "updated_at"], {
        "id": INT, "scope": TEXT, "project_id": INT, "protocol_run_id": MAYBE_INT, "step_run_id": MAYBE_INT,
        "key": TEXT, "question": TEXT, "recommended": {}, "options": _nullable("array"), "applies_to": MAYBE_TEXT,
        "blocking": BOOL, "answer": {}, "status": _one_of(ClarificationStatus), "created_at": TIME, "updated_at": TIME,
        "answered_at": MAYBE_TIME, "answered_by": MAYBE_TEXT}),
    "Message": _object(["id", "project_id", "type", "body", "created_at"], {
        "id": INT, "project_id": INT, "protocol_run_id": MAYBE_INT,
        "type": {"type": "string", "enum": ["USER", "FACT", "PROGRESS", "DECISION", "ERROR", "QUESTION"]},
        "author": MAYBE_TEXT, "body": TEXT, "metadata": OBJ, "created_at": TIME}),
    "Job": _object(["job_id", "job_type", "payload", "status"], {
        "job_id": TEXT, "job_type": TEXT, "payload": OBJ, "status": _one_of(JOB_STATUS_WORDS.values()),
        "attempts": INT, "error": MAYBE_TEXT,
        "meta": OBJ, "enqueued_at": MAYBE_TIME, "started_at": MAYBE_TIME, "ended_at": MAYBE_TIME}),
    "ActionResponse": _object(["message"], {
        "message": TEXT, "job": {"allOf": [{"$ref": "#/components/schemas/Job"}], "nullable": True},
        "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}}}),
    "OnboardingStage": _object(["key", "name", "status"], {
        "key": TEXT, "name": TEXT, "status": TEXT, "event_type": MAYBE_TEXT, "message": MAYBE_TEXT,
        "created_at": MAYBE_TIME, "metadata": MAYBE_OBJ}),
    "OnboardingSummary": _object(["project_id", "status", "stages", "events"], {
        "project_id": INT, "protocol_run_id": MAYBE_INT, "status": TEXT, "workspace_path": MAYBE_TEXT,
        "hint": MAYBE_TEXT, "last_event": {"allOf": [{"$ref": "#/components/schemas/Event"}], "nullable": True},
        "stages": {"type": "array", "items": {"$ref": "#/components/schemas/OnboardingStage"}},
        "events": {"type": "array", "items": {"$ref": "#/components/schemas/Event"}}}),
    "CodeMachineImportResponse": _object(["protocol_run", "message"], {
        "protocol_run": {"$ref": "#/components/schemas/ProtocolRun"},
        "job": {"allOf": [{"$ref": "#/components/schemas/Job"}], "nullable": True},
        "message": TEXT, "steps": {"type": "array", "items": {"$ref": "#/components/schemas/StepRun"}}}),
    "BranchList": _object(["branches"], {"branches": {"type": "array", "items": TEXT}}),
    "BranchDeleted": _object(["deleted", "branch"], {"deleted": BOOL, "branch": TEXT}),
    "QueueStats": {"type": "object", "additionalProperties": {"type": "object"}},
    "Agent": _object(["engine", "installed", "version", "running"], {
        "engine": TEXT, "installed": BOOL, "path": MAYBE_TEXT, "version": MAYBE_TEXT,
        "running": {"type": "array", "items": {"$ref": "#/components/schemas/CodexRun"}}}),
}


def ref(name: str) -> dict:
    if name not in SCHEMAS:
        raise KeyError(f"no schema named {name}")
    return {"$ref": f"#/components/schemas/{name}"}


def list_of(name: str) -> dict:
    return {"type": "array", "items": ref(name)}
