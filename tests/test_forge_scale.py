"""Correct at forge scale: real-size forge ids end to end, and one protocol per issue however many
people start one at the same moment. Runs on SQLite and, in CI, on PostgreSQL."""

from __future__ import annotations

import asyncio
import shlex
import time
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


async def test_deliveries_missed_while_agentry_was_down_are_asked_for_again_and_run(start):
    from bot.models import Event, WebhookDelivery
    from bot.maintenance import recover_missed_deliveries
    from sqlmodel import select
    from tests.conftest import WEBHOOK_SECRET, load_payload, post_webhook, run_jobs

    flow = await start()
    github, payload, now = flow.github, load_payload("installation", "created.payload.json"), time.time()
    missed = github.add_hook_delivery("missed-1", event="installation", status_code=0, delivered_at=now - 900,
                                      payload=payload)
    for number in range(120):  # newer, answered: the missed one is on the second page
        github.add_hook_delivery(f"answered-{number}", event="ping", status_code=202, delivered_at=now - 600 + number)
    assert (await post_webhook(flow.client, "ping", {"zen": "z", "hook_id": 1}, "recorded-1")).status == 200
    github.add_hook_delivery("recorded-1", event="ping", status_code=504, delivered_at=now - 700)  # answered late
    github.add_hook_delivery("in-flight", event="installation", status_code=0, delivered_at=now - 10, payload=payload)
    github.add_hook_delivery("too-old", event="installation", status_code=0, delivered_at=now - 4 * 86400,
                             payload=payload)
    github.webhook_target = (str(flow.client.make_url("/webhooks/github")), WEBHOOK_SECRET)
    assert await recover_missed_deliveries(flow.deps) == 1
    assert github.redelivery_requests == [missed]
    await run_jobs(flow.deps)
    async with flow.deps.sessions() as session:
        assert (await session.exec(select(WebhookDelivery).where(WebhookDelivery.delivery_id == "missed-1"))).first()
        events = [event.event_type for event in (await session.exec(select(Event))).all()]
    assert "project_registered" in events
    assert await recover_missed_deliveries(flow.deps) == 0  # the redelivery got through


async def test_a_command_job_taken_over_after_it_replied_does_not_reply_again(start, tmp_path):
    from bot.models import QueuedJob
    from jobs.commands import handle_command_job
    from sqlmodel import select

    flow = await start(**with_agent(tmp_path))
    await flow.comment("/agent help")
    bot_comments = lambda: [c for c in flow.github.comments.values() if c["user"]["login"] == flow.github.bot_login]
    [reply] = bot_comments()
    async with flow.deps.sessions() as session:
        [job] = (await session.exec(select(QueuedJob).where(QueuedJob.function == "handle_command_job"))).all()
    await handle_command_job({"deps": flow.deps, "job_id": job.job_id, "taken_over": True}, *job.args)
    assert bot_comments() == [reply]
