"""What the flow tests share: a bare git remote and an agent script for the `command` engine."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.config import Settings
from bot.deps import open_deps
from bot.models import QueuedJob
from tests.conftest import load_payload
from tests.fakes.github_server import FakeGitHub

AGENT = r'''
import json, os, signal, sys
from pathlib import Path

prompt = sys.stdin.read()
kind = os.environ["AGENTRY_STEP_KIND"]
state = Path(STATE_DIR)
if kind == "plan" and "FAIL THE FIRST PLAN" in prompt and not (state / "plan-failed-once").exists():
    (state / "plan-failed-once").write_text("x")
    print("I could not make a plan.")
elif kind == "plan":
    print("Here is the plan:")
    print("```json")
    print(json.dumps({"summary": "Add a greeting to the project", "steps": [
        {"name": "Write greeting", "prompt": "Create GREETING.md saying hello", "qa": "full"},
        {"name": "Link it", "prompt": "Mention GREETING.md in the README", "qa": "light"},
    ]}))
    print("```")
elif kind == "execute":
    if "Create GREETING.md" in prompt:
        Path("GREETING.md").write_text("Hello from the agent!\n")
        print("Wrote GREETING.md")
    else:
        marker = state / "killed-once"
        if os.environ.get("KILL_ONCE_MARKER_IGNORED") is None and KILL_ONCE and not marker.exists():
            marker.write_text("x")
            os.kill(os.getpid(), signal.SIGKILL)
        with open("README.md", "a") as readme:
            readme.write("\nSee GREETING.md.\n")
        print("Linked the greeting from the README")
elif kind == "qa":
    print("The change does what the step asks.")
    print("VERDICT: PASS")
'''


def git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def agent_script(tmp_path: Path, *, kill_once: bool = False) -> Path:
    state = tmp_path / "agent-state"
    state.mkdir(exist_ok=True)
    script = tmp_path / "agent.py"
    script.write_text(AGENT.replace("STATE_DIR", repr(str(state))).replace("KILL_ONCE", repr(kill_once)))
    return script


@pytest.fixture
def remote(tmp_path) -> Path:
    """A bare git repository with one commit on main, standing in for the forge's remote."""
    seed, bare = tmp_path / "seed", tmp_path / "remote.git"
    seed.mkdir()
    git("init", "-q", "-b", "main", cwd=seed)
    (seed / "README.md").write_text("# Hello-World\n")
    git("add", ".", cwd=seed)
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "initial", cwd=seed)
    git("clone", "-q", "--bare", str(seed), str(bare))
    return bare


# Fixtures of the GitHub flows (registered for every test module in conftest.py)

REPO = "Codertocat/Hello-World"
INSTALLATION = 1

@pytest.fixture
async def github():
    async with FakeGitHub(repos={REPO: INSTALLATION}, permissions={"Codertocat": "write", "reader": "read", "maintainer": "admin"}) as fake:
        yield fake


async def flow_deps(settings_env: dict, github: FakeGitHub, script: Path):
    settings = Settings.from_env({
        **settings_env,
        "AGENTRY_GITHUB_APP_ID": github.app_id,
        "AGENTRY_GITHUB_PRIVATE_KEY": github.private_key_pem,
        "AGENTRY_GITHUB_API_URL": github.url,
        "AGENTRY_GITHUB_APP_SLUG": github.app_slug,
        "AGENTRY_DEFAULT_ENGINE": "command",
        "AGENTRY_ENGINE_COMMAND": f"{sys.executable} {script}",
    })
    return await open_deps(settings)


def comment_payload(github: FakeGitHub, remote: Path, body: str, *, user: str = "Codertocat") -> dict:
    """A real issue_comment payload for a comment the fake GitHub knows about."""
    payload = copy.deepcopy(load_payload("issue_comment", "created.with-installation.payload.json"))
    payload["repository"].update(clone_url=str(remote), default_branch="main")
    payload["comment"]["body"] = body
    payload["comment"]["id"] = github.add_comment(REPO, 1, body, user=user)
    payload["comment"]["user"]["login"] = user
    return payload


@pytest.fixture
async def flow(aiohttp_client, settings_env, github, remote, tmp_path, request):
    from handlers.web import make_app

    kill_once = getattr(request, "param", False)
    deps = await flow_deps(settings_env, github, agent_script(tmp_path, kill_once=kill_once))
    client = await aiohttp_client(make_app(deps))
    yield deps, client
    await deps.close()


async def queued_jobs(deps, functions) -> list[QueuedJob]:
    async with deps.sessions() as session:
        return list((await session.exec(select(QueuedJob).where(
            QueuedJob.status == "queued", col(QueuedJob.function).in_(functions)).order_by(
                col(QueuedJob.enqueued_at)))).all())


async def run_queued(deps, functions, *, first_only: bool = False) -> list[QueuedJob]:
    """Runs the queued jobs of `functions` (or the oldest of them) and returns them as they ended."""
    from jobs.worker import JOB_FUNCTIONS

    functions_by_name = {function.__name__: function for function in JOB_FUNCTIONS}
    queued = await queued_jobs(deps, functions)
    queued = queued[:1] if first_only else queued
    for job in queued:
        await functions_by_name[job.function]({"deps": deps, "job_id": job.job_id}, *job.args)
    async with deps.sessions() as session:
        return [await session.get(QueuedJob, job.job_id, populate_existing=True) for job in queued]


def api_calls(github: FakeGitHub) -> list[str]:
    return [line for line in github.lines() if "/access_tokens" not in line]
