"""Webhook intake side by side with Probot: the same signed load against both, in alternation.

Installs Probot 14 from npm into a cache directory with a no-op `issue_comment.created` handler,
starts it and `python -m bot serve` on loopback with the same secret, and runs `wrk` (Debian's
`wrk` package) against each in turn, A B A B: the octokit `issue_comment.created` payload (15 KB),
correctly signed, a unique delivery id per request. Prints requests/s, p50 and p99 per round, the
medians and the ratios agentry / Probot. agentry records every delivery before it answers 202; the
script checks afterwards that the database holds one row per 202.

    python bench/intake_vs_probot.py                       # embedded default (SQLite + in-process queue)
    python bench/intake_vs_probot.py --database postgresql+asyncpg://… --redis redis://…  # plus a worker
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import wait_healthy  # noqa: E402
from bot.webhooks import github_signature  # noqa: E402

PROBOT_VERSION = "14.3.2"
SECRET = "bench-secret"
PAYLOAD = ROOT / "tests/fixtures/github-webhooks/issue_comment/created.payload.json"
PROBOT_APP = """\
import { createServer } from "node:http";
import { Probot, createNodeMiddleware } from "probot";

const probot = new Probot({ appId: 1, privateKey: process.env.PRIVATE_KEY, secret: process.env.WEBHOOK_SECRET,
                            logLevel: "warn" });
const app = (app) => { app.on("issue_comment.created", async () => {}); };
const middleware = await createNodeMiddleware(app, { probot, webhooksPath: "/webhooks/github" });
createServer((request, response) => middleware(request, response, () => { response.writeHead(404); response.end(); }))
  .listen(Number(process.env.PORT), "127.0.0.1");
"""
# wrk: every request the same signed body, each with its own delivery id; the summary as one JSON line
WRK_SCRIPT = """\
local body = io.open("{body}"):read("*a")
local prefix = "{prefix}"
local counter = 0
local threads = 0
function setup(thread) threads = threads + 1; thread:set("tid", tostring(threads)) end
function request()
  counter = counter + 1
  return wrk.format("POST", "{path}", {{
    ["Content-Type"] = "application/json", ["X-GitHub-Event"] = "issue_comment",
    ["X-Hub-Signature-256"] = "{signature}", ["X-GitHub-Delivery"] = prefix .. tid .. "-" .. counter,
  }}, body)
end
function done(summary, latency, requests)
  io.write(string.format('RESULT {{"requests": %d, "seconds": %f, "p50": %d, "p99": %d, "non2xx": %d, "errors": %d}}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(99),
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


@dataclass
class Round:
    name: str
    requests: int
    per_second: float
    p50_ms: float
    p99_ms: float
    failed: int


def private_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def install_probot(cache: Path) -> Path:
    if not (cache / "node_modules" / "probot").is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "package.json").write_text(json.dumps({"name": "probot-bench", "private": True, "type": "module"}))
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", f"probot@{PROBOT_VERSION}"],
                       cwd=cache, check=True)
    (cache / "app.mjs").write_text(PROBOT_APP)
    return cache / "app.mjs"


def wrk_script(work: Path, path: str, prefix: str) -> Path:
    body = PAYLOAD.read_bytes()
    script = work / f"{prefix}.lua"
    script.write_text(WRK_SCRIPT.format(body=PAYLOAD, path=path, signature=github_signature(SECRET, body),
                                        prefix=prefix))
    return script


def run_wrk(url: str, script: Path, args, name: str) -> Round:
    done = subprocess.run(["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s", "--latency",
                           "-s", str(script), url], capture_output=True, text=True, check=True)
    [line] = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    return Round(name, result["requests"], result["requests"] / result["seconds"], result["p50"] / 1000,
                 result["p99"] / 1000, result["non2xx"] + result["errors"])


async def start(command: list[str], env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*command, cwd=cwd, env=env)


async def wait_listening(port: int, seconds: float = 30) -> None:
    for _ in range(int(seconds * 10)):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


async def recorded_deliveries(database_url: str, prefix: str) -> int:
    """How many deliveries of the benchmark's load the database holds."""
    from sqlalchemy import text

    from bot.db import make_engine

    engine = make_engine(database_url)
    try:
        async with engine.connect() as connection:
            query = text("SELECT count(*) FROM webhook_deliveries WHERE delivery_id LIKE :prefix")
            return int((await connection.execute(query, {"prefix": prefix + "%"})).scalar_one())
    finally:
        await engine.dispose()


async def run(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="intake-vs-probot-"))
    base_env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTRY_")}
    agentry_env = {**base_env, "AGENTRY_WEBHOOK_SECRET": SECRET, "AGENTRY_PORT": str(args.port),
                   "AGENTRY_DATA_DIR": str(work / "data"), "AGENTRY_LOG_LEVEL": "warning"}
    if args.database:
        agentry_env["AGENTRY_DATABASE_URL"] = args.database
    if args.redis:
        agentry_env["AGENTRY_REDIS_URL"] = args.redis
    if args.web_processes:
        agentry_env["AGENTRY_WEB_PROCESSES"] = str(args.web_processes)
    probot_env = {**base_env, "PORT": str(args.probot_port), "WEBHOOK_SECRET": SECRET,
                  "PRIVATE_KEY": private_key_pem(), "NODE_ENV": "production"}
    app = install_probot(Path(args.probot_dir))
    processes = []
    try:
        if args.database and not args.database.startswith("sqlite"):
            migrate = await start([sys.executable, "-m", "bot", "migrate"], agentry_env, ROOT)
            await migrate.wait()
        processes.append(await start([sys.executable, "-m", "bot", "serve"], agentry_env, ROOT))
        if args.redis:
            processes.append(await start([sys.executable, "-m", "bot", "worker"], agentry_env, ROOT))
        processes.append(await start(["node", str(app)], probot_env, app.parent))
        base = f"http://127.0.0.1:{args.port}"
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, base)
        await wait_listening(args.probot_port)
        targets = {"agentry": f"{base}/webhooks/github", "probot": f"http://127.0.0.1:{args.probot_port}/webhooks/github"}
        warm_up = {name: wrk_script(work, "/webhooks/github", f"warm-{name}-") for name in targets}
        for name, url in targets.items():
            run_wrk(url, warm_up[name], argparse.Namespace(**{**vars(args), "seconds": 2}), name)
        prefix = f"load-{uuid.uuid4().hex[:8]}-"
        rounds = [run_wrk(targets[name], wrk_script(work, "/webhooks/github", f"{prefix}{number}-{name}-"), args, name)
                  for number in range(args.rounds) for name in ("agentry", "probot")]
        database = args.database or f"sqlite+aiosqlite:///{work / 'data' / 'agentry.db'}"
        report(args, rounds, await recorded_deliveries(database, prefix))
        if args.memory:
            await memory_phase(args, processes[0].pid, targets["agentry"], work, database)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await process.wait()
        shutil.rmtree(work, ignore_errors=True)


def web_rss_mib(pid: int) -> float:
    """The resident memory of the main web process and of the web processes it started."""
    children = [int(child) for task in Path(f"/proc/{pid}/task").glob("*/children") for child in task.read_text().split()]
    return rss_mib(pid) + sum(rss_mib(child) for child in children)


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def memory_phase(args, pid: int, url: str, work: Path, database: str) -> None:
    """More load in slices until `--memory` deliveries of it are recorded, with the web process's RSS."""
    prefix = f"memory-{uuid.uuid4().hex[:8]}-"
    print(f"memory: web processes' RSS {web_rss_mib(pid):.1f} MiB before")
    chunk, recorded = 0, 0
    while recorded < args.memory:
        run_wrk(url, wrk_script(work, "/webhooks/github", f"{prefix}{chunk}-"),
                argparse.Namespace(**{**vars(args), "seconds": 5}), "memory")
        chunk += 1
        recorded = await recorded_deliveries(database, prefix)
        print(f"memory: {recorded:>7} deliveries recorded, RSS {web_rss_mib(pid):.1f} MiB")


def report(args, rounds: list[Round], recorded: int) -> None:
    setup = ("PostgreSQL + Redis, a separate worker" if args.redis else "embedded (SQLite + in-process queue)")
    processes = args.web_processes or len(os.sched_getaffinity(0))
    setup += f", {processes} web process{'es' if processes > 1 else ''}"
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"Node {subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()}")
    print(f"setup: agentry {setup}; Probot {PROBOT_VERSION}, no-op handler")
    print(f"load: wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, {args.rounds} rounds A B")
    for item in rounds:
        print(f"  {item.name:8} {item.per_second:8.0f} req/s  p50 {item.p50_ms:7.1f} ms  p99 {item.p99_ms:7.1f} ms"
              f"  ({item.requests} requests, {item.failed} failed)")
    medians = {name: (statistics.median(item.per_second for item in rounds if item.name == name),
                      statistics.median(item.p99_ms for item in rounds if item.name == name),
                      statistics.median(item.p50_ms for item in rounds if item.name == name))
               for name in ("agentry", "probot")}
    for name, (rate, p99, p50) in medians.items():
        print(f"median   {name:8} {rate:8.0f} req/s  p50 {p50:7.1f} ms  p99 {p99:7.1f} ms")
    print(f"ratio agentry/probot: {medians['agentry'][0] / medians['probot'][0]:.2f}x req/s, "
          f"{medians['agentry'][1] / medians['probot'][1]:.2f}x p99")
    answered = sum(item.requests - item.failed for item in rounds if item.name == "agentry")
    print(f"agentry recorded {recorded} deliveries for {answered} answered requests")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--port", type=int, default=18011)
    parser.add_argument("--probot-port", type=int, default=18012)
    parser.add_argument("--probot-dir", default=str(Path(tempfile.gettempdir()) / f"probot-{PROBOT_VERSION}"))
    parser.add_argument("--memory", type=int, default=0, metavar="N",
                        help="then load on until N more deliveries are recorded, printing the web process's RSS")
    parser.add_argument("--redis", help="arq Redis URL (starts a separate worker process)")
    parser.add_argument("--web-processes", type=int, default=0, metavar="N",
                        help="AGENTRY_WEB_PROCESSES (default: agentry's, one per core)")
    parser.add_argument("--database", help="database URL (default: SQLite in a temporary data dir)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
