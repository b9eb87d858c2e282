"""What every job that answers a webhook needs: the delivery read back as a normalized event,
the project it concerns, and the forge to answer through."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable, Sequence

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import store
from bot.deps import Deps
from bot.forge import Forge, RepoRef
from bot.forge import events as github_events
from bot.forge import gitlab_events, payloads
from bot.forge.events import Repository
from bot.models import Project, ProtocolRun, WebhookDelivery

log = logging.getLogger("agentry.jobs")

PERMISSION_RANK = {"none": 0, "read": 1, "write": 2, "admin": 3}


def permits(actual: str, required: str) -> bool:
    return PERMISSION_RANK.get(actual, 0) >= PERMISSION_RANK[required]


def read_event(delivery: WebhookDelivery, kind: str, *, labels: Sequence[str] = ()) -> Any:
    """A recorded delivery read back as the normalized event of `kind` (comment, label, pull_request,
    ci, check_action) that jobs work with; `labels` are the configured ones a label event may name.
    It was checked against its shape at intake, so it reads back."""
    if delivery.forge == "gitlab":
        shape: Any = payloads.gitlab_shape(delivery.event, delivery.payload)
        readers: dict[str, Callable[[Any], Any]] = {
            "comment": gitlab_events.gitlab_comment,
            "label": lambda data: gitlab_events.gitlab_label(data, list(labels)),
            "pull_request": gitlab_events.gitlab_merge_request,
            "ci": gitlab_events.gitlab_pipeline,
        }
    else:
        shape = payloads.github_shape(delivery.event, delivery.payload)
        readers = {
            "comment": github_events.github_comment,
            "label": github_events.github_label,
            "pull_request": github_events.github_pull_request,
            "check_action": github_events.github_check_action,
            "ci": github_events.github_ci,
        }
    return readers[kind](shape)


async def load_delivery(deps: Deps, delivery_id: str):
    async with deps.sessions() as session:
        return await store.get_delivery(session, delivery_id)


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


@asynccontextmanager
async def transaction(deps: Deps) -> AsyncIterator[AsyncSession]:
    async with deps.sessions() as session:
        yield session
        await session.commit()


async def load_protocol(session: AsyncSession, protocol_id: int) -> tuple[ProtocolRun | None, Project | None]:
    protocol = await session.get(ProtocolRun, protocol_id)
    if protocol is None:
        return None, None
    return protocol, await session.get(Project, protocol.project_id)
