"""bot.git against real git: a bare repository in tmp is the forge, plus a smart-HTTP forge that
checks Basic auth (git http-backend behind aiohttp) for the token paths."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from bot import git, worktree
from bot.git import GitError, Identity
from bot.sandbox import BwrapSandbox, NoSandbox, Sandbox

TOKEN = "ghs_TestToken0123456789abcdefXYZ"
SEED_ENV = {
    "GIT_AUTHOR_NAME": "Seed",
    "GIT_AUTHOR_EMAIL": "seed@example.com",
    "GIT_COMMITTER_NAME": "Seed",
    "GIT_COMMITTER_EMAIL": "seed@example.com",
}


@pytest.fixture(autouse=True)
def isolated_git(tmp_path, monkeypatch):
    """No system or user git configuration leaks into the tests."""
    for key in list(os.environ):
        if key.startswith("GIT_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    return home


def run(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=os.environ | SEED_ENV, check=True, capture_output=True,
        text=True,
    )
    return done.stdout.strip()


class Remote:
    """A bare repository standing in for the forge, seeded with one commit on `branch`."""

    def __init__(self, root: Path, branch: str = "main") -> None:
        self.path, self.seed, self.branch = root / "remote.git", root / "seed", branch
        run("init", "-q", "--bare", "-b", branch, str(self.path), cwd=root)
        run("init", "-q", "-b", branch, str(self.seed), cwd=root)
        self.commit({"README.md": "hello\n"}, "initial")

    def commit(self, files: dict[str, str], message: str) -> str:
        for name, text in files.items():
            (self.seed / name).write_text(text)
        run("add", "-A", cwd=self.seed)
        run("commit", "-q", "-m", message, cwd=self.seed)
        run("push", "-q", str(self.path), f"HEAD:refs/heads/{self.branch}", cwd=self.seed)
        return run("rev-parse", "HEAD", cwd=self.seed)

    def log(self, branch: str, fmt: str = "%s") -> list[str]:
        listing = run("--git-dir", str(self.path), "log", f"--format={fmt}", branch, cwd=self.path)
        return listing.splitlines()

    def sha(self, branch: str) -> str | None:
        found = subprocess.run(
            ["git", "--git-dir", str(self.path), "rev-parse", "--verify", "--quiet",
             f"refs/heads/{branch}"],
            capture_output=True, text=True,
        )
        return found.stdout.strip() or None

    def show(self, branch: str, path: str) -> str:
        return run("--git-dir", str(self.path), "show", f"{branch}:{path}", cwd=self.path)


@pytest.fixture
def remote(tmp_path) -> Remote:
    return Remote(tmp_path)


@dataclass
class Worker:
    """One worker's data dir: agentry's mirror, and protocol worktrees changed only in the sandbox."""

    data_dir: Path
    url: str
    token: str | None = None
    starts: dict[int, str] = field(default_factory=dict)

    @property
    def mirror(self) -> Path:
        return git.mirror_path(self.data_dir, 1)

    @property
    def sandbox(self) -> Sandbox:
        candidate = BwrapSandbox(runs_dir=self.data_dir / "sandbox", protected=[self.data_dir])
        return NoSandbox() if candidate.problem() and not os.environ.get("CI") else candidate

    def worktree(self, protocol_id: int = 7) -> Path:
        return git.worktree_path(self.data_dir, protocol_id)

    async def prepare(self, branch: str, base: str = "main", protocol_id: int = 7) -> str:
        start, refs = await git.sync(self.url, self.mirror, branch=branch, base_branch=base, token=self.token)
        self.starts[protocol_id] = start
        return await worktree.prepare(self.sandbox, self.mirror, self.worktree(protocol_id), branch=branch,
                                      start=start, refs=refs)

    async def publish(self, message: str, branch: str, identity: Identity = Identity(),
                      protocol_id: int = 7) -> worktree.Exported:
        exported = await worktree.export(self.sandbox, self.mirror, self.worktree(protocol_id),
                                         self.data_dir / "exports", start=self.starts[protocol_id], message=message,
                                         identity=identity, import_ref=f"refs/agentry/work/{protocol_id}")
        await git.push_commit(self.mirror, self.url, exported.head_sha, branch, token=self.token)
        self.starts[protocol_id] = exported.head_sha
        return exported


@pytest.fixture
def worker(tmp_path, remote) -> Worker:
    return Worker(tmp_path / "worker-a", str(remote.path))


BRANCH = git.branch_name(7, "Add a feature")


# --- names and paths ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Fix login bug", "agent/7-fix-login-bug"),
        ("  Café & naïve résumé!  ", "agent/7-cafe-naive-resume"),
        ("feat(api): add /v2/users -- again...", "agent/7-feat-api-add-v2-users-again"),
        ("Übergrößenträger", "agent/7-ubergroentrager"),  # NFKD keeps only ASCII letters
        ("日本語のタイトル", "agent/7-work"),
        ("", "agent/7-work"),
        ("!!!", "agent/7-work"),
        ("a" * 39 + " bcd", "agent/7-" + "a" * 39),
        ("x" * 100, "agent/7-" + "x" * 40),
        ("refs/heads/../.lock~^:?*[\\", "agent/7-refs-heads-lock"),
    ],
)
def test_branch_name(title, expected, tmp_path):
    name = git.branch_name(7, title)
    assert name == expected
    slug = name.split("-", 1)[1]
    assert len(slug) <= 40 and not slug.endswith("-")
    run("check-ref-format", "--branch", name, cwd=tmp_path)


def test_paths(tmp_path):
    assert git.mirror_path(tmp_path, 3) == tmp_path / "repos" / "3.git"
    assert git.worktree_path(tmp_path, 12) == tmp_path / "worktrees" / "12"
    assert git.worktree_path(tmp_path, 12) != git.worktree_path(tmp_path, 13)


# --- mirror ---------------------------------------------------------------------------------


async def test_mirror_clones_once_and_fetch_picks_up_new_commits(worker, remote):
    await git.ensure_mirror(worker.url, worker.mirror)
    assert await git.default_branch(worker.mirror) == "main"
    assert await git.list_branches(worker.mirror) == [{"name": "main", "sha": remote.sha("main")}]
    assert run("config", "remote.origin.url", cwd=worker.mirror) == str(remote.path)

    new_sha = remote.commit({"b.txt": "b\n"}, "second")
    await git.fetch(worker.mirror)
    assert await git.list_branches(worker.mirror) == [{"name": "main", "sha": new_sha}]

    newer = remote.commit({"c.txt": "c\n"}, "third")
    await git.ensure_mirror(worker.url, worker.mirror)  # existing mirror: fetch only
    assert await git.list_branches(worker.mirror) == [{"name": "main", "sha": newer}]
    assert run("rev-parse", "--is-bare-repository", cwd=worker.mirror) == "true"


async def test_other_default_branch(tmp_path):
    remote = Remote(tmp_path, branch="trunk")
    worker = Worker(tmp_path / "data", f"file://{remote.path}")
    await git.ensure_mirror(worker.url, worker.mirror)
    assert await git.default_branch(worker.mirror) == "trunk"
    head = await worker.prepare(BRANCH, base="trunk")
    assert head == remote.sha("trunk")
    with pytest.raises(GitError, match="base branch 'main' does not exist"):
        await git.sync(worker.url, worker.mirror, branch="agent/8-x", base_branch="main")


async def test_concurrent_ensure_mirror_calls_share_one_mirror(worker, remote):
    await asyncio.gather(*(git.ensure_mirror(worker.url, worker.mirror) for _ in range(6)))
    run("fsck", "--no-progress", cwd=worker.mirror)
    assert await git.list_branches(worker.mirror) == [{"name": "main", "sha": remote.sha("main")}]
    assert worker.mirror.with_name("1.git.lock").is_file()
    assert not worker.mirror.with_name("1.git.tmp").exists()
    # preparing worktrees and fetching take the lock too; mixing them with ensure_mirror is safe
    remote.commit({"n.txt": "n\n"}, "next")
    await asyncio.gather(
        git.ensure_mirror(worker.url, worker.mirror),
        git.fetch(worker.mirror),
        worker.prepare("agent/1-a", protocol_id=1),
        worker.prepare("agent/2-b", protocol_id=2),
    )
    assert run("rev-parse", "HEAD", cwd=worker.worktree(2)) == remote.sha("main")


async def test_a_job_fetches_its_branch_and_base_only_and_forgets_a_deleted_branch(worker, remote):
    remote.commit({"o.txt": "o\n"}, "other")
    run("push", "-q", str(remote.path), "HEAD:refs/heads/unrelated", cwd=remote.seed)
    head = await worker.prepare(BRANCH)  # the mirror is made by the job's own fetch
    assert head == remote.sha("main")
    assert await git.list_branches(worker.mirror) == [{"name": "main", "sha": head}]
    await worker.publish("work", BRANCH)
    run("push", "-q", str(remote.path), f"HEAD:refs/heads/{BRANCH}-later", cwd=remote.seed)
    await worker.prepare(BRANCH)
    names = {branch["name"] for branch in await git.list_branches(worker.mirror)}
    assert names == {"main", BRANCH, f"{BRANCH}-later"}  # the pattern may take a longer name along
    run("push", "-q", str(remote.path), f":refs/heads/{BRANCH}", cwd=remote.seed)
    assert await worker.prepare(BRANCH) == remote.sha("main")  # deleted upstream: starts over from main
    assert BRANCH not in {branch["name"] for branch in await git.list_branches(worker.mirror)}


REF_NAMES = ["refs/heads/main", "refs/heads/agent/12-x", "refs/heads/a.b", "refs/heads/a..b", "refs/heads/.a",
             "refs/heads/a/.b", "refs/heads/a.lock", "refs/heads/a.lock/b", "refs/heads/a/", "refs/heads/a.",
             "refs/heads/a b", "refs/heads/a~1", "refs/heads/a^", "refs/heads/a:b", "refs/heads/a?", "refs/heads/a*",
             "refs/heads/a[b", "refs/heads/a\\b", "refs/heads/a@{1}", "refs/heads/a@b", "refs/heads/@",
             "refs/heads//a", "refs/heads/a\x01", "refs/heads/a\x7f", "refs/heads/é", "refs/heads/-a",
             "refs/heads/a-", "refs/agentry/pull/1/head", "refs/heads/a\tb", "refs/heads/a/b.lockx"]


@pytest.mark.parametrize("ref", REF_NAMES)
def test_ref_names_are_judged_as_git_judges_them(ref, tmp_path):
    verdict = subprocess.run(["git", "check-ref-format", ref], cwd=tmp_path, capture_output=True)
    assert (git.ref_problem(ref) is None) == (verdict.returncode == 0)


async def test_a_worktree_this_worker_exported_is_reused_untouched_until_something_runs_in_it(
        worker, remote, monkeypatch):
    runs = []
    real = worktree._git_in_sandbox

    async def counted(sandbox, path, argv, **options):
        runs.append(argv[3])  # the script's name: prepare, export, diff
        return await real(sandbox, path, argv, **options)

    monkeypatch.setattr(worktree, "_git_in_sandbox", counted)
    await worker.prepare(BRANCH)
    (worker.worktree() / "a.txt").write_text("a\n")
    await worker.publish("first", BRANCH)
    assert await worker.prepare(BRANCH) == remote.sha(BRANCH)
    assert runs == ["prepare", "export"]  # the exported worktree was taken as it was

    (worker.worktree() / "stray.txt").write_text("left by an agent that then died\n")
    worktree.take_exported_mark(worker.worktree())  # what runs an agent does first
    assert await worker.prepare(BRANCH) == remote.sha(BRANCH)
    assert runs[-1] == "prepare" and not (worker.worktree() / "stray.txt").exists()


async def test_half_made_mirror_is_replaced(worker, remote):
    worker.mirror.mkdir(parents=True)
    (worker.mirror / "junk").write_text("crash leftovers")
    await git.ensure_mirror(worker.url, worker.mirror)
    assert await git.default_branch(worker.mirror) == "main"


# --- worktrees, commits, pushes -------------------------------------------------------------


async def test_prepare_commit_push_lands_on_remote(worker, remote):
    head = await worker.prepare(BRANCH)
    wt = worker.worktree()
    assert head == remote.sha("main")
    assert run("symbolic-ref", "--short", "HEAD", cwd=wt) == BRANCH
    assert (wt / ".git").is_dir()  # a repository of its own, not a linked worktree of the mirror

    nothing = await worker.publish("nothing yet", BRANCH)
    assert (nothing.committed, nothing.new_commits, nothing.head_sha) == (False, False, head)
    (wt / "feature.py").write_text("print('hi')\n")
    exported = await worker.publish("# Step 1\n\nAdd feature", BRANCH)
    assert exported.committed and exported.new_commits
    assert remote.sha(BRANCH) == exported.head_sha == run("rev-parse", "HEAD", cwd=wt)
    assert remote.log(BRANCH, "%an <%ae>|%cn|%s")[0] == (
        "agentry[bot] <agentry[bot]@users.noreply.github.com>|agentry[bot]|# Step 1"
    )
    assert remote.show(BRANCH, "feature.py") == "print('hi')"
    assert remote.sha("main") != exported.head_sha  # the base branch is untouched

    custom = Identity(name="Helper Bot", email="helper@example.com")
    (wt / "more.txt").write_text("more\n")
    await worker.publish("more", BRANCH, custom)
    assert remote.log(BRANCH, "%an <%ae>")[0] == "Helper Bot <helper@example.com>"


async def test_commits_the_agent_made_itself_are_pushed(worker, remote):
    await worker.prepare(BRANCH)
    wt = worker.worktree()
    (wt / "own.txt").write_text("own\n")
    run("add", "own.txt", cwd=wt)
    run("commit", "-q", "-m", "the agent's own commit", cwd=wt)
    exported = await worker.publish("unused", BRANCH)
    assert not exported.committed and exported.new_commits
    assert remote.log(BRANCH)[0] == "the agent's own commit"


async def test_second_worker_continues_the_branch_from_the_remote(tmp_path, worker, remote):
    other = Worker(tmp_path / "worker-b", worker.url)

    await worker.prepare(BRANCH)
    (worker.worktree() / "one.txt").write_text("1\n")
    first = (await worker.publish("step 1", BRANCH)).head_sha

    assert await other.prepare(BRANCH) == first
    (other.worktree() / "two.txt").write_text("2\n")
    second = (await other.publish("step 2", BRANCH)).head_sha

    # Worker A's worktree is stale and dirty; the remote wins.
    (worker.worktree() / "one.txt").write_text("local edit\n")
    (worker.worktree() / "scratch.txt").write_text("untracked\n")
    run("add", "-A", cwd=worker.worktree())
    run("commit", "-q", "-m", "unpushed", cwd=worker.worktree())
    (worker.worktree() / "dirty.txt").write_text("uncommitted\n")
    assert await worker.prepare(BRANCH) == second
    wt = worker.worktree()
    assert (wt / "two.txt").read_text() == "2\n" and (wt / "one.txt").read_text() == "1\n"
    assert not (wt / "scratch.txt").exists() and not (wt / "dirty.txt").exists()
    assert run("status", "--porcelain", cwd=wt) == ""
    assert remote.log(BRANCH) == ["step 2", "step 1", "initial"]


def _delete_directory(wt: Path) -> None:
    shutil.rmtree(wt)


def _replace_with_junk(wt: Path) -> None:
    shutil.rmtree(wt)
    wt.mkdir()
    (wt / "partial.txt").write_text("half-made")


def _corrupt_objects(wt: Path) -> None:
    shutil.rmtree(wt / ".git" / "objects")


def _make_git_a_file(wt: Path) -> None:
    shutil.rmtree(wt / ".git")
    (wt / ".git").write_text("gitdir: /somewhere/else\n")  # a linked worktree of old, or a trap


def _leave_rebase_in_progress(wt: Path) -> None:
    (wt / ".git" / "rebase-merge").mkdir()


@pytest.mark.parametrize(
    "crash", [_delete_directory, _replace_with_junk, _corrupt_objects, _make_git_a_file, _leave_rebase_in_progress],
)
async def test_prepare_recovers_from_a_crash(worker, remote, crash):
    await worker.prepare(BRANCH)
    crash(worker.worktree())
    assert await worker.prepare(BRANCH) == remote.sha("main")
    wt = worker.worktree()
    assert (wt / "README.md").read_text() == "hello\n"
    assert run("rev-parse", "--show-toplevel", cwd=wt) == str(wt.resolve())
    (wt / "x.txt").write_text("x\n")
    assert (await worker.publish("works", BRANCH)).committed


async def test_half_made_worktree_inside_an_enclosing_repository(tmp_path, remote):
    """The data dir may live inside a checkout; a broken worktree must never act on it."""
    outer = tmp_path / "outer"
    run("init", "-q", "-b", "main", str(outer), cwd=tmp_path)
    (outer / "keep.txt").write_text("outer\n")
    worker = Worker(outer / ".agentry", str(remote.path))
    await worker.prepare(BRANCH)
    shutil.rmtree(worker.worktree() / ".git")
    with pytest.raises(GitError):
        await worker.publish("must not touch the outer repository", BRANCH)
    assert await worker.prepare(BRANCH) == remote.sha("main")
    assert run("ls-files", cwd=outer) == ""  # nothing was ever staged or committed there
    assert run("for-each-ref", cwd=outer) == ""


async def test_remove_worktree_is_idempotent(worker, remote):
    await worker.prepare(BRANCH)
    await git.remove_worktree(worker.mirror, worker.worktree())
    await git.remove_worktree(worker.mirror, worker.worktree())
    assert not worker.worktree().exists()
    await git.remove_worktree(worker.mirror.with_name("absent.git"), worker.worktree())


async def test_prune_forgets_linked_worktrees_of_old(worker, remote):
    await git.ensure_mirror(worker.url, worker.mirror)
    old = worker.data_dir / "old-worktree"
    run("worktree", "add", "-q", "-b", "agent/1-old", str(old), "refs/remotes/origin/main", cwd=worker.mirror)
    shutil.rmtree(old)
    await git.tidy_mirror(worker.mirror)
    assert str(old) not in run("worktree", "list", cwd=worker.mirror)
    assert run("for-each-ref", "refs/heads/", cwd=worker.mirror) == ""


async def test_delete_remote_branch_is_idempotent(worker, remote):
    await worker.prepare(BRANCH)
    await worker.publish("create the branch", BRANCH)
    assert remote.sha(BRANCH)
    await git.delete_remote_branch(worker.mirror, BRANCH)
    await git.delete_remote_branch(worker.mirror, BRANCH)
    assert remote.sha(BRANCH) is None
    assert [b["name"] for b in await git.list_branches(worker.mirror)] == ["main"]


async def test_diverged_push_is_rejected(tmp_path, worker, remote):
    other = Worker(tmp_path / "worker-b", worker.url)
    await worker.prepare(BRANCH)
    await other.prepare(BRANCH)
    (worker.worktree() / "a.txt").write_text("a\n")
    await worker.publish("from A", BRANCH)
    (other.worktree() / "b.txt").write_text("b\n")
    with pytest.raises(GitError, match="rejected"):
        await other.publish("from B", BRANCH)
    assert remote.log(BRANCH)[0] == "from A"


async def test_diff_covers_the_branch_since_it_left_its_base_and_is_capped(worker, remote):
    await worker.prepare(BRANCH)
    wt = worker.worktree()
    (wt / "committed.txt").write_text("committed\n")
    await worker.publish("c", BRANCH)
    remote.commit({"upstream.txt": "later on main\n"}, "main moves on")
    await worker.prepare(BRANCH)
    (wt / "README.md").write_text("hello\nchanged\n")

    patch = await worktree.diff(worker.sandbox, wt, "refs/remotes/origin/main")
    assert "+committed" in patch and "+changed" in patch
    assert "upstream.txt" not in patch  # base...HEAD: what main did since is not ours

    (wt / "big.txt").write_text("".join(f"line {i} of a big file\n" for i in range(20_000)))
    run("add", "big.txt", cwd=wt)
    capped = await worktree.diff(worker.sandbox, wt, "refs/remotes/origin/main", max_bytes=5_000)
    assert len(capped.encode()) <= 5_000
    assert capped.endswith("[diff truncated at 5000 bytes]\n")
    with pytest.raises(GitError, match="cannot compute the diff"):
        await worktree.diff(worker.sandbox, wt, "refs/remotes/origin/no-such-branch")


async def test_hooks_never_run_and_inherited_git_env_is_ignored(
    worker, remote, isolated_git, monkeypatch
):
    hooks = isolated_git / "hooks"
    hooks.mkdir()
    for name in ("pre-commit", "commit-msg", "pre-push", "post-checkout", "reference-transaction"):
        (hooks / name).write_text("#!/bin/sh\nexit 1\n")
        (hooks / name).chmod(0o755)
    (isolated_git / ".gitconfig").write_text(f"[core]\n\thooksPath = {hooks}\n")
    monkeypatch.setenv("GIT_DIR", str(isolated_git / "nowhere"))
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Someone Else")
    await worker.prepare(BRANCH)
    (worker.worktree() / "h.txt").write_text("h\n")
    exported = await worker.publish("no hooks", BRANCH)
    assert remote.sha(BRANCH) == exported.head_sha
    assert remote.log(BRANCH, "%an")[0] == "agentry[bot]"


async def test_bad_names_and_urls_are_rejected(worker, remote):
    with pytest.raises(GitError, match="invalid repository URL"):
        await git.ensure_mirror("--upload-pack=touch pwned", worker.mirror)
    await worker.prepare(BRANCH)
    sha = remote.sha("main")
    for bad in ("--force", "agent/../x", "agent/x.lock", "a b", ""):
        with pytest.raises(GitError, match="invalid branch name"):
            await git.push_commit(worker.mirror, worker.url, sha, bad)
    with pytest.raises(GitError, match="not a commit id"):
        await git.push_commit(worker.mirror, worker.url, "--all", BRANCH)
    with pytest.raises(GitError, match="would contain the mirror"):
        await git.remove_worktree(worker.mirror, worker.data_dir)
    assert await git.list_branches(worker.mirror)  # nothing was deleted


# --- tokens over smart HTTP -----------------------------------------------------------------


@dataclass
class HttpForge:
    """git http-backend as CGI behind aiohttp; every request must carry Basic auth
    x-access-token:<TOKEN>, else 401 asks git for credentials."""

    root: Path
    token: str = TOKEN
    requests: list[str] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(str(request.rel_url))
        self.authorizations.append(request.headers.get("Authorization"))
        expected = "Basic " + base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="forge"'})
        return await self.cgi(request, await request.read())

    async def cgi(self, request: web.Request, body: bytes) -> web.Response:
        env = {
            "PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1", "REMOTE_USER": "x-access-token", "REMOTE_ADDR": "127.0.0.1",
            "PATH_INFO": request.path, "QUERY_STRING": request.query_string,
            "REQUEST_METHOD": request.method, "CONTENT_LENGTH": str(len(body)),
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
        }
        proc = await asyncio.create_subprocess_exec(
            "git", "http-backend", env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await proc.communicate(body)
        head, _, payload = out.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if line)
        status = int(headers.pop("Status", "200").split()[0])
        return web.Response(status=status, body=payload, headers=headers)


@pytest.fixture
async def forge(remote):
    forge = HttpForge(remote.path.parent)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forge.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    forge.url = f"http://127.0.0.1:{port}/remote.git"
    yield forge
    await runner.cleanup()


async def test_push_with_token_over_http(tmp_path, remote, forge, isolated_git, monkeypatch):
    # An inherited helper that would answer with the wrong password must be reset.
    (isolated_git / ".gitconfig").write_text(
        '[credential]\n\thelper = "!f() { echo username=evil; echo password=wrong; }; f"\n'
    )
    trace = tmp_path / "trace.log"
    monkeypatch.setenv("GIT_TRACE", str(trace))
    worker = Worker(tmp_path / "data", forge.url, token=TOKEN)

    await worker.prepare(BRANCH)
    (worker.worktree() / "f.txt").write_text("over http\n")
    sha = (await worker.publish("via http", BRANCH)).head_sha
    assert remote.sha(BRANCH) == sha
    await git.delete_remote_branch(worker.mirror, BRANCH, token=TOKEN)
    assert remote.sha(BRANCH) is None

    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert f"Basic {basic}" in forge.authorizations
    assert None in forge.authorizations  # git asked first, then the helper answered
    assert not any(TOKEN in path for path in forge.requests)
    assert TOKEN not in (worker.mirror / "config").read_text()
    traced = trace.read_text()
    assert "git push" in traced and "password=$AGENTRY_GIT_TOKEN" in traced  # the helper ran
    assert "password=wrong" not in traced  # the inherited helper never did
    assert TOKEN not in traced and basic not in traced  # no token in any argv


async def test_wrong_or_missing_token_fails_fast_with_a_scrubbed_error(tmp_path, forge):
    worker = Worker(tmp_path / "data", forge.url, token="ghs_WrongToken999")
    with pytest.raises(GitError) as caught:
        await git.ensure_mirror(forge.url, worker.mirror, token=worker.token)
    assert "Authentication failed" in str(caught.value) or "401" in str(caught.value)
    assert "ghs_WrongToken999" not in str(caught.value) + caught.value.stderr
    with pytest.raises(GitError):  # no token: no prompt, no hang
        await git.ensure_mirror(forge.url, worker.mirror)


async def test_credentials_in_the_url_are_stripped(tmp_path, forge):
    mirror = tmp_path / "data" / "m.git"
    with_userinfo = forge.url.replace("http://", "http://x-access-token:ghs_LeakedInUrl@")
    await git.ensure_mirror(with_userinfo, mirror, token=TOKEN)
    assert run("config", "remote.origin.url", cwd=mirror) == forge.url
    assert "ghs_LeakedInUrl" not in (mirror / "config").read_text()
    assert not any("ghs_LeakedInUrl" in (a or "") for a in forge.authorizations)


def test_git_error_messages_are_scrubbed():
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    stderr = (
        f"fatal: unable to access 'https://x-access-token:{TOKEN}@github.com/o/r.git/'\n"
        f"Authorization: Basic {basic}\npassword={TOKEN}\n"
    )
    error = git._failure(("fetch", "https://user:pw@example.com/r"), 128, stderr, TOKEN)
    text = str(error) + error.stderr
    assert TOKEN not in text and basic not in text and "pw@" not in text
    assert "git fetch https://***@example.com/r failed (exit 128)" in str(error)
    assert "https://***@github.com/o/r.git/" in str(error)


async def test_timeout_kills_a_hanging_git(tmp_path, monkeypatch):
    async def hang(reader, writer):
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setattr(git, "NETWORK_TIMEOUT", 0.5)
    with pytest.raises(GitError, match="timed out after 0.5s"):
        await git.ensure_mirror(f"http://127.0.0.1:{port}/r.git", tmp_path / "m.git", token=TOKEN)
    server.close()
    await server.wait_closed()


async def test_tags_follow_the_remote_even_when_moved(worker, remote):
    run("tag", "v1", cwd=remote.seed)
    run("push", "-q", str(remote.path), "refs/tags/v1", cwd=remote.seed)
    await git.ensure_mirror(worker.url, worker.mirror)
    remote.commit({"t.txt": "t\n"}, "after v1")
    run("tag", "-f", "v1", cwd=remote.seed)
    run("push", "-q", "--force", str(remote.path), "refs/tags/v1", cwd=remote.seed)
    await git.fetch(worker.mirror)
    assert run("rev-parse", "v1", cwd=worker.mirror) == remote.sha("main")
