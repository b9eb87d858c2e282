"""Every job attempt is a run (`codex_runs`) with a log file and registered artifacts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

from bot.agents import AgentResult, EngineConfig
from bot.config import Settings
from bot.deps import Deps
from bot.models import CodexRun, ProtocolRun, RunArtifact, StepRun, utcnow
from bot.state import kill_requested_by
from bot.statuses import RunStatus
from bot.workflow import ProtocolStatus

FINAL_MESSAGE_KEEP = 20_000
STOP_POLL_SECONDS = 0.5  # how often a running agent's job looks for a cancel or a stop, whichever worker took it


def engine_config(deps: Deps) -> EngineConfig:
    settings = deps.settings
    return EngineConfig(
        bins=dict(settings.engine_bins),
        extra_args=dict(settings.engine_args),
        config_files=dict(settings.engine_configs),
        command_line=settings.engine_command,
        timeout_seconds=settings.step_timeout_seconds,
        idle_timeout_seconds=settings.idle_timeout_seconds,
        max_retries=settings.agent_max_retries,
        base_env=dict(settings.environment),
        home_parent=str(homes_dir(settings)),
        sandbox=deps.sandbox,
        allow_hosts=settings.sandbox_allow_hosts,
        redact=deps.redactor,
    )


def homes_dir(settings: Settings) -> Path:
    path = settings.data_dir.resolve() / "homes"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def runs_dir(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "runs"


async def start_run(deps: Deps, *, job_type: str, run_kind: str, project_id: int | None,
                    protocol_run_id: int | None = None, step_run_id: int | None = None, attempt: int = 1,
                    engine: str | None = None, model: str | None = None, params: dict | None = None,
                    runs_an_agent: bool = True) -> CodexRun:
    """A run; one that runs an agent is `queued` until the agent holds a slot (:func:`agent_slot`)."""
    run = CodexRun(job_type=job_type, run_kind=run_kind, status=RunStatus.QUEUED if runs_an_agent else RunStatus.RUNNING,
                   project_id=project_id, protocol_run_id=protocol_run_id, step_run_id=step_run_id, attempt=attempt,
                   worker_id=deps.worker_id, engine=engine, model=model, params=params or {},
                   started_at=None if runs_an_agent else utcnow())
    directory = runs_dir(deps.settings)
    directory.mkdir(parents=True, exist_ok=True)
    run.log_path = str(directory / f"{run.run_id}.log")
    Path(run.log_path).touch()
    async with deps.sessions() as session:
        session.add(run)
        await session.commit()
    return run


@contextlib.asynccontextmanager
async def agent_slot(deps: Deps, run: CodexRun) -> AsyncIterator[None]:
    """Holds one of the process's agent slots; the run is `running` from the moment it has one."""
    async with deps.agent_slots:
        async with deps.sessions() as session:
            stored = await session.get(CodexRun, run.run_id)
            stored.status, stored.started_at = RunStatus.RUNNING, utcnow()
            session.add(stored)
            await session.commit()
        yield


async def finish_run(deps: Deps, run: CodexRun, *, status: RunStatus, result: AgentResult | None = None,
                     error: str | None = None, extra: dict | None = None) -> CodexRun:
    async with deps.sessions() as session:
        stored = await session.get(CodexRun, run.run_id)
        stored.status = status
        stored.finished_at = utcnow()
        stored.error = error or (result.error if result else None)
        stored.result = {**(agent_summary(result) if result else {}), **(extra or {})}
        if result is not None:
            stored.cost_tokens = result.usage.total
            stored.cost_usd = result.cost_usd
        session.add(stored)
        await session.commit()
        return stored


def agent_summary(result: AgentResult) -> dict:
    return {
        "ok": result.ok,
        "engine": result.engine,
        "exit_code": result.exit_code,
        "final_message": result.final_message[-FINAL_MESSAGE_KEEP:],
        "session_id": result.session_id,
        "usage": {"input": result.usage.input, "output": result.usage.output, "cached": result.usage.cached,
                  "total": result.usage.total},
        "cost_usd": result.cost_usd,
        "timed_out": result.timed_out,
        "idle_timed_out": result.idle_timed_out,
        "duration_seconds": round(result.duration_seconds, 3),
    }


async def add_artifact(deps: Deps, run: CodexRun, name: str, content: str | bytes, *, kind: str = "file") -> RunArtifact:
    """Writes the artifact beside the run log and registers it (only registered files are ever served)."""
    directory = runs_dir(deps.settings) / run.run_id
    directory.mkdir(parents=True, exist_ok=True)
    data = content.encode() if isinstance(content, str) else content
    path = directory / Path(name).name
    path.write_bytes(data)
    artifact = RunArtifact(run_id=run.run_id, name=name, kind=kind, path=str(path),
                           sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    async with deps.sessions() as session:
        session.add(artifact)
        await session.commit()
    return artifact


class StopSignal:
    """Set when the agent running for a protocol (or one of its steps) is to be killed, with why."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        self.reason = reason
        self.event.set()


@contextlib.asynccontextmanager
async def stop_when_asked(deps: Deps, protocol_id: int, step_id: int | None = None) -> AsyncIterator[StopSignal]:
    """A signal for `run_agent(stop=signal.event)`, set within about half a second of the protocol's
    cancel, its stop now, or the step's stop."""
    signal = StopSignal()
    watcher = asyncio.create_task(_watch_for_stop(deps, protocol_id, step_id, signal))
    try:
        yield signal
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _watch_for_stop(deps: Deps, protocol_id: int, step_id: int | None, signal: StopSignal) -> None:
    while not signal.event.is_set():
        await asyncio.sleep(STOP_POLL_SECONDS)
        try:
            reason = await _stop_reason(deps, protocol_id, step_id)
        except Exception:  # noqa: BLE001 - a database hiccup must not stop the agent; look again later
            continue
        if reason:
            signal.set(reason)


async def _stop_reason(deps: Deps, protocol_id: int, step_id: int | None) -> str | None:
    async with deps.sessions() as session:
        protocol = await session.get(ProtocolRun, protocol_id, populate_existing=True)
        step = await session.get(StepRun, step_id, populate_existing=True) if step_id is not None else None
    if protocol is None or protocol.status == ProtocolStatus.CANCELLED:
        return "stopped: the protocol was cancelled"
    by = kill_requested_by(protocol.state, step.state if step is not None else None)
    return f"stopped by {by}" if by else None
