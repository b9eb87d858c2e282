"""Agents for the engine-behaviour flows, and the flow around them.

Each agent is a small Python program the test writes: for the `command` engine (prompt on stdin,
AGENTRY_STEP_KIND in the environment) or a stand-in `claude` executable that prints the CLI's real
stream-json (recorded in tests/fixtures/agent-cli-output) with the test's answer in it. Every call
is logged (kind, prompt, argv) to a file the test reads back. The agent environment keeps only
allowlisted variables, so state paths are baked into the program text.
"""

from __future__ import annotations

import asyncio
import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlmodel import col, select

from bot.config import Settings
from bot.deps import open_deps

from bot.models import Clarification, CodexRun, Event, ProtocolRun, StepRun
from tests.conftest import FIXTURES, load_payload, post_webhook, process_env, run_jobs
from tests.fakes.github_server import FakeGitHub
from tests.flow_support import git

REPO = "Codertocat/Hello-World"
INSTALLATION = 1

PRELUDE = r'''
import json, os, sys, time
from pathlib import Path

state = Path(STATE_DIR)


def bump(name):
    """This call's number (from 1) among the calls counted under `name`."""
    path = state / f"{name}.count"
    number = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(number))
    return number


def wait_for(name, seconds=20):
    """Blocks until the test creates the file `name` in the state directory."""
    deadline = time.monotonic() + seconds
    while not (state / name).exists():
        if time.monotonic() > deadline:
            sys.exit(f"gave up waiting for {name}")
        time.sleep(0.02)


def plan(steps, **extra):
    print(json.dumps({"summary": "Planned by the test agent", "steps": steps, **extra}))
'''

COMMAND_AGENT = PRELUDE + r'''
prompt = sys.stdin.read()
kind = os.environ["AGENTRY_STEP_KIND"]
with open(state / "calls.jsonl", "a") as log:
    log.write(json.dumps({"kind": kind, "prompt": prompt, "step_id": os.environ.get("AGENTRY_STEP_ID")}) + "\n")
'''

CLAUDE_AGENT = PRELUDE + r'''
argv = sys.argv[1:]
prompt = argv[argv.index("-p") + 1]
MARKERS = {"plan": "You are planning work", "qa": "You are reviewing one step", "ask": "You are answering a question",
           "execute": "carrying out one step", "ralph": "in repeated iterations"}
kind = next((name for name, marker in MARKERS.items() if marker in prompt), "unknown")
with open(state / "calls.jsonl", "a") as log:
    log.write(json.dumps({"kind": kind, "prompt": prompt, "argv": argv}) + "\n")
RECORDED = RECORDED_LINES


def reply(text, session_id=None):
    """Prints the recorded claude stream, its answer replaced by `text` (usage and cost as recorded)."""
    for line in RECORDED:
        event = json.loads(line)
        if session_id:
            event["session_id"] = session_id
        if event["type"] == "result":
            event["result"] = text
        if event["type"] == "assistant":
            event["message"]["content"] = [{"type": "text", "text": text}]
        print(json.dumps(event), flush=True)
'''

CLAUDE_FIXTURE = FIXTURES / "agent-cli-output" / "claude.stdout.jsonl"
CLAUDE_SESSION_ID = json.loads(CLAUDE_FIXTURE.read_text().splitlines()[0])["session_id"]
CLAUDE_TOKENS = 250  # usage of the recorded result: 200 input + 50 output


def _program(tmp_path: Path, name: str, text: str, body: str) -> Path:
    state = tmp_path / "agent-state"
    state.mkdir(exist_ok=True)
    script = tmp_path / name
    script.write_text(text.replace("STATE_DIR", repr(str(state))) + "\n" + body.strip("\n") + "\n")
    return script


def command_agent(tmp_path: Path, body: str) -> Path:
    """An agent for the `command` engine: `body` runs with prompt, kind, state, bump, wait_for, plan."""
    return _program(tmp_path, "agent.py", COMMAND_AGENT, body)


def claude_agent(tmp_path: Path, body: str) -> Path:
    """A stand-in `claude` executable: `body` runs with prompt, argv, kind (guessed from the prompt),
    state, bump, wait_for, and reply(text, session_id) to print the recorded stream-json."""
    lines = [line for line in CLAUDE_FIXTURE.read_text().splitlines() if line.strip()]
    script = _program(tmp_path, "claude", CLAUDE_AGENT.replace("RECORDED_LINES", repr(lines)), body)
    script.write_text(f"#!{sys.executable}\n" + script.read_text())
    script.chmod(0o755)
    return script


def agent_calls(tmp_path: Path, kind: str | None = None) -> list[dict]:
    log = tmp_path / "agent-state" / "calls.jsonl"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [call for call in calls if kind is None or call["kind"] == kind]


def signal_agent(tmp_path: Path, name: str) -> None:
    (tmp_path / "agent-state" / name).write_text("go")


async def wait_for_file(path: Path, seconds: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not path.exists():
        assert asyncio.get_running_loop().time() < deadline, f"{path.name} never appeared"
        await asyncio.sleep(0.02)


@dataclass
class Flow:
    """One service on a fake GitHub and a bare remote, driven through signed webhooks."""

    deps: object
    client: object
    github: FakeGitHub
    remote: Path

    def repository(self) -> dict:
        payload = load_payload("issue_comment", "created.with-installation.payload.json")
        repository = copy.deepcopy(payload["repository"])
        repository.update(clone_url=str(self.remote), default_branch="main")
        return repository

    def comment_payload(self, body: str, *, user: str = "Codertocat") -> dict:
        payload = copy.deepcopy(load_payload("issue_comment", "created.with-installation.payload.json"))
        payload["repository"] = self.repository()
        payload["comment"]["body"] = body
        payload["comment"]["id"] = self.github.add_comment(REPO, 1, body, user=user)
        payload["comment"]["user"]["login"] = user
        return payload

    async def post_comment(self, body: str, *, user: str = "Codertocat") -> None:
        response = await post_webhook(self.client, "issue_comment", self.comment_payload(body, user=user))
        assert response.status == 202

    async def comment(self, body: str, *, user: str = "Codertocat") -> None:
        """Posts a comment and runs every job it leads to."""
        await self.post_comment(body, user=user)
        await run_jobs(self.deps)

    async def check_suite(self, protocol: ProtocolRun, conclusion: str) -> None:
        payload = copy.deepcopy(load_payload("check_suite", "completed.payload.json"))
        payload["repository"] = self.repository()
        payload["installation"] = {"id": INSTALLATION}
        payload["check_suite"].update(head_branch=protocol.branch, head_sha=protocol.head_sha, conclusion=conclusion,
                                      pull_requests=[])
        response = await post_webhook(self.client, "check_suite", payload)
        assert response.status == 202
        await run_jobs(self.deps)

    async def protocols(self) -> list[ProtocolRun]:
        async with self.deps.sessions() as session:
            return list((await session.exec(select(ProtocolRun).order_by(col(ProtocolRun.id)))).all())

    async def protocol(self) -> ProtocolRun:
        [protocol] = await self.protocols()
        return protocol

    async def wait_for_status(self, status: str, seconds: float = 10) -> None:
        """Waits until a worker running elsewhere in this loop moves the protocol to `status`."""
        deadline = asyncio.get_running_loop().time() + seconds
        while (await self.protocol()).status != status:
            assert asyncio.get_running_loop().time() < deadline, f"the protocol never became {status}"
            await asyncio.sleep(0.02)

    async def runs(self) -> list[CodexRun]:
        async with self.deps.sessions() as session:
            return list((await session.exec(select(CodexRun).order_by(col(CodexRun.created_at)))).all())

    async def steps(self) -> list[StepRun]:
        async with self.deps.sessions() as session:
            statement = select(StepRun).order_by(col(StepRun.protocol_run_id), col(StepRun.step_index))
            return list((await session.exec(statement)).all())

    async def events(self, kind: str) -> list[Event]:
        async with self.deps.sessions() as session:
            return list((await session.exec(select(Event).where(Event.event_type == kind))).all())

    async def clarifications(self) -> list[Clarification]:
        async with self.deps.sessions() as session:
            return list((await session.exec(select(Clarification))).all())

    def status_comment(self, protocol: ProtocolRun) -> str:
        return self.github.comments[protocol.status_comment_id]["body"]

    def branch_log(self, branch: str) -> list[str]:
        return git("--git-dir", str(self.remote), "log", "--format=%s", f"main..{branch}").splitlines()

    def show(self, branch: str, path: str) -> str:
        return git("--git-dir", str(self.remote), "show", f"{branch}:{path}")

    def pulls(self) -> list[dict]:
        return list(self.github.pulls.values())


# Fixtures (registered for every test module in conftest.py)


@pytest.fixture
async def start(aiohttp_client, settings_env, github, remote):
    """start(**env) -> Flow: the service with the given settings on the fake GitHub and the remote."""
    from handlers.web import make_app

    opened = []

    async def start(**env: str) -> Flow:
        settings = Settings.from_env({
            **settings_env,
            **process_env(),  # as it is now: a test may have set a provider's variables since
            "AGENTRY_GITHUB_APP_ID": github.app_id,
            "AGENTRY_GITHUB_PRIVATE_KEY": github.private_key_pem,
            "AGENTRY_GITHUB_API_URL": github.url,
            "AGENTRY_GITHUB_APP_SLUG": github.app_slug,
            "AGENTRY_DEFAULT_ENGINE": "command",
            **env,
        })
        deps = await open_deps(settings)
        opened.append(deps)
        return Flow(deps, await aiohttp_client(make_app(deps)), github, remote)

    yield start
    for deps in opened:
        await deps.close()
