"""Correct at forge scale: real-size forge ids end to end, and one protocol per issue however many
people start one at the same moment. Runs on SQLite and, in CI, on PostgreSQL."""

from __future__ import annotations

import asyncio
import shlex
import sys

from tests.conftest import post_webhook
from tests.engine_support import command_agent
from tests.fakes.github_server import REAL_SIZE_IDS
from jobs.worker import embedded_worker

AGENT = r'''
if kind == "plan":
    plan([{"name": "Write greeting", "prompt": "Create hello.txt", "qa": "skip"}])
else:
    open("hello.txt", "w").write("hello\n")
    print("wrote hello.txt")
'''


def with_agent(tmp_path) -> dict:
    return {"AGENTRY_ENGINE_COMMAND": f"{shlex.quote(sys.executable)} {shlex.quote(str(command_agent(tmp_path, AGENT)))}"}


async def test_a_whole_flow_keeps_forge_ids_past_two_to_the_thirty_third(start, tmp_path):
    flow = await start(**with_agent(tmp_path))
    await flow.comment("/agent run add a greeting")
    protocol = await flow.protocol()
    assert protocol.status_comment_id > 2**33 and protocol.check_run_id > 2**33
    assert REAL_SIZE_IDS > 2**33
    [pull] = flow.pulls()
    assert pull["id"] > 2**33 and flow.show(protocol.branch, "hello.txt") == "hello"
    assert flow.github.check_runs[protocol.check_run_id]["conclusion"] == "success"


async def test_concurrent_starts_on_one_issue_make_one_protocol_and_tell_the_others_who_won(start, tmp_path):
    flow = await start(**with_agent(tmp_path), AGENTRY_MAX_CONCURRENT_JOBS="8")
    for number in range(12):
        response = await post_webhook(flow.client, "issue_comment",
                                      flow.comment_payload(f"/agent run attempt {number}"))
        assert response.status == 202
    await asyncio.gather(*(embedded_worker(flow.deps, burst=True).main() for _ in range(3)))
    [protocol] = await flow.protocols()
    replies = [comment["body"] for comment in flow.github.comments.values()
               if comment["user"]["login"] == flow.github.bot_login and comment["id"] != protocol.status_comment_id]
    assert len(replies) == 11, replies
    assert all(f"protocol #{protocol.id}" in reply for reply in replies), replies
    assert len(flow.pulls()) == 1
