"""The periodic jobs: the minutely round, takeover of dead workers' jobs, missed deliveries."""

from __future__ import annotations

from bot import maintenance


async def maintenance_job(ctx: dict) -> dict:
    return await maintenance.look_after(ctx["deps"])


async def takeover_job(ctx: dict) -> dict:
    return {"taken_over": await maintenance.take_over_lapsed_jobs(ctx["deps"])}


async def recover_deliveries_job(ctx: dict) -> dict:
    return {"redelivered": await maintenance.recover_missed_deliveries(ctx["deps"])}
