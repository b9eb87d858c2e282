"""Running a claimed step: the runner for its type, and its outcome settled whatever happens."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from bot import store
from bot.deps import Deps
from bot.protocols import load_step
from bot.reporting import request_report
from bot.steps.ask import run_ask
from bot.steps.execute import run_execute
from bot.steps.outcome import because, failed
from bot.steps.ralph import run_ralph
from bot.steps.settle import restart_taken_over_step, settle
from bot.workflow import ProtocolStatus, StepStatus

log = logging.getLogger("agentry.steps")

RUNNERS = {"ralph": run_ralph, "ask": run_ask}


async def run_step(deps: Deps, step_id: int, *, taken_over: bool, lease_lost: Callable[[], bool]) -> None:
    """Claims the step and runs it; a step whose worker died (`taken_over`) runs again as a new
    attempt. The outcome is settled even when agentry itself fails, unless the lease on the job was
    lost: then the step is another worker's."""
    async with deps.sessions() as session:
        loaded = await load_step(session, step_id)
        if loaded is None:
            return
        step, protocol, project = loaded
        if taken_over and step.status == StepStatus.RUNNING:
            await restart_taken_over_step(deps, step_id)
            return
        if protocol.status != ProtocolStatus.RUNNING or not await store.claim_step(session, step_id):
            return
        await store.record_event(session, "step_started", f"{step.step_name} started (attempt {step.retries + 1})",
                                 project_id=project.id, protocol_run_id=protocol.id, step_run_id=step.id)
        await session.commit()
    await request_report(deps, protocol.id, "step_started")
    try:
        outcome = await RUNNERS.get(step.step_type, run_execute)(deps, project, protocol, step)
    except asyncio.CancelledError:
        if not lease_lost():
            await settle(deps, step_id, failed("the worker stopped while the step was running; retry it"))
        raise
    except Exception as exc:
        log.exception("step crashed")
        outcome = failed(because("running the step", f"{type(exc).__name__}: {exc}"))
    await settle(deps, step_id, outcome)
