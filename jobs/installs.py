"""Installation events register repositories as projects."""

from __future__ import annotations

import logging

from bot import store
from bot.deps import Deps

log = logging.getLogger("agentry.jobs.installs")

ADDING = {("installation", "created"), ("installation", "unsuspend"), ("installation", "new_permissions_accepted"),
          ("installation_repositories", "added")}
REMOVING = {("installation", "deleted"), ("installation", "suspend"), ("installation_repositories", "removed")}


async def handle_installation_job(ctx: dict, delivery_id: str) -> None:
    deps: Deps = ctx["deps"]
    async with deps.sessions() as session:
        delivery = await store.get_delivery(session, delivery_id)
        if delivery is None:
            return
        payload = delivery.payload
        installation_id = payload["installation"]["id"]
        kind = (delivery.event, delivery.action)
        if kind in ADDING:
            await _register(session, installation_id, _repositories(payload, "repositories_added"))
        elif kind in REMOVING:
            removed = _repositories(payload, "repositories_removed")
            if delivery.event == "installation":
                removed = await _installation_repos(session, installation_id, removed)
            for project in await store.deactivate_repos(session, "github", [repo["full_name"] for repo in removed]):
                await store.record_event(session, "project_deactivated", f"{project.forge_repo} removed from the app",
                                         project_id=project.id)
        await session.commit()


def _repositories(payload: dict, changed_key: str) -> list[dict]:
    return payload.get(changed_key) or payload.get("repositories") or []


async def _register(session, installation_id: int, repositories: list[dict]) -> None:
    for repo in repositories:
        project, created = await store.register_repo(
            session,
            forge="github",
            repo=repo["full_name"],
            repo_id=repo.get("id"),
            installation_id=installation_id,
            clone_url=None,
            default_branch=None,
        )
        verb = "registered" if created else "reactivated"
        await store.record_event(session, f"project_{verb}", f"{project.forge_repo} {verb} from installation "
                                 f"{installation_id}", project_id=project.id)


async def _installation_repos(session, installation_id: int, known: list[dict]) -> list[dict]:
    from sqlmodel import select

    from bot.models import Project

    rows = await session.exec(select(Project).where(Project.installation_id == installation_id, Project.forge == "github"))
    names = {repo["full_name"] for repo in known} | {project.forge_repo for project in rows.all()}
    return [{"full_name": name} for name in sorted(names)]
