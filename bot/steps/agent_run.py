"""An agent run for a step: its engine and model, its run record, its agent slot, its token budgets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bot import queue, step_policy, worktree
from bot.agents import AgentRequest, AgentResult, EngineNotInstalled, run_agent
from bot.deps import Deps
from bot.models import Project, ProtocolRun, StepRun
from bot.runs import agent_slot, engine_config, finish_run, start_run, stop_when_asked
from bot.statuses import RunStatus


async def start_agent_run(deps: Deps, project: Project, protocol: ProtocolRun, step: StepRun, kind: str,
                           engine: str, model: str | None):
    return await start_run(deps, job_type=queue.RUN_QUALITY if kind == "qa" else queue.EXECUTE_STEP, run_kind=kind,
                           project_id=project.id, protocol_run_id=protocol.id, step_run_id=step.id,
                           attempt=step.retries + 1, engine=engine, model=model)


def step_engine(deps: Deps, project: Project, protocol: ProtocolRun, step: StepRun) -> tuple[str, str | None]:
    defaults = project.default_models or {}
    engine = step.engine_id or protocol.engine or defaults.get("engine") or deps.settings.default_engine
    model = step.model or protocol.model or defaults.get("execute") or deps.settings.default_model
    return engine, model


async def agent(deps: Deps, run, *, engine: str, model: str | None, prompt: str, cwd: Path, kind: str,
                protocol: ProtocolRun, step: StepRun, read_only: bool = False, session_id: str | None = None,
                home_dir: Path | None = None) -> AgentResult:
    request = AgentRequest(engine=engine, prompt=prompt, cwd=cwd, kind=kind, model=model, read_only=read_only,
                           session_id=session_id, home_dir=home_dir,
                           env={"AGENTRY_PROTOCOL_ID": str(protocol.id), "AGENTRY_STEP_ID": str(step.id)})
    worktree.take_exported_mark(cwd)  # a Ralph loop runs its agent again after exporting
    async with agent_slot(deps, run), stop_when_asked(deps, protocol.id, step.id) as stop:
        result = await run_agent(request, engine_config(deps), log_path=run.log_path, stop=stop.event)
    if result.stopped:
        result = dataclasses.replace(result, error=stop.reason)
    status = RunStatus.CANCELLED if result.stopped else RunStatus.SUCCEEDED if result.ok else RunStatus.FAILED
    await finish_run(deps, run, status=status, result=result)
    return result


async def run_step_agent(deps: Deps, project: Project, protocol: ProtocolRun, step: StepRun, run_kind: str, *,
                         engine: str, model: str | None, **request) -> AgentResult:
    """Records a run of the step's agent and runs it; an engine that is not installed fails the run
    and is raised."""
    run = await start_agent_run(deps, project, protocol, step, run_kind, engine, model)
    try:
        return await agent(deps, run, engine=engine, model=model, protocol=protocol, step=step, **request)
    except EngineNotInstalled as exc:
        await finish_run(deps, run, status=RunStatus.FAILED, error=str(exc))
        raise


def step_budget_exceeded(deps: Deps, step: StepRun, tokens: int) -> str | None:
    budget = step.policy.get("max_tokens") or deps.settings.max_tokens_per_step
    return step_policy.step_budget_exceeded(tokens, budget, deps.settings.token_budget_mode)


def protocol_budget_exceeded(deps: Deps, protocol: ProtocolRun, spent: int = 0) -> str | None:
    """Whether the protocol used up its budget, counting `spent` tokens not yet recorded on it."""
    budget = protocol.policy.get("max_tokens_per_protocol") or deps.settings.max_tokens_per_protocol
    return step_policy.protocol_budget_exceeded(protocol.tokens_used + spent, budget, deps.settings.token_budget_mode)
