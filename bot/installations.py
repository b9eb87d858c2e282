"""Installation events register repositories as projects."""

from __future__ import annotations

import logging

from bot import store
from bot.deps import Deps
from bot.forge import payloads
from bot.forge.payloads import InstallationPayload, InstallationRepositoriesPayload, InstalledRepo

log = logging.getLogger("agentry.installations")

ADDING = {("installation", "created"), ("installation", "unsuspend"), ("installation", "new_permissions_accepted"),
          ("installation_repositories", "added")}
REMOVING = {("installation", "deleted"), ("installation", "suspend"), ("installation_repositories", "removed")}


async def installation_changed(deps: Deps, delivery_id: str) -> None:
    """Repositories added to the app are registered; removed ones deactivated."""
    async with deps.sessions() as session:
        delivery = await store.get_delivery(session, delivery_id)
        if delivery is None:
            return
        shape = payloads.github_shape(delivery.event, delivery.payload)
        assert isinstance(shape, (InstallationPayload, InstallationRepositoriesPayload))
        installation_id = shape.installation.id
        kind = (delivery.event, delivery.action)
        if kind in ADDING:
            await _register(session, installation_id, _repositories(shape, added=True))
        elif kind in REMOVING:
            removed = [repo.full_name for repo in _repositories(shape, added=False)]
            if delivery.event == "installation":
                removed = await _installation_repos(session, installation_id, removed)
            for project in await store.deactivate_repos(session, "github", removed):
                await store.record_event(session, "project_deactivated", f"{project.forge_repo} removed from the app",
                                         project_id=project.id)
        await session.commit()


def _repositories(shape: InstallationPayload | InstallationRepositoriesPayload, *, added: bool) -> list[InstalledRepo]:
    if isinstance(shape, InstallationRepositoriesPayload):
        return shape.repositories_added if added else shape.repositories_removed
    return shape.repositories or []


async def _register(session, installation_id: int, repositories: list[InstalledRepo]) -> None:
    for repo in repositories:
        project, created = await store.register_repo(
            session,
            forge="github",
            repo=repo.full_name,
            repo_id=repo.id,
            installation_id=installation_id,
            clone_url=None,
            default_branch=None,
        )
        verb = "registered" if created else "reactivated"
        await store.record_event(session, f"project_{verb}", f"{project.forge_repo} {verb} from installation "
                                 f"{installation_id}", project_id=project.id)


async def _installation_repos(session, installation_id: int, known: list[str]) -> list[str]:
    from sqlmodel import select

    from bot.models import Project

    rows = await session.exec(select(Project).where(Project.installation_id == installation_id, Project.forge == "github"))
    return sorted(set(known) | {project.forge_repo for project in rows.all() if project.forge_repo})
