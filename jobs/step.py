"""Step jobs: run an agent on a step, and QA it."""

from __future__ import annotations

from bot.deps import Deps
from bot.steps.quality import run_quality
from bot.steps.run import run_step


async def execute_step_job(ctx: dict, step_id: int) -> None:
    deps: Deps = ctx["deps"]
    lease = ctx.get("lease")
    await run_step(deps, step_id, taken_over=bool(ctx.get("taken_over")),
                   lease_lost=lambda: bool(getattr(lease, "lost", False)))


async def run_quality_job(ctx: dict, step_id: int) -> None:
    await run_quality(ctx["deps"], step_id)
