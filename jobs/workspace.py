"""The protocol's worktree: fetched from the remote before each job, so any worker can run any step."""

from __future__ import annotations

from pathlib import Path

from bot import git
from bot.deps import Deps
from bot.models import Project, ProtocolRun
from jobs.common import forge_of, repo_ref


class NoRepository(Exception):
    """The project has neither a clone URL nor a local path."""


def source_of(project: Project) -> str:
    source = project.local_path or project.git_url
    if not source:
        raise NoRepository(f"project {project.name} has no git_url or local_path to clone from")
    return source


async def git_token(deps: Deps, project: Project) -> str | None:
    if not project.forge or project.local_path:
        return None
    return await forge_of(deps, project).git_token(repo_ref(project)) or None


async def mirror(deps: Deps, project: Project, token: str | None) -> Path:
    path = git.mirror_path(deps.settings.data_dir.resolve(), project.id)
    await git.ensure_mirror(source_of(project), path, token=token)
    return path


async def worktree(deps: Deps, project: Project, protocol: ProtocolRun) -> tuple[Path, str | None]:
    """Prepares the protocol's worktree at the remote head of its branch (or the base branch when new)."""
    token = await git_token(deps, project)
    mirror_dir = await mirror(deps, project, token)
    path = git.worktree_path(deps.settings.data_dir.resolve(), protocol.id)
    fork = protocol.runtime_state.get("fork") or {}
    start_point = fork.get("approved_sha")
    if start_point:
        await git.fetch_ref(mirror_dir, fork["head_ref"], token=token)
    await git.prepare_worktree(mirror_dir, path, branch=protocol.branch, base_branch=protocol.base_branch, token=token,
                               start_point=start_point)
    return path, token


async def remove(deps: Deps, project: Project, protocol: ProtocolRun) -> None:
    data_dir = deps.settings.data_dir.resolve()
    await git.remove_worktree(git.mirror_path(data_dir, project.id), git.worktree_path(data_dir, protocol.id))


def identity(deps: Deps) -> git.Identity:
    return git.Identity(name=deps.settings.git_author_name, email=deps.settings.git_author_email)
