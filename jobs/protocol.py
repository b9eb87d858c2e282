"""Protocol-level jobs: project setup, planning, the pull request, and reports."""

from __future__ import annotations

from bot import dependencies, planning, project_setup, pull_requests, reporting


async def project_setup_job(ctx: dict, project_id: int) -> dict:
    return await project_setup.set_up_project(ctx["deps"], project_id)


async def plan_protocol_job(ctx: dict, protocol_id: int) -> None:
    await planning.plan_protocol(ctx["deps"], protocol_id)


async def codemachine_import_job(ctx: dict, protocol_id: int) -> None:
    await planning.import_codemachine_plan(ctx["deps"], protocol_id)


async def open_pr_job(ctx: dict, protocol_id: int) -> None:
    await pull_requests.open_pull_request(ctx["deps"], protocol_id)


async def report_protocol_job(ctx: dict, protocol_id: int) -> None:
    await dependencies.release_dependents(ctx["deps"], protocol_id)  # every change of status is reported
    await reporting.report_protocol(ctx["deps"], protocol_id)
