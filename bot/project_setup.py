"""A project made ready: its repository cloned (or fetched) and its branches recorded."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import git, store, workspace
from bot.deps import Deps
from bot.models import Project, utcnow
from bot.runs import finish_run, start_run
from bot.statuses import ProjectStatus, RunStatus


async def set_up_project(deps: Deps, project_id: int) -> dict:
    """Clones (or fetches) the project's repository and records its branches."""
    async with deps.sessions() as session:
        project = await session.get(Project, project_id)
    run = await start_run(deps, job_type="project_setup_job", run_kind="setup", project_id=project_id,
                          runs_an_agent=False)
    try:
        mirror = await workspace.mirror(deps, project, await workspace.git_token(deps, project))
        branches = await git.list_branches(mirror)
        default = await git.default_branch(mirror)
    except (git.GitError, workspace.NoRepository) as exc:
        await finish_run(deps, run, status=RunStatus.FAILED, error=str(exc))
        async with deps.transaction() as session:
            await _set_project_status(session, project_id, ProjectStatus.SETUP_FAILED, str(exc))
        return {"ok": False, "error": str(exc)}
    await finish_run(deps, run, status=RunStatus.SUCCEEDED, extra={"branches": branches, "default_branch": default})
    async with deps.transaction() as session:
        await _set_project_status(session, project_id, ProjectStatus.READY, f"{len(branches)} branches, default {default}",
                                  branches=branches)
    return {"ok": True, "branches": len(branches)}


async def _set_project_status(session: AsyncSession, project_id: int, status: ProjectStatus, message: str,
                              branches: list | None = None) -> None:
    project = await session.get(Project, project_id)
    project.status = status
    project.updated_at = utcnow()
    session.add(project)
    await store.record_event(session, f"project_{status}", message, project_id=project_id,
                             meta={"branches": branches} if branches is not None else {})
