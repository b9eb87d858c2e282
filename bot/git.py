"""Agentry's own git: one bare mirror per project, fetched from and pushed to the forge.

The mirror is never visible to an agent, so its config is agentry's; no system or global config is
read. Agents work in worktrees of their own (`bot.worktree`), and their commits come back as a
bundle that `import_bundle` checks object by object before `push_commit` sends them on.

Every call runs `git` as an asyncio subprocess with an argument list, a working directory and a
timeout (the whole process group is killed when it expires), never prompts, and never runs hooks.

A token reaches git only through the environment: `AGENTRY_GIT_TOKEN` holds it, and an inline
credential helper (a fixed string, scoped to the remote's scheme and host) prints it when git asks.
Inherited helpers are reset first. The token is never in argv, a URL, a config value, a log line
or a `GitError` message.

The remote is the source of truth: every job fetches what it needs (`sync`: the protocol's branch
and its base, in one fetch), so any worker can continue any protocol from its own data dir. The
mirror's lock is held only while its refs are written (fetches, `update-ref`); pushes, bundle
imports and reads run beside each other. Automatic gc is off on the hot path; `tidy_mirror` runs it
from the maintenance job.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import time
import unicodedata
import weakref
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger(__name__)

LOCAL_TIMEOUT = 120.0  # seconds, for commands that do not touch the network
NETWORK_TIMEOUT = 900.0  # clone, fetch, push
LOCK_TIMEOUT = 1800.0  # waiting for another job that holds the mirror's lock

TOKEN_ENV = "AGENTRY_GIT_TOKEN"
TOKEN_USERNAME = "x-access-token"
# A fixed string: the shell expands the variable when git runs the helper, so the token only
# ever lives in the environment. It answers `get` and ignores `store` / `erase`.
CREDENTIAL_HELPER = (
    '!f() { test "$1" = get || return 0; '
    f'echo username={TOKEN_USERNAME}; echo "password=${TOKEN_ENV}"; }}; f'
)

_SAFE_CONFIG = (
    ("core.hooksPath", os.devnull),  # never run repository or user hooks
    ("core.askPass", ""),
    ("core.fsmonitor", "false"),
    ("commit.gpgSign", "false"),
    ("gc.auto", "0"),  # no gc after each fetch: `tidy_mirror` runs it from the maintenance job
    ("maintenance.auto", "false"),
)
GC_AUTO_THRESHOLD = "6700"  # git's default, for `tidy_mirror`
_DROPPED_ENV = frozenset(
    {
        "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_NAMESPACE", "GIT_PREFIX", "GIT_CONFIG_PARAMETERS",
        "GIT_CEILING_DIRECTORIES", "GIT_ASKPASS", "SSH_ASKPASS",
    }
)
_DROPPED_ENV_PREFIXES = ("GIT_AUTHOR_", "GIT_COMMITTER_", "AGENTRY_")
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
_AUTH_HEADER = re.compile(r"(?i)(authorization:\s*\w+\s+)\S+")
_STDERR_TAIL = 2000
_REMOTE = "refs/remotes/origin/"


class GitError(Exception):
    """A git operation failed. The message holds the command and the tail of git's stderr, with
    tokens and URL credentials replaced by `***`."""

    def __init__(self, message: str, *, returncode: int | None = None, stderr: str = "") -> None:
        super().__init__(_scrub(message))
        self.returncode = returncode
        self.stderr = _scrub(stderr)


@dataclass(frozen=True)
class Identity:
    name: str = "agentry[bot]"
    email: str = "agentry[bot]@users.noreply.github.com"


@dataclass(frozen=True)
class _Result:
    returncode: int
    out: bytes
    stderr: str
    truncated: bool = False

    @property
    def text(self) -> str:
        return self.out.decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------------
# Names and paths


def branch_name(protocol_id: int, title: str) -> str:
    """`agent/<id>-<slug>`; the slug is lowercase ASCII `[a-z0-9-]`, at most 40 characters."""
    if int(protocol_id) < 0:
        raise ValueError("protocol_id must not be negative")
    return f"agent/{int(protocol_id)}-{_slug(title)}"


def _slug(title: str, limit: int = 40) -> str:
    ascii_title = unicodedata.normalize("NFKD", title or "").encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    return slug[:limit].rstrip("-") or "work"


_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")


def ref_problem(ref: str) -> str | None:
    """Why `ref` (a full name, `refs/...`) is not one git accepts (`git check-ref-format`), or None."""
    if not ref.startswith("refs/") or _REF_FORBIDDEN.search(ref) or ref.endswith(("/", ".")) or ref == "@":
        return f"not a valid ref name: {ref[:80]!r}"
    if any(part.startswith(".") or part.endswith(".lock") for part in ref.split("/")):
        return f"not a valid ref name: {ref[:80]!r}"
    return None


def check_branch(branch: str) -> None:
    if branch.startswith("-") or ref_problem(f"refs/heads/{branch}"):
        raise GitError(f"invalid branch name {branch!r}")


def _check_ref(ref: str) -> None:
    if (problem := ref_problem(ref)) is not None:
        raise GitError(problem)


def remote_ref(branch: str) -> str:
    """Where the mirror keeps the remote's `branch`."""
    return f"{_REMOTE}{branch}"


def mirror_path(data_dir: Path, project_id: int) -> Path:
    return Path(data_dir) / "repos" / f"{int(project_id)}.git"


def worktree_path(data_dir: Path, protocol_id: int) -> Path:
    return Path(data_dir) / "worktrees" / str(int(protocol_id))


# ---------------------------------------------------------------------------------------------
# Mirror


async def ensure_mirror(url_or_path: str, mirror: Path, *, token: str | None = None) -> None:
    """Create the bare mirror on first use, point it at `url_or_path`, fetch, update origin/HEAD."""
    url, mirror = _clean_remote(url_or_path), Path(mirror)
    async with _mirror_lock(mirror):
        if not _is_mirror(mirror):
            await _create_mirror(mirror, url)
        elif await _origin_url(mirror) != url:
            await _git(mirror, "remote", "set-url", "origin", url)
        await _fetch(mirror, token)
        await _git(
            mirror, "remote", "set-head", "origin", "--auto",
            token=token, url=url, timeout=NETWORK_TIMEOUT, check=False,
        )


async def fetch(mirror: Path, *, token: str | None = None) -> None:
    async with _mirror_lock(Path(mirror)):
        await _fetch(Path(mirror), token)


async def fetch_ref(mirror: Path, ref: str, *, token: str | None = None) -> str:
    """Fetches one ref the branch refspec leaves out (a pull request's head, say) and returns its sha.

    It is kept under refs/agentry/, which `fetch --prune` leaves alone."""
    mirror = Path(mirror)
    if not ref.startswith("refs/") or ref.startswith("-"):
        raise GitError(f"not a full ref name: {ref[:80]!r}")
    local = "refs/agentry/" + ref.removeprefix("refs/")
    _check_ref(local)
    async with _mirror_lock(mirror):
        url = await _origin_url(mirror)
        await _git(mirror, "fetch", "--quiet", "origin", f"+{ref}:{local}", token=token, url=url,
                   timeout=NETWORK_TIMEOUT)
        return (await _git(mirror, "rev-parse", "--verify", local)).text.strip()


async def default_branch(mirror: Path) -> str:
    head = await _git(Path(mirror), "symbolic-ref", "--quiet", f"{_REMOTE}HEAD", check=False)
    if head.returncode == 0:
        return head.text.strip().removeprefix(_REMOTE)
    names = {branch["name"] for branch in await list_branches(mirror)}
    for guess in ("main", "master"):
        if guess in names:
            return guess
    raise GitError("cannot determine the remote's default branch")


async def list_branches(mirror: Path) -> list[dict]:
    """The remote's branches as of the last fetch: `[{"name": ..., "sha": ...}]`, sorted by name."""
    listing = await _git(
        Path(mirror), "for-each-ref", "--format=%(refname) %(objectname)", _REMOTE
    )
    branches = []
    for line in listing.text.splitlines():
        ref, sha = line.split(" ")
        name = ref.removeprefix(_REMOTE)
        if name != "HEAD":
            branches.append({"name": name, "sha": sha})
    return branches


async def _create_mirror(mirror: Path, url: str) -> None:
    staging = mirror.with_name(mirror.name + ".tmp")
    _rmtree(mirror)
    _rmtree(staging)
    staging.parent.mkdir(parents=True, exist_ok=True)
    await _git(staging.parent, "init", "--bare", "--quiet", staging.name)
    # Branches land in refs/remotes/origin/* (no local branch goes stale); tags are mirrored
    # with force, so a tag moved upstream cannot make fetches fail.
    await _git(staging, "remote", "add", "origin", url)
    await _git(staging, "config", "--add", "remote.origin.fetch", "+refs/tags/*:refs/tags/*")
    staging.rename(mirror)


async def _fetch(repo: Path, token: str | None) -> None:
    url = await _origin_url(repo)
    await _git(
        repo, "fetch", "--prune", "--quiet", "origin", token=token, url=url, timeout=NETWORK_TIMEOUT
    )


async def _origin_url(repo: Path) -> str:
    return (await _git(repo, "config", "--get", "remote.origin.url")).text.strip()


def _is_mirror(mirror: Path) -> bool:
    return all(((mirror / "HEAD").is_file(), (mirror / "config").is_file(),
                (mirror / "objects").is_dir()))


def _clean_remote(url_or_path: str) -> str:
    """An absolute path for a local repository, else the URL without credentials."""
    text = str(url_or_path).strip()
    if not text or text.startswith("-") or any(c in text for c in "\r\n\0"):
        raise GitError("invalid repository URL or path")
    if "://" not in text:
        return str(Path(text).resolve()) if Path(text).exists() else text
    parts = urlsplit(text)
    if "@" not in parts.netloc:
        return text
    host = parts.netloc.rpartition("@")[2]
    keep_user = parts.scheme not in ("http", "https") and parts.username
    netloc = f"{parts.username}@{host}" if keep_user else host
    log.warning("removed credentials from a repository URL; pass the token separately")
    return urlunsplit(parts._replace(netloc=netloc))


@contextlib.asynccontextmanager
async def _mirror_lock(mirror: Path) -> AsyncIterator[None]:
    """An exclusive flock on `<mirror>.lock` between processes; the tasks of one process queue for
    it in order (an asyncio lock), so only one of them polls the flock at a time."""
    resolved = mirror.resolve()
    lock_path = resolved.with_name(resolved.name + ".lock")
    async with _task_lock(lock_path):
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            await _acquire(fd, lock_path)
            yield
        finally:
            os.close(fd)  # releases the lock


_TASK_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Path, asyncio.Lock]] = weakref.WeakKeyDictionary()


def _task_lock(lock_path: Path) -> asyncio.Lock:
    locks = _TASK_LOCKS.setdefault(asyncio.get_running_loop(), {})
    return locks.setdefault(lock_path, asyncio.Lock())


async def _acquire(fd: int, lock_path: Path) -> None:
    deadline, delay = time.monotonic() + LOCK_TIMEOUT, 0.002
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise GitError(f"timed out waiting for {lock_path.name}") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.02)


# ---------------------------------------------------------------------------------------------
# What a job starts from, and what it brings back


async def sync(url_or_path: str, mirror: Path, *, branch: str, base_branch: str, start_point: str | None = None,
               token: str | None = None) -> tuple[str, dict[str, str]]:
    """One fetch of what a job needs (the protocol's branch, if the remote has it, and its base;
    the mirror is made on first use), then where `branch` starts: its head on the remote, or when
    the remote has no such branch `start_point` (a ref fetched with `fetch_ref`) or else the base.
    Returns the sha and the mirror refs a worktree needs (the start and the base branch) with theirs."""
    url, mirror = _clean_remote(url_or_path), Path(mirror)
    check_branch(branch)
    check_branch(base_branch)
    # The branch as a one-`*` pattern, so a branch the remote does not have yet is no error, and
    # `--prune` drops it when it was deleted there.
    refspecs = [f"+refs/heads/{branch}*:{_REMOTE}{branch}*"]
    if base_branch != branch:
        refspecs.append(f"+refs/heads/{base_branch}:{_REMOTE}{base_branch}")
    async with _mirror_lock(mirror):
        if not _is_mirror(mirror):
            await _create_mirror(mirror, url)
        fetched = await _git(mirror, "fetch", "--prune", "--quiet", "--no-tags", "--no-write-fetch-head", url,
                             *refspecs, token=token, url=url, timeout=NETWORK_TIMEOUT, check=False)
    if fetched.returncode != 0:
        if "couldn't find remote ref" in fetched.stderr:
            raise GitError(f"base branch {base_branch!r} does not exist on the remote")
        raise _failure(("fetch", url), fetched.returncode, fetched.stderr, token)
    heads = await _heads(mirror, branch, base_branch)
    sha, refs = await _start(mirror, heads, branch, base_branch, start_point)
    base = f"{_REMOTE}{base_branch}"
    if base in heads:
        refs[base] = heads[base]
    return sha, refs


async def _heads(mirror: Path, *branches: str) -> dict[str, str]:
    """The remote-tracking refs of `branches` that exist, with their commits."""
    wanted = [f"{_REMOTE}{name}" for name in branches]
    listing = await _git(mirror, "for-each-ref", "--format=%(refname) %(objectname)", *wanted)
    heads = dict(line.split(" ", 1) for line in listing.text.splitlines())
    return {ref: sha for ref, sha in heads.items() if ref in wanted}


async def _start(mirror: Path, heads: dict[str, str], branch: str, base_branch: str,
                 start_point: str | None) -> tuple[str, dict[str, str]]:
    """The start's sha, and the mirror refs that hold it: the branch, else `start_point`, else the base."""
    ref = f"{_REMOTE}{branch}"
    if ref not in heads and start_point is not None:
        if (sha := await _rev(mirror, start_point)) is None:
            raise GitError(f"start point {start_point[:40]!r} is not in the mirror; fetch it first")
        listing = await _git(mirror, "for-each-ref", "--format=%(refname)", "--points-at", sha, "refs/agentry/")
        return sha, dict.fromkeys(listing.text.split(), sha)
    if ref not in heads:
        ref = f"{_REMOTE}{base_branch}"
    if ref not in heads:
        raise GitError(f"base branch {base_branch!r} does not exist on the remote")
    return heads[ref], {ref: heads[ref]}


async def import_bundle(mirror: Path, bundle: Path, ref: str) -> str:
    """Fetches the bundle's HEAD into `ref` of the mirror, checking every object; returns its sha.
    `ref` is the protocol's own, so no lock is needed."""
    mirror = Path(mirror)
    _check_ref(ref)
    head = bundle_head(bundle)
    await _git(mirror, "-c", "transfer.fsckObjects=true", "fetch", "--quiet", "--no-tags",
               "--no-write-fetch-head", str(bundle), f"+HEAD:{ref}", timeout=NETWORK_TIMEOUT)
    return head


def bundle_head(bundle: Path) -> str:
    """The commit a bundle's header names as HEAD (v2 or v3 format)."""
    with open(bundle, "rb") as handle:
        header = handle.read(64 * 1024).split(b"\n\n", 1)[0].decode("ascii", "replace").splitlines()
    if not header or header[0] not in ("# v2 git bundle", "# v3 git bundle"):
        raise GitError("not a git bundle")
    for line in header[1:]:
        sha, _, name = line.partition(" ")
        if name == "HEAD" and _SHA.fullmatch(sha):
            return sha
    raise GitError("the bundle names no HEAD")


async def push_commit(mirror: Path, url_or_path: str, sha: str, branch: str, *, token: str | None = None) -> str:
    """Pushes `sha` (a commit in the mirror) to `refs/heads/<branch>` at `url_or_path`, the address
    agentry stored, never one read back from a git config."""
    mirror, url = Path(mirror), _clean_remote(url_or_path)
    check_branch(branch)
    if not _SHA.fullmatch(sha):
        raise GitError(f"not a commit id: {sha[:80]!r}")
    await _git(mirror, "push", "--quiet", "--no-verify", url, f"{sha}:refs/heads/{branch}",
               token=token, url=url, timeout=NETWORK_TIMEOUT)
    async with _mirror_lock(mirror):
        await _git(mirror, "update-ref", f"{_REMOTE}{branch}", sha)
    return sha


async def remove_worktree(mirror: Path, worktree: Path) -> None:
    """Deletes the protocol's worktree (a repository of its own; the remote keeps the work)."""
    _rmtree(_worktree_of(mirror, worktree))


async def tidy_mirror(mirror: Path) -> None:
    """Forget linked worktrees of old and their local branches, then gc if git finds it due."""
    if not _is_mirror(Path(mirror)):
        return
    async with _mirror_lock(Path(mirror)):
        await _git(Path(mirror), "worktree", "prune")
        await _delete_orphan_branches(Path(mirror))
        await _git(Path(mirror), "-c", f"gc.auto={GC_AUTO_THRESHOLD}", "gc", "--auto", "--quiet",
                   timeout=NETWORK_TIMEOUT)


def _worktree_of(mirror: Path, worktree: Path) -> Path:
    """The worktree's absolute path; it is deleted when broken, so it must not hold the mirror."""
    worktree = Path(worktree).resolve()
    if Path(mirror).resolve().is_relative_to(worktree):
        raise GitError(f"worktree {worktree} would contain the mirror")
    return worktree


async def _delete_orphan_branches(mirror: Path) -> None:
    """Local branches only back linked worktrees of old; the remote keeps the work."""
    listing = await _git(mirror, "worktree", "list", "--porcelain")
    in_use = {
        line.split(" ", 1)[1] for line in listing.text.splitlines() if line.startswith("branch ")
    }
    refs = (await _git(mirror, "for-each-ref", "--format=%(refname)", "refs/heads/")).text.split()
    orphans = [ref for ref in refs if ref not in in_use]
    if orphans:
        commands = "".join(f"delete {ref}\n" for ref in orphans).encode()
        await _git(mirror, "update-ref", "--stdin", stdin=commands)


async def delete_remote_branch(mirror: Path, branch: str, *, token: str | None = None) -> None:
    """Delete the branch on the remote; a branch that is already gone is fine."""
    mirror = Path(mirror)
    check_branch(branch)
    async with _mirror_lock(mirror):
        args = ("push", "--quiet", "origin", f":refs/heads/{branch}")
        url = await _origin_url(mirror)
        pushed = await _git(
            mirror, *args, token=token, url=url, timeout=NETWORK_TIMEOUT, check=False
        )
        if pushed.returncode != 0 and "remote ref does not exist" not in pushed.stderr:
            raise _failure(args, pushed.returncode, pushed.stderr, token)
        await _git(mirror, "update-ref", "-d", f"{_REMOTE}{branch}", check=False)


def cap_patch(out: bytes, max_bytes: int, truncated: bool) -> str:
    if not truncated and len(out) <= max_bytes:
        return out.decode("utf-8", "replace")
    marker = f"\n[diff truncated at {max_bytes} bytes]\n".encode()
    cut = out[: max(max_bytes - len(marker), 0)]
    line_end = cut.rfind(b"\n")
    cut = cut[: line_end + 1] if line_end >= 0 else cut
    return (cut + marker)[:max_bytes].decode("utf-8", "ignore")


async def _rev(repo: Path, rev: str) -> str | None:
    found = await _git(
        repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}",
        check=False,
    )
    return found.text.strip() if found.returncode == 0 else None


# ---------------------------------------------------------------------------------------------
# Running git


async def _git(
    cwd: Path,
    *args: str,
    check: bool = True,
    token: str | None = None,
    url: str | None = None,
    timeout: float | None = None,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    limit: int | None = None,
) -> _Result:
    """Run `git *args` in `cwd`. `token` is offered to `url`'s host through the credential
    helper; `limit` caps stdout (the process is killed once it is exceeded)."""
    timeout = LOCAL_TIMEOUT if timeout is None else timeout
    log.debug("git %s (in %s)", " ".join(args), cwd)
    try:
        proc = await asyncio.create_subprocess_exec(
            "git", *args, cwd=cwd, env=_git_env(cwd, token, url) | (env or {}),
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True,  # so a timeout kills git's helpers too
        )
    except OSError as exc:
        raise GitError(f"cannot run git {args[0]} in {cwd}: {exc.strerror}") from None
    try:
        out, err, truncated = await asyncio.wait_for(_communicate(proc, stdin, limit), timeout)
    except TimeoutError:
        raise GitError(f"git {' '.join(args)} timed out after {timeout:g}s") from None
    finally:
        _kill(proc)
        await proc.wait()
    result = _Result(proc.returncode, out, err.decode("utf-8", "replace"), truncated)
    if check and result.returncode != 0 and not truncated:
        raise _failure(args, result.returncode, result.stderr, token)
    return result


async def _communicate(
    proc: asyncio.subprocess.Process, stdin: bytes | None, limit: int | None
) -> tuple[bytes, bytes, bool]:
    if limit is None:
        out, err = await proc.communicate(stdin)
        return out, err, False
    err_task = asyncio.ensure_future(proc.stderr.read())
    try:
        try:
            out, truncated = await proc.stdout.readexactly(limit + 1), True
        except asyncio.IncompleteReadError as exc:
            out, truncated = exc.partial, False
        if truncated:
            _kill(proc)
        err = await err_task
        await proc.wait()
        return out, err, truncated
    finally:
        err_task.cancel()  # a no-op once it is done


def _kill(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _git_env(cwd: Path, token: str | None, url: str | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not _dropped(key)}
    env.update(
        GIT_CONFIG_NOSYSTEM="1",  # agentry's git reads no config but the mirror's and its own
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_TERMINAL_PROMPT="0",
        GIT_TRACE_REDACT="1",
        LC_ALL="C",
        # Never mistake an enclosing repository for a broken worktree or mirror.
        GIT_CEILING_DIRECTORIES=str(Path(cwd).resolve().parent),
    )
    entries = list(_SAFE_CONFIG)
    if token:
        entries += _credential_config(token, url)
        if entries[-1][1] == CREDENTIAL_HELPER:
            env[TOKEN_ENV] = token
    _add_config(env, entries)
    return env


def _credential_config(token: str, url: str | None) -> list[tuple[str, str]]:
    """Reset inherited helpers, then answer with the token for the remote's scheme and host."""
    if any(c in token for c in "\r\n\0"):
        raise GitError("invalid token")
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return [("credential.helper", "")]
    scope = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
    return [("credential.helper", ""), (f"credential.{scope}.helper", CREDENTIAL_HELPER)]


def _add_config(env: dict[str, str], entries: Iterable[tuple[str, str]]) -> None:
    count = int(env.get("GIT_CONFIG_COUNT") or 0)
    for key, value in entries:
        env[f"GIT_CONFIG_KEY_{count}"], env[f"GIT_CONFIG_VALUE_{count}"] = key, value
        count += 1
    env["GIT_CONFIG_COUNT"] = str(count)


def _dropped(key: str) -> bool:
    return key in _DROPPED_ENV or key.startswith(_DROPPED_ENV_PREFIXES)


def _failure(
    args: Iterable[str], returncode: int, stderr: str, token: str | None = None
) -> GitError:
    tail = _scrub(stderr.strip()[-_STDERR_TAIL:], token)
    command = _scrub("git " + " ".join(args), token)
    message = f"{command} failed (exit {returncode}): {tail}"
    return GitError(message, returncode=returncode, stderr=tail)


def _scrub(text: str, token: str | None = None) -> str:
    """Remove a token (plain or inside a Basic auth value) and any URL userinfo from text."""
    if token:
        basic = base64.b64encode(f"{TOKEN_USERNAME}:{token}".encode()).decode()
        text = text.replace(token, "***").replace(basic, "***")
    text = _USERINFO.sub(r"\1***@", text)
    return _AUTH_HEADER.sub(r"\1***", text)


def _rmtree(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
