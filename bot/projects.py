"""A project as the forge knows it: registered on first use, and the forge to answer it through."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import store
from bot.deps import Deps
from bot.forge import Forge, RepoRef
from bot.forge.events import Repository
from bot.models import Project


async def ensure_project(session: AsyncSession, repo: Repository) -> Project:
    project, created = await store.register_repo(
        session,
        forge=repo.ref.forge,
        repo=repo.ref.full_name,
        repo_id=repo.repo_id,
        installation_id=repo.ref.installation_id,
        clone_url=repo.clone_url,
        default_branch=repo.default_branch,
    )
    if created:
        await store.record_event(session, "project_registered", f"{project.forge_repo} registered on first use",
                                 project_id=project.id)
    return project


def repo_ref(project: Project) -> RepoRef:
    return RepoRef(forge=project.forge or "github", full_name=project.forge_repo or project.name,
                   installation_id=project.installation_id, project_id=project.forge_repo_id)


def forge_of(deps: Deps, project: Project) -> Forge:
    return deps.forge(project.forge or "github")


