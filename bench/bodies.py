"""What large webhook bodies cost the web process: resident memory while many arrive at once.

Starts `python -m bot serve` (embedded default) on 127.0.0.1 and sends C concurrent bodies of
S MiB each, three times over: to the GitHub endpoint with a wrong signature, to the GitLab endpoint
with a wrong token (refused from its header, before the body is read), and correctly signed to the
GitHub endpoint (read, then refused as malformed JSON). Prints the answers and the web process's
resident memory before, at its peak (sampled every 10 ms) and after.

    python bench/bodies.py [--concurrency 12] [--mib 25]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.support import wait_healthy  # noqa: E402
from bot.webhooks import github_signature  # noqa: E402

SECRET = "bench-bodies"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def sample_peak(pid: int, stop: asyncio.Event) -> float:
    peak = 0.0
    while not stop.is_set():
        peak = max(peak, rss_mib(pid))
        await asyncio.sleep(0.01)
    return peak


async def send(http: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]) -> str:
    try:
        async with http.post(url, data=body, headers=headers) as response:
            await response.read()
            return str(response.status)
    except aiohttp.ClientError as exc:  # the server may close the connection on a refused body
        return type(exc).__name__


async def burst(http: aiohttp.ClientSession, pid: int, url: str, body: bytes, headers: dict[str, str],
                concurrency: int) -> tuple[collections.Counter, float, float, float]:
    before = rss_mib(pid)
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_peak(pid, stop))
    answers = await asyncio.gather(*(send(http, url, body, headers) for _ in range(concurrency)))
    stop.set()
    peak = await sampler
    await asyncio.sleep(1)
    return collections.Counter(answers), before, peak, rss_mib(pid)


async def run(options: argparse.Namespace) -> None:
    port = 58000 + os.getpid() % 1000
    with tempfile.TemporaryDirectory(prefix="agentry-bench-bodies-") as data:
        env = {key: value for key, value in os.environ.items() if not key.startswith("AGENTRY_")}
        env.update(AGENTRY_PORT=str(port), AGENTRY_DATA_DIR=data, AGENTRY_WEBHOOK_SECRET=SECRET,
                   AGENTRY_GITLAB_WEBHOOK_TOKEN=SECRET, AGENTRY_LOG_LEVEL="WARNING")
        web = subprocess.Popen([sys.executable, "-m", "bot", "serve"], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            body = b"x" * (options.mib * 1024 * 1024 - 1024)
            cases = [
                ("GitHub, wrong signature", f"{base}/webhooks/github",
                 {"X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "d", "X-Hub-Signature-256": "sha256=" + "0" * 64}),
                ("GitLab, wrong token", f"{base}/webhooks/gitlab",
                 {"X-Gitlab-Event": "Note Hook", "X-Gitlab-Token": "wrong"}),
                ("GitHub, signed, not JSON", f"{base}/webhooks/github",
                 {"X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "d",
                  "X-Hub-Signature-256": github_signature(SECRET, body)}),
            ]
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http:
                await wait_healthy(http, base, 60)
                print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}; "
                      f"{options.concurrency} concurrent bodies of {options.mib} MiB")
                print(f"{'case':26} {'answers':28} {'RSS before':>11} {'peak':>8} {'after':>8}")
                for name, url, headers in cases:
                    answers, before, peak, after = await burst(http, web.pid, url, body, headers, options.concurrency)
                    shown = ", ".join(f"{count}× {status}" for status, count in sorted(answers.items()))
                    print(f"{name:26} {shown:28} {before:>8.1f} MiB {peak:>5.1f} MiB {after:>5.1f} MiB")
        finally:
            web.terminate()
            web.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=12)
    parser.add_argument("--mib", type=int, default=25)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
