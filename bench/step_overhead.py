"""Orchestration overhead per step on a repository of 10,000 files.

Runs a protocol of N steps (QA skipped) with a `command`-engine agent that edits one file, on a
real git remote, with the embedded queue and SQLite. Overhead per step = the step's wall time
(claim to settled: worktree fetch, commit, push, bookkeeping) minus the agent's own run time.

    python bench/step_overhead.py [--files 10000] [--steps 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlmodel import select  # noqa: E402

from bot import db  # noqa: E402
from bot.config import Settings  # noqa: E402
from bot.deps import open_deps  # noqa: E402
from bot.models import CodexRun, Event, Project, ProtocolRun, StepRun  # noqa: E402
from bot.protocols import apply_protocol_action, create_protocol, set_protocol_status  # noqa: E402
from bot.workflow import ProtocolAction  # noqa: E402
from jobs.worker import embedded_worker  # noqa: E402

AGENT = """import sys, os, pathlib
sys.stdin.read()
path = pathlib.Path("touched.txt")
path.write_text(path.read_text() + "x\\n" if path.exists() else "x\\n")
print("edited touched.txt")
"""


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def make_remote(base: Path, files: int) -> Path:
    seed, bare = base / "seed", base / "remote.git"
    seed.mkdir()
    git("init", "-q", "-b", "main", cwd=seed)
    for number in range(files):
        directory = seed / f"pkg{number // 500:03d}"
        directory.mkdir(exist_ok=True)
        (directory / f"module_{number:05d}.py").write_text(f"VALUE = {number}\n")
    git("add", ".", cwd=seed)
    git("-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-qm", "seed", cwd=seed)
    git("clone", "-q", "--bare", str(seed), str(bare), cwd=base)
    return bare


async def run(args) -> None:
    base = Path(tempfile.mkdtemp(prefix="agentry-bench-steps-"))
    started = time.perf_counter()
    remote = make_remote(base, args.files)
    seeded = time.perf_counter() - started
    agent = base / "agent.py"
    agent.write_text(AGENT)
    settings = Settings.from_env({
        **os.environ,
        "AGENTRY_DATA_DIR": str(base / "data"), "AGENTRY_WEBHOOK_SECRET": "x", "AGENTRY_LOG_LEVEL": "warning",
        "AGENTRY_DEFAULT_ENGINE": "command", "AGENTRY_ENGINE_COMMAND": f"{sys.executable} {agent}",
        "AGENTRY_ALLOWED_PATHS": str(base),  # the remote is a local bare repository
    })
    await db.upgrade_in_thread(settings.database_url)
    deps = await open_deps(settings)
    try:
        protocol_id = await setup_protocol(deps, remote, args.steps)
        begun = time.perf_counter()
        await embedded_worker(deps, burst=True).main()
        total = time.perf_counter() - begun
        await report(deps, protocol_id, args, seeded, total)
    finally:
        await deps.close()


async def setup_protocol(deps, remote: Path, steps: int) -> int:
    async with deps.sessions() as session:
        project = Project(name="bench", git_url=str(remote), base_branch="main")
        session.add(project)
        await session.flush()
        protocol = await create_protocol(session, project, title="bench steps", kind="run")
        for index in range(steps):
            session.add(StepRun(protocol_run_id=protocol.id, step_index=index, step_name=f"step {index + 1}",
                                prompt="edit touched.txt", qa_policy="skip"))
        await set_protocol_status(session, protocol, ProtocolAction.START, actor="bench")
        await set_protocol_status(session, protocol, ProtocolAction.PLAN_SUCCEEDED, actor="bench", message="steps given")
        jobs = await apply_protocol_action(session, protocol, ProtocolAction.START, actor="bench")
        await session.commit()
    await deps.submit(jobs)
    return protocol.id


async def report(deps, protocol_id: int, args, seeded: float, total: float) -> None:
    async with deps.sessions() as session:
        steps = (await session.exec(select(StepRun).where(StepRun.protocol_run_id == protocol_id)
                                    .order_by(StepRun.step_index))).all()
        runs = {run.step_run_id: run for run in (await session.exec(select(CodexRun))).all()}
        events = (await session.exec(select(Event).where(Event.protocol_run_id == protocol_id))).all()
        protocol = await session.get(ProtocolRun, protocol_id)
    started = {event.step_run_id: event.created_at for event in events if event.event_type == "step_started"}
    settled = {event.step_run_id: event.created_at for event in events if event.event_type == "step_qa_pass"}
    overheads, agents = [], []
    for step in steps:
        run = runs[step.id]
        agent = run.result.get("duration_seconds", 0.0)
        wall = (settled[step.id] - started[step.id]).total_seconds()
        agents.append(agent)
        overheads.append(wall - agent)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"git {subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.split()[-1]}")
    print(f"repository: {args.files} files (seeded in {seeded:.1f}s); protocol {protocol.status}, "
          f"{sum(step.status == 'completed' for step in steps)}/{len(steps)} steps completed in {total:.1f}s")
    print(f"agent time per step: median {statistics.median(agents) * 1000:.0f} ms")
    print(f"orchestration overhead per step (worktree fetch, commit, push, bookkeeping): "
          f"median {statistics.median(overheads) * 1000:.0f} ms, max {max(overheads) * 1000:.0f} ms "
          f"(first step, which clones the mirror and makes the worktree: {overheads[0] * 1000:.0f} ms)")
    print(json.dumps({"overhead_ms": [round(value * 1000) for value in overheads]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=10)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
