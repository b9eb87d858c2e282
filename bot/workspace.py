"""The protocol's worktree: prepared from agentry's mirror before each job (so any worker can run
any step), changed only inside the sandbox, and published by pushing from the mirror."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bot import git, store, worktree
from bot.deps import Deps
from bot.models import Project, ProtocolRun
from bot.paths import PathNotAllowed, allowed_roots, confine_git_url
from bot.projects import forge_of, repo_ref


class NoRepository(Exception):
    """The project has neither a clone URL nor a local path, or its path is not allowed."""


class BranchTaken(git.GitError):
    """The branch its creator chose for the protocol is someone else's."""


@dataclass(frozen=True)
class Checkout:
    path: Path
    mirror: Path
    start: str  # the sha the job started from


def source_of(deps: Deps, project: Project) -> str:
    source = project.local_path or project.git_url
    if not source:
        raise NoRepository(f"project {project.name} has no git_url or local_path to clone from")
    try:
        confine_git_url(source, allowed_roots(deps.settings))
    except PathNotAllowed as exc:
        raise NoRepository(f"{project.name}'s repository path {exc}") from None
    return source


async def git_token(deps: Deps, project: Project, *, write: bool = False) -> str | None:
    if not project.forge or project.local_path:
        return None
    token = await forge_of(deps, project).git_token(repo_ref(project), write=write) or None
    deps.redactor.add(token)
    return token


async def mirror(deps: Deps, project: Project, token: str | None) -> Path:
    path = git.mirror_path(deps.settings.data_dir.resolve(), project.id)
    await git.ensure_mirror(source_of(deps, project), path, token=token)
    return path


async def prepare(deps: Deps, project: Project, protocol: ProtocolRun) -> Checkout:
    """Checks the protocol's branch out at its remote head (or the base branch when new)."""
    deps.redactor.add(*(deps.secret_box.open(value) for value in (project.secrets or {}).values()
                        if isinstance(value, str)))
    token = await git_token(deps, project)
    mirror_dir = git.mirror_path(deps.settings.data_dir.resolve(), project.id)
    fork = protocol.state.fork
    start_point = fork.approved_sha if fork else None
    if fork and start_point and fork.head_ref:
        await git.ensure_mirror(source_of(deps, project), mirror_dir, token=token)
        await git.fetch_ref(mirror_dir, fork.head_ref, token=token)
    start, refs = await git.sync(source_of(deps, project), mirror_dir, branch=protocol.branch,
                                 base_branch=protocol.base_branch, start_point=start_point, token=token)
    if protocol.state.chosen_branch and not protocol.state.branch_pushed and git.remote_ref(protocol.branch) in refs:
        raise BranchTaken(f"the remote already has a branch {protocol.branch} that agentry did not make; "
                          "start a protocol with another branch name")
    path = git.worktree_path(deps.settings.data_dir.resolve(), protocol.id)
    await worktree.prepare(deps.sandbox, mirror_dir, path, branch=protocol.branch, start=start, refs=refs)
    return Checkout(path, mirror_dir, start)


async def publish(deps: Deps, project: Project, protocol: ProtocolRun, checkout: Checkout,
                  message: str) -> worktree.Exported:
    """Commits what the agent left (inside the sandbox), imports it into the mirror and pushes the
    branch to the address agentry stored."""
    exported = await worktree.export(
        deps.sandbox, checkout.mirror, checkout.path, deps.settings.data_dir.resolve() / "exports",
        start=checkout.start, message=message, identity=identity(deps), import_ref=f"refs/agentry/work/{protocol.id}")
    token = await git_token(deps, project, write=True)
    await git.push_commit(checkout.mirror, source_of(deps, project), exported.head_sha, protocol.branch, token=token)
    if protocol.state.chosen_branch and not protocol.state.branch_pushed:
        await _mark_pushed(deps, protocol)
    return exported


async def _mark_pushed(deps: Deps, protocol: ProtocolRun) -> None:
    """A chosen branch agentry pushed is its own from then on: the next job works on it."""
    async with deps.transaction() as session:
        stored = await store.row(session, ProtocolRun, protocol.id)
        stored.state = stored.state.changed(branch_pushed=True)
    protocol.state = protocol.state.changed(branch_pushed=True)


async def diff(deps: Deps, checkout: Checkout, base_branch: str) -> str:
    """The branch's changes, redacted: it goes into the QA prompt."""
    return deps.redactor(await worktree.diff(deps.sandbox, checkout.path, f"refs/remotes/origin/{base_branch}"))


async def remove(deps: Deps, project: Project, protocol: ProtocolRun) -> None:
    data_dir = deps.settings.data_dir.resolve()
    await git.remove_worktree(git.mirror_path(data_dir, project.id), git.worktree_path(data_dir, protocol.id))
    worktree.take_exported_mark(git.worktree_path(data_dir, protocol.id))


def identity(deps: Deps) -> git.Identity:
    return git.Identity(name=deps.settings.git_author_name, email=deps.settings.git_author_email)
