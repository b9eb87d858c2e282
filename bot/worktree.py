"""The agent's repository: one per protocol, changed only inside the sandbox.

The worktree is a repository of its own whose `.git` the agent may change at will, so agentry runs
no git command in it outside the sandbox. Preparing it fetches from agentry's mirror (mounted
read-only); exporting commits what the agent left and writes a bundle of the new commits, which
agentry then imports into its mirror with git under its own configuration (`bot.git`) and pushes
from there. Nothing the agent wrote (config, attributes, hooks, alternates) is ever read by an
authenticated git command.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot import git
from bot.agents import EngineConfig, agent_environment, network
from bot.agents.environment import prepare_home
from bot.sandbox import NoSandbox, Sandbox, SandboxRequest, SandboxUnavailable
from bot.sandbox.policy import GIT_ETC_ENTRIES
from bot.sandbox.run import Captured, run_captured

GIT_TIMEOUT = 600.0
EXPORTED_MARKS = ".exported"  # a directory beside the worktrees
RESULT = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64}) ([01])\n?$")

# A worktree kept from an earlier job on this worker usually has every commit it needs already: then
# the refs are only moved; otherwise the missing commits are fetched from the mirror.
PREPARE = r'''
set -eu
source=$1 branch=$2 start=$3 shas=$4 updates=$5
shift 5
[ -d .git ] || git init -q
case $(printf '%s\n' $shas | git cat-file --batch-check) in
    *missing*) git fetch -q --no-tags --no-write-fetch-head --no-recurse-submodules "$source" "$@" ;;
    *) printf '%s' "$updates" | git update-ref --stdin ;;
esac
git checkout -q -f --no-track -B "$branch" "$start"
git clean -ffdq
'''

EXPORT = r'''
set -eu
out=$1 start=$2
git add --all -- . ':(exclude,glob).aider.tags.cache.v*' ':(exclude,glob).aider.tags.cache.v*/**'
changed=0
git diff --cached --quiet || { changed=1; git commit -q --no-verify --cleanup=whitespace -F -; }
head=$(git rev-parse --verify HEAD)
printf '%s %s\n' "$head" "$changed" > "$out/result"
if [ "$head" != "$start" ] && ! git merge-base --is-ancestor "$head" "$start" 2>/dev/null; then
    git bundle create -q "$out/work.bundle" HEAD "^$start"
fi
'''

DIFF = r'''
set -eu
base=$1
since=$(git merge-base "$base" HEAD 2>/dev/null) || since=$(git rev-parse --verify "$base^{commit}")
git diff --no-color --no-ext-diff --no-textconv "$since"
'''


@dataclass(frozen=True)
class Exported:
    head_sha: str
    committed: bool  # agentry committed changes the agent left uncommitted
    new_commits: bool  # the head moved away from where the job started


def git_env(identity: git.Identity | None = None) -> dict[str, str]:
    """git inside the sandbox: no system or global config, no prompts, no hooks."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_OPTIONAL_LOCKS": "0",
        "GIT_CONFIG_COUNT": "5",
        "GIT_CONFIG_KEY_0": "core.hooksPath", "GIT_CONFIG_VALUE_0": os.devnull,
        "GIT_CONFIG_KEY_1": "commit.gpgSign", "GIT_CONFIG_VALUE_1": "false",
        "GIT_CONFIG_KEY_2": "safe.directory", "GIT_CONFIG_VALUE_2": "*",
        # A worktree lives for one protocol: gc after each fetch or commit would be wasted work.
        "GIT_CONFIG_KEY_3": "gc.auto", "GIT_CONFIG_VALUE_3": "0",
        "GIT_CONFIG_KEY_4": "maintenance.auto", "GIT_CONFIG_VALUE_4": "false",
    }
    if identity is not None:
        env.update(GIT_AUTHOR_NAME=identity.name, GIT_AUTHOR_EMAIL=identity.email,
                   GIT_COMMITTER_NAME=identity.name, GIT_COMMITTER_EMAIL=identity.email)
    return env


async def prepare(sandbox: Sandbox, mirror: Path, worktree: Path, *, branch: str, start: str,
                  refs: Mapping[str, str]) -> str:
    """Checks `branch` out at `start` (a sha in the mirror) with `refs` (name: sha) of the mirror
    under the same names; local changes are discarded, ignored files kept. Returns the HEAD sha."""
    if take_exported_mark(worktree) == start and (worktree / ".git").is_dir():
        return start  # this worker exported `start` from here, and nothing ran in it since
    shas = " ".join(dict.fromkeys([start, *refs.values()]))
    updates = "".join(f"update {ref} {sha}\n" for ref, sha in refs.items())
    for attempt in (1, 2):
        _reset_if_foreign(worktree, force=attempt == 2)
        worktree.mkdir(mode=0o700, parents=True, exist_ok=True)
        argv = ["sh", "-c", PREPARE, "prepare", str(mirror), branch, start, shas, updates,
                *(f"+{ref}:{ref}" for ref in refs)]
        done = await _git_in_sandbox(sandbox, worktree, argv, read_only=(mirror,))
        if done.returncode == 0:
            return start
    raise git.GitError(f"cannot prepare the worktree: {_reason(done)}")


async def export(sandbox: Sandbox, mirror: Path, worktree: Path, scratch: Path, *, start: str, message: str,
                 identity: git.Identity, import_ref: str) -> Exported:
    """Commits what the agent left, then imports the commits made since `start` into the mirror
    under `import_ref`."""
    out = _scratch_dir(scratch)
    try:
        argv = ["sh", "-c", EXPORT, "export", str(out), start]
        done = await _git_in_sandbox(sandbox, worktree, argv, writable=(out,), identity=identity,
                                     stdin=(message.strip() or "agentry: update").encode())
        if done.returncode != 0:
            raise git.GitError(f"cannot commit the agent's work: {_reason(done)}")
        head, committed = _read_result(out / "result")
        if head != start and (bundle := _regular_file(out / "work.bundle")) is not None:
            imported = await git.import_bundle(mirror, bundle, import_ref)
            if imported != head:
                raise git.GitError(f"the exported bundle holds {imported[:12]}, not the worktree's head {head[:12]}")
        _exported_mark(worktree).write_text(head)
        return Exported(head, committed, head != start)
    finally:
        shutil.rmtree(out, ignore_errors=True)


async def diff(sandbox: Sandbox, worktree: Path, base_ref: str, *, max_bytes: int = 200_000) -> str:
    """What the branch changes since it left `base_ref`, at most `max_bytes` (cut at a line end)."""
    argv = ["sh", "-c", DIFF, "diff", base_ref]
    done = await _git_in_sandbox(sandbox, worktree, argv, cwd_read_only=True, limit=max_bytes)
    if done.returncode != 0 and not done.truncated:
        raise git.GitError(f"cannot compute the diff: {_reason(done)}")
    return git.cap_patch(done.stdout, max_bytes, done.truncated)


async def run_command(worktree: Path, argv: list[str], config: EngineConfig, *, timeout: float,
                      limit: int) -> Captured:
    """A command from the repository's side (a Ralph feedback command) in the worktree, sandboxed
    like an agent: the agents' clean environment, a fresh home, the same network. Output redacted."""
    sandbox = config.sandbox or NoSandbox()
    take_exported_mark(worktree)  # the command may leave files behind
    with tempfile.TemporaryDirectory(prefix="agentry-command-", dir=config.home_parent) as scratch:
        home = Path(scratch)
        prepare_home(home)
        env = agent_environment(config.base_env, home, {})
        request = SandboxRequest(command=argv, cwd=worktree, env=env, writable=(home,),
                                 executables=_executables(argv[0], env), network=network(env, config, []))
        done = await run_captured(sandbox, request, timeout=timeout, limit=limit)
    return dataclasses.replace(done, stdout=config.redact(done.stdout.decode(errors="replace")).encode(),
                               stderr=config.redact(done.stderr))


def remove(worktree: Path) -> None:
    if worktree.is_symlink() or worktree.is_file():
        worktree.unlink()
    elif worktree.exists():
        shutil.rmtree(worktree)


async def _git_in_sandbox(sandbox: Sandbox, worktree: Path, argv: list[str], *, writable: tuple = (),
                          read_only: tuple = (), cwd_read_only: bool = False, identity: git.Identity | None = None,
                          stdin: bytes | None = None, limit: int = 1024 * 1024) -> Captured:
    """git in the worktree (writable unless `cwd_read_only`), seeing only the given other paths."""
    env = {**git_env(identity), "GIT_CEILING_DIRECTORIES": str(worktree.parent)}
    request = SandboxRequest(command=argv, cwd=worktree, env=env, writable=writable, read_only=read_only,
                             executables=_executables("git", {}), cwd_read_only=cwd_read_only, etc=GIT_ETC_ENTRIES)
    try:
        done = await run_captured(sandbox, request, stdin=stdin, timeout=GIT_TIMEOUT, limit=limit)
    except SandboxUnavailable as exc:
        raise git.GitError(str(exc)) from None
    except OSError as exc:
        raise git.GitError(f"cannot run git in the sandbox: {exc.strerror or exc}") from None
    if done.timed_out:
        raise git.GitError(f"git in the sandbox timed out after {GIT_TIMEOUT:g}s")
    return done


def _exported_mark(worktree: Path) -> Path:
    """Beside the worktree, out of every sandbox's sight: the head `export` left it clean at."""
    marks = worktree.parent / EXPORTED_MARKS
    marks.mkdir(mode=0o700, parents=True, exist_ok=True)
    return marks / worktree.name


def take_exported_mark(worktree: Path) -> str | None:
    """The head `export` left the worktree clean at, if nothing ran in it since; the mark is removed,
    since whatever runs next may change it. Called before anything runs in the worktree."""
    mark = _exported_mark(worktree)
    try:
        head = mark.read_text().strip()
    except FileNotFoundError:
        return None
    mark.unlink()
    return head


def _executables(program: str, env: Mapping[str, str]) -> tuple[Path, ...]:
    found = shutil.which(program, path=env.get("PATH") or None) if os.sep not in program else program
    return (Path(found),) if found else ()


def _reset_if_foreign(worktree: Path, *, force: bool) -> None:
    """A worktree that is not a plain repository (a linked worktree of old, a link) starts over."""
    dot_git = worktree / ".git"
    if force or worktree.is_symlink() or (worktree.exists() and (dot_git.is_symlink() or not dot_git.is_dir())):
        remove(worktree)


def _scratch_dir(scratch: Path) -> Path:
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    out = scratch / secrets.token_hex(8)
    out.mkdir(mode=0o700)
    return out


def _regular_file(path: Path) -> Path | None:
    """`path` if it is a regular file (not a link the sandboxed side may have planted)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    return path if stat.S_ISREG(info.st_mode) else None


def _read_result(path: Path) -> tuple[str, bool]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise git.GitError(f"the export left no result: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        text = handle.read(200).decode(errors="replace")
    match = RESULT.match(text)
    if match is None:
        raise git.GitError("the export's result is malformed")
    return match.group(1), match.group(2) == "1"


def _reason(done: Captured) -> str:
    return done.stderr.strip()[-1500:] or f"exit code {done.returncode}"
