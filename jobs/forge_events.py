"""Jobs for what happens on the forge: pull requests, CI results, installations."""

from __future__ import annotations

from bot import forge_feedback, installations


async def handle_pull_request_job(ctx: dict, delivery_id: str) -> None:
    await forge_feedback.pull_request_changed(ctx["deps"], delivery_id)


async def handle_ci_result_job(ctx: dict, delivery_id: str) -> None:
    await forge_feedback.ci_finished(ctx["deps"], delivery_id)


async def handle_installation_job(ctx: dict, delivery_id: str) -> None:
    await installations.installation_changed(ctx["deps"], delivery_id)
