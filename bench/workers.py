"""Protocols through separate worker processes: throughput with 1, 2 and 3 workers, the cost of
orchestration per step, and how fast a killed worker's steps run again elsewhere.

For each worker count: a Redis on loopback, one `python -m bot serve`, N `python -m bot worker`,
and P three-step protocols (QA skipped) started through the REST API, each on its own bare git
remote, with a `command`-engine agent that edits one file and records its own CPU time. The
projects are created and set up (their mirrors cloned) before the clock starts. Prints:

* wall time from the first start to the last protocol completed, and steps/s;
* CPU seconds per step outside the agent: the web and worker processes and every git they ran,
  less what the agents used (progress is read from the database, so watching costs nothing);
* agent invocations per step (1 unless a step ran twice);
* with 2 and 3 workers, a second pass that kills one worker (kill -9) while it runs steps: the
  time from the kill until each of its steps runs again on another worker (the worst is shown).

    python bench/workers.py [--protocols 60] [--workers 1,2,3] [--database-url postgresql+asyncpg://…]

Without --database-url the processes share a SQLite file; with it (a server where the user may create
databases) each pass gets a new database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import wait_healthy  # noqa: E402

AGENT = r'''
import json, os, pathlib, sys, time
log = pathlib.Path(LOG)
started = time.time()
sys.stdin.read()
kind, step = os.environ["AGENTRY_STEP_KIND"], os.environ.get("AGENTRY_STEP_ID", "")
if kind == "plan":
    steps = [{"name": f"Edit {n}", "prompt": f"Append to file {n}", "qa": "skip"} for n in (1, 2, 3)]
    print(json.dumps({"summary": "Three edits", "steps": steps}))
else:
    time.sleep(PAUSE)
    path = pathlib.Path(f"file-{step}.txt")
    path.write_text("x\n")
    print("edited")
times = os.times()
with open(log / f"{os.getpid()}-{time.time_ns()}.json", "w") as out:
    json.dump({"kind": kind, "step": step, "cpu": times.user + times.system, "started": started}, out)
'''


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_remote(base: Path, name: str) -> Path:
    seed, bare = base / f"seed-{name}", base / f"{name}.git"
    seed.mkdir()
    run = lambda *argv, cwd=seed: subprocess.run(["git", *argv], cwd=cwd, check=True, capture_output=True)  # noqa: E731
    run("init", "-q", "-b", "main")
    (seed / "README.md").write_text("bench\n")
    run("add", ".")
    run("-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-qm", "seed")
    run("clone", "-q", "--bare", str(seed), str(bare), cwd=base)
    run("config", "receive.autogc", "false", cwd=bare)  # the forge's own upkeep is not agentry's CPU
    return bare


def cpu_seconds(pid: int) -> float:
    """User + system time of a process and its reaped children (git, bubblewrap, agents)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


class Cluster:
    def __init__(self, base: Path, workers: int, database_url: str | None, pause: float) -> None:
        self.base, self.workers, self.pause = base, workers, pause
        self.log = base / "agent-log"
        self.log.mkdir()
        agent = base / "agent.py"
        agent.write_text(AGENT.replace("LOG", repr(str(self.log))).replace("PAUSE", repr(pause)))
        self.redis_port, self.web_port = free_port(), free_port()
        self.env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTRY_")}
        self.env.update(
            AGENTRY_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0", AGENTRY_PORT=str(self.web_port),
            AGENTRY_DATA_DIR=str(base / "data"), AGENTRY_WEBHOOK_SECRET="bench", AGENTRY_LOG_LEVEL="WARNING",
            AGENTRY_DEFAULT_ENGINE="command", AGENTRY_ENGINE_COMMAND=f"{sys.executable} {agent}",
            AGENTRY_ALLOWED_PATHS=str(base), AGENTRY_SANDBOX_WRITE_PATHS=str(self.log),
            AGENTRY_SANDBOX_READ_PATHS=str(agent), AGENTRY_MAX_CONCURRENT_JOBS="2")
        if database_url:
            self.env["AGENTRY_DATABASE_URL"] = database_url
        self.database_url = database_url
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        redis = shutil.which("redis-server") or sys.exit("redis-server is not installed")
        self._spawn("redis", [redis, "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "",
                              "--appendonly", "no"])
        if self.database_url:  # the Procfile's release step
            subprocess.run([sys.executable, "-m", "bot", "migrate"], cwd=ROOT, env=self.env, check=True,
                           capture_output=True)
        self._spawn("web", [sys.executable, "-m", "bot", "serve"])

    def start_workers(self) -> None:
        for number in range(self.workers):
            self._spawn(f"worker-{number}", [sys.executable, "-m", "bot", "worker"])

    def _spawn(self, name: str, argv: list[str]) -> None:
        self.processes[name] = subprocess.Popen(argv, cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL, start_new_session=True)

    def agentry_cpu(self) -> float:
        return sum(cpu_seconds(process.pid) for name, process in self.processes.items()
                   if name != "redis" and process.poll() is None)

    def agent_records(self) -> list[dict]:
        return [json.loads(path.read_text()) for path in self.log.glob("*.json")]

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def query(self, sql: str) -> list[tuple]:
        if self.database_url:
            import asyncpg

            async def fetch() -> list[tuple]:
                url = self.database_url.replace("postgresql+asyncpg://", "postgresql://")
                connection = await asyncpg.connect(url)
                try:
                    return [tuple(row) for row in await connection.fetch(sql)]
                finally:
                    await connection.close()

            return asyncio.run(fetch())  # called in a thread of its own
        with contextlib.closing(sqlite3.connect(self.base / "data" / "agentry.db", timeout=30)) as connection:
            return connection.execute(sql).fetchall()


async def create_protocols(http: aiohttp.ClientSession, base: str, remotes: list[Path]) -> list[int]:
    """A project per remote (its one-time setup clones the mirror) and a protocol in each."""
    ids = []
    for number, remote in enumerate(remotes):
        async with http.post(f"{base}/projects", json={"name": f"bench-{number}", "git_url": str(remote)}) as response:
            project = await response.json()
        async with http.post(f"{base}/projects/{project['id']}/protocols",
                             json={"protocol_name": f"bench-{number}", "base_branch": "main"}) as response:
            protocol = await response.json()
        ids.append(protocol["id"])
    return ids


async def start_protocols(http: aiohttp.ClientSession, base: str, ids: list[int]) -> None:
    for protocol_id in ids:
        async with http.post(f"{base}/protocols/{protocol_id}/actions/start") as response:
            assert response.status == 200, await response.text()


async def projects_ready(cluster: Cluster, count: int) -> None:
    while (await asyncio.to_thread(cluster.query, "select count(*) from projects where status = 'ready'"))[0][0] < count:
        await asyncio.sleep(0.2)


async def statuses(cluster: Cluster) -> dict[int, str]:
    """Read from the database, so that watching costs the web process nothing."""
    rows = await asyncio.to_thread(cluster.query, "select id, status from protocol_runs")
    return {int(protocol_id): str(status).lower().rpartition(".")[2] for protocol_id, status in rows}


async def fresh_database(server_url: str) -> str:
    """A new, empty database on the server of `server_url`, for one pass."""
    import asyncpg

    name = f"agentry_bench_{os.getpid()}_{time.time_ns()}"
    connection = await asyncpg.connect(server_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.execute(f'create database "{name}"')
    finally:
        await connection.close()
    return f"{server_url.rsplit('/', 1)[0]}/{name}"


async def drop_database(url: str) -> None:
    import asyncpg

    server, name = url.rsplit("/", 1)
    connection = await asyncpg.connect(f"{server}/postgres".replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await connection.close()


async def one_pass(workers: int, protocols: int, database_url: str | None, kill: bool) -> dict:
    if not database_url:
        return await measured_pass(workers, protocols, None, kill)
    database_url = await fresh_database(database_url)
    try:
        return await measured_pass(workers, protocols, database_url, kill)
    finally:
        await drop_database(database_url)


async def measured_pass(workers: int, protocols: int, database_url: str | None, kill: bool) -> dict:
    with tempfile.TemporaryDirectory(prefix="agentry-bench-workers-") as scratch:
        base = Path(scratch)
        cluster = Cluster(base, workers, database_url, pause=2.0 if kill else 0.05)
        remotes = [make_remote(base, f"r{number}") for number in range(protocols)]
        cluster.start()
        try:
            url = f"http://127.0.0.1:{cluster.web_port}"
            async with aiohttp.ClientSession() as http:
                await wait_healthy(http, url, 60)
                cluster.start_workers()
                ids = await create_protocols(http, url, remotes)
                await projects_ready(cluster, len(remotes))
                await asyncio.sleep(1)
                cpu_before = cluster.agentry_cpu()
                started = time.monotonic()
                await start_protocols(http, url, ids)
                killed = await kill_a_busy_worker(cluster) if kill else None
                while True:
                    found = await statuses(cluster)
                    if all(found.get(protocol_id) in ("completed", "blocked", "failed") for protocol_id in ids):
                        break
                    await asyncio.sleep(0.2)
                wall = time.monotonic() - started
                cpu = cluster.agentry_cpu() - cpu_before
        finally:
            records = cluster.agent_records()
            cluster.stop()
        steps = [record for record in records if record["kind"] == "execute"]
        completed = sum(1 for protocol_id in ids if found.get(protocol_id) == "completed")
        distinct = len({record["step"] for record in steps})
        result = {"workers": workers, "protocols": protocols, "completed": completed, "wall_s": wall,
                  "steps_per_s": distinct / wall, "agent_runs_per_step": len(steps) / max(distinct, 1),
                  "cpu_s_per_step": (cpu - sum(record["cpu"] for record in records)) / max(distinct, 1)}
        if killed is not None:
            result["takeover_s"] = takeover_seconds(records, killed)
        return result


async def kill_a_busy_worker(cluster: Cluster) -> tuple[float, set[str]]:
    """Kills the worker running the most steps once steps are running; returns (when, its step ids)."""
    while True:
        rows = await asyncio.to_thread(cluster.query, "select worker_id, step_run_id from queued_jobs where "
                                       "function = 'execute_step_job' and status = 'running'")
        held: dict[str, set[str]] = {}
        for worker_id, step_id in rows:
            if worker_id:
                held.setdefault(worker_id, set()).add(str(step_id))
        if held:
            worker_id, steps = max(held.items(), key=lambda item: len(item[1]))
            pid = int(worker_id.rsplit(":", 1)[1])
            os.kill(pid, signal.SIGKILL)
            return time.time(), steps
        await asyncio.sleep(0.1)


def takeover_seconds(records: list[dict], killed: tuple[float, set[str]]) -> float:
    """The worst time from the kill to an agent starting again on one of the killed worker's steps."""
    when, steps = killed
    restarted = {}
    for record in records:
        if record["kind"] == "execute" and record["step"] in steps and record["started"] > when:
            restarted[record["step"]] = min(restarted.get(record["step"], float("inf")), record["started"] - when)
    return max(restarted.values()) if restarted else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocols", type=int, default=60)
    parser.add_argument("--workers", default="1,2,3")
    parser.add_argument("--database-url", default=None)
    options = parser.parse_args()
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{'PostgreSQL' if options.database_url else 'SQLite'} + Redis; {options.protocols} three-step protocols")
    print(f"{'workers':>7} {'done':>5} {'wall s':>7} {'steps/s':>8} {'CPU ms/step':>12} {'agents/step':>12}"
          f" {'kill→rerun s':>13}")
    for workers in (int(value) for value in options.workers.split(",")):
        plain = asyncio.run(one_pass(workers, options.protocols, options.database_url, kill=False))
        takeover = (asyncio.run(one_pass(workers, max(6, options.protocols // 6), options.database_url, kill=True))
                    ["takeover_s"] if workers > 1 else None)
        print(f"{workers:>7} {plain['completed']:>5} {plain['wall_s']:>7.1f} {plain['steps_per_s']:>8.2f} "
              f"{plain['cpu_s_per_step'] * 1000:>12.0f} {plain['agent_runs_per_step']:>12.2f} "
              f"{'' if takeover is None else f'{takeover:.1f}':>13}")


if __name__ == "__main__":
    main()
