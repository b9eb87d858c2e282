"""Comment-to-first-reaction latency: a signed `/agent status` comment in, the 👀 reaction out.

Runs `python -m bot serve` (embedded queue) with GitHub App credentials pointing at a fake GitHub
on 127.0.0.1, sends comments at a fixed rate, and measures from the webhook POST to the reaction
request arriving at the fake.

    python bench/reaction.py [--rate 10] [--count 300]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
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
from tests.fakes.github_server import FakeGitHub  # noqa: E402

SECRET = "bench-secret"
REPO = "Codertocat/Hello-World"
PAYLOAD = json.loads((ROOT / "tests/fixtures/github-webhooks/issue_comment/created.with-installation.payload.json").read_text())




async def send(http, url: str, github: FakeGitHub) -> tuple[int, float]:
    payload = copy.deepcopy(PAYLOAD)
    comment_id = github.add_comment(REPO, 1, "/agent status", user="Codertocat")
    payload["comment"].update(id=comment_id, body="/agent status")
    body = json.dumps(payload).encode()
    headers = {"X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": uuid.uuid4().hex,
               "X-Hub-Signature-256": github_signature(SECRET, body), "Content-Type": "application/json"}
    sent = time.monotonic()
    async with http.post(url, data=body, headers=headers) as response:
        assert response.status == 202, response.status
    return comment_id, sent


def reaction_times(github: FakeGitHub) -> dict[int, float]:
    found = {}
    for call in github.calls:
        if call.method == "POST" and call.path.endswith("/reactions"):
            found.setdefault(int(call.path.split("/")[-2]), call.at)
    return found


async def run(args) -> None:
    async with FakeGitHub(repos={REPO: 1}, permissions={"Codertocat": "write"}) as github:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTRY_")}
        env.update(AGENTRY_WEBHOOK_SECRET=SECRET, AGENTRY_PORT=str(args.port), AGENTRY_LOG_LEVEL="warning",
                   AGENTRY_DATA_DIR=tempfile.mkdtemp(prefix="agentry-bench-"), AGENTRY_GITHUB_APP_ID=github.app_id,
                   AGENTRY_GITHUB_PRIVATE_KEY=github.private_key_pem, AGENTRY_GITHUB_API_URL=github.url,
                   AGENTRY_GITHUB_APP_SLUG=github.app_slug, AGENTRY_MAX_CONCURRENT_JOBS=str(args.workers))
        server = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "serve", cwd=ROOT, env=env)
        base = f"http://127.0.0.1:{args.port}"
        try:
            async with aiohttp.ClientSession() as http:
                await wait_healthy(http, base)
                sent = {}
                start = time.monotonic()
                for number in range(args.count):
                    delay = start + number / args.rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    comment_id, at = await send(http, f"{base}/webhooks/github", github)
                    sent[comment_id] = at
                deadline = time.monotonic() + 60
                while len(reaction_times(github)) < len(sent) and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
        finally:
            server.terminate()
            await server.wait()
        reacted = reaction_times(github)
        latencies = [reacted[comment_id] - at for comment_id, at in sent.items() if comment_id in reacted]
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
        print(f"setup: embedded (SQLite + in-process queue), {args.workers} concurrent jobs, fake GitHub on 127.0.0.1")
        print(f"{len(sent)} comments at {args.rate:.0f}/s, {len(latencies)} reactions: "
              f"p50 {percentile(latencies, 0.5) * 1000:.0f} ms, p99 {percentile(latencies, 0.99) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=18011)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
