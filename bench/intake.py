"""Webhook intake benchmark: latency at a fixed rate, peak throughput, and resident memory.

Starts `python -m bot serve` as a subprocess on 127.0.0.1 and sends signed GitHub deliveries
(each one recorded and queued, and its job run by the worker), then prints numbers.

    python bench/intake.py                                  # embedded default (SQLite + in-process queue)
    python bench/intake.py --redis redis://127.0.0.1:6379/0 --database postgresql+asyncpg://…   # plus `python -m bot worker`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import percentile, wait_healthy  # noqa: E402
from bot.webhooks import github_signature  # noqa: E402

SECRET = "bench-secret"
PAYLOAD = json.loads((ROOT / "tests/fixtures/github-webhooks/issue_comment/created.payload.json").read_text())


def delivery(number: int) -> tuple[bytes, dict]:
    payload = {**PAYLOAD, "comment": {**PAYLOAD["comment"], "id": 10_000_000 + number, "body": "/agent status"}}
    body = json.dumps(payload).encode()
    return body, {
        "X-GitHub-Event": "issue_comment",
        "X-GitHub-Delivery": uuid.uuid4().hex,
        "X-Hub-Signature-256": github_signature(SECRET, body),
        "Content-Type": "application/json",
    }


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0



async def post(http: aiohttp.ClientSession, url: str, number: int) -> float:
    body, headers = delivery(number)
    started = time.perf_counter()
    async with http.post(url, data=body, headers=headers) as response:
        await response.read()
        if response.status != 202:
            raise RuntimeError(f"unexpected {response.status}")
    return time.perf_counter() - started


async def fixed_rate(http, url: str, rate: float, seconds: float, first: int) -> list[float]:
    count = int(rate * seconds)
    start = time.perf_counter()
    tasks = []
    for number in range(count):
        delay = start + number / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(post(http, url, first + number)))
    return list(await asyncio.gather(*tasks))


async def flood(http, url: str, total: int, concurrency: int, first: int) -> float:
    numbers = iter(range(first, first + total))

    async def sender():
        for number in numbers:
            await post(http, url, number)

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return total / (time.perf_counter() - started)



async def wait_drained(http, base: str, seconds: float = 600) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        async with http.get(f"{base}/metrics") as response:
            text = await response.text()
        if "agentry_queue_depth 0.0" in text:
            return
        await asyncio.sleep(0.5)


async def run(args) -> None:
    data_dir = tempfile.mkdtemp(prefix="agentry-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTRY_")}
    env.update(AGENTRY_WEBHOOK_SECRET=SECRET, AGENTRY_PORT=str(args.port), AGENTRY_DATA_DIR=data_dir,
               AGENTRY_LOG_LEVEL="warning")
    if args.database:
        env["AGENTRY_DATABASE_URL"] = args.database
    if args.redis:
        env["AGENTRY_REDIS_URL"] = args.redis
    processes = []
    if args.database and not args.database.startswith("sqlite"):
        migrate = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "migrate", cwd=ROOT, env=env)
        await migrate.wait()
    server = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", cwd=ROOT, env=env)
    processes.append(server)
    if args.redis:
        processes.append(await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "worker", cwd=ROOT, env=env))
    base = f"http://127.0.0.1:{args.port}"
    url = f"{base}/webhooks/github"
    try:
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector) as http:
            await wait_healthy(http, base)
            await asyncio.sleep(1)
            idle = rss_kib(server.pid)
            latencies = await fixed_rate(http, url, args.rate, args.seconds, 0)
            sent = len(latencies)
            peak = await flood(http, url, args.flood, 16, sent)
            sent += args.flood
            await flood(http, url, max(0, args.total // 2 - sent), 16, sent)
            await wait_drained(http, base)
            half = rss_kib(server.pid)
            sent = max(sent, args.total // 2)
            await flood(http, url, args.total - sent, 16, sent)
            await wait_drained(http, base)
            await asyncio.sleep(1)
            after = rss_kib(server.pid)
        label = "Redis + " + ("PostgreSQL" if args.database and "postgres" in args.database else "SQLite") if args.redis \
            else "embedded (SQLite + in-process queue)"
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"setup: {label}")
        print(f"fixed rate {args.rate:.0f}/s for {args.seconds:.0f}s: {len(latencies)} deliveries, "
              f"p50 {percentile(latencies, 0.5) * 1000:.1f} ms, p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
              f"mean {statistics.mean(latencies) * 1000:.1f} ms")
        print(f"peak throughput (16 concurrent senders, {args.flood} deliveries): {peak:.0f} deliveries/s")
        print(f"web process RSS: idle {idle / 1024:.1f} MiB, after {args.total // 2:,} deliveries "
              f"{half / 1024:.1f} MiB, after {args.total:,} deliveries {after / 1024:.1f} MiB")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            await process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=25.0, help="deliveries per second in the fixed-rate phase")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--flood", type=int, default=2000, help="deliveries in the peak-throughput phase")
    parser.add_argument("--total", type=int, default=10_000, help="deliveries in all (for the memory figures)")
    parser.add_argument("--port", type=int, default=18010)
    parser.add_argument("--redis", help="arq Redis URL (starts a separate worker process)")
    parser.add_argument("--database", help="database URL (default: SQLite in a temporary data dir)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
