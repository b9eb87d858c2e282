"""The webhook endpoint: verify, record once, enqueue, answer fast."""

import asyncio
import json
from pathlib import Path

import pytest
from sqlmodel import func, select

from bot.models import QueuedJob, WebhookDelivery
from tests.conftest import FIXTURES, post_webhook, signed_headers

PAYLOADS = sorted((FIXTURES / "github-webhooks").glob("*/*.json"))


async def count(deps, model, *where) -> int:
    async with deps.sessions() as session:
        return (await session.exec(select(func.count()).select_from(model).where(*where))).one()


@pytest.mark.parametrize("path", PAYLOADS, ids=lambda path: f"{path.parent.name}/{path.name}")
async def test_every_real_payload_is_accepted_and_recorded_once(client, deps, path: Path):
    event = path.parent.name
    body = path.read_bytes()
    response = await client.post("/webhooks/github", data=body, headers=signed_headers(body, event, f"d-{path.stem}"))
    assert 200 <= response.status < 300, await response.text()
    assert await count(deps, WebhookDelivery, WebhookDelivery.delivery_id == f"d-{path.stem}") == 1


async def test_a_redelivery_does_its_work_once(client, deps):
    payload = json.loads((FIXTURES / "github-webhooks/installation/created.payload.json").read_text())
    first = await post_webhook(client, "installation", payload, "same-id")
    second = await post_webhook(client, "installation", payload, "same-id")
    assert first.status == 202 and (await first.json())["jobs"] == ["handle_installation_job:same-id"]
    assert second.status == 200 and (await second.json())["status"] == "duplicate"
    assert await count(deps, WebhookDelivery) == 1
    assert await count(deps, QueuedJob) == 1


async def test_a_bad_signature_is_401_and_leaves_no_trace_but_a_counter(client, deps):
    body = b'{"zen": "x"}'
    headers = signed_headers(body, "ping", "bad-1", secret="wrong")
    response = await client.post("/webhooks/github", data=body, headers=headers)
    assert response.status == 401
    assert "X-Hub-Signature-256" in (await response.json())["error"]
    unsigned = {key: value for key, value in headers.items() if key != "X-Hub-Signature-256"}
    assert (await client.post("/webhooks/github", data=body, headers=unsigned)).status == 401
    assert await count(deps, WebhookDelivery) == 0
    metrics = await (await client.get("/metrics")).text()
    assert 'agentry_webhook_deliveries_total{forge="github",outcome="rejected"} 2.0' in metrics


@pytest.mark.parametrize(
    "body, drop_header, reason",
    [
        (b"{not json", None, "not JSON"),
        (b'{"zen": 1}', "X-GitHub-Event", "X-GitHub-Event"),
        (b'{"zen": 1}', "X-GitHub-Delivery", "X-GitHub-Delivery"),
        (b'{"action": "created"}', None, "shape"),
    ],
)
async def test_authentic_but_unreadable_deliveries_are_400_with_a_reason(client, deps, body, drop_header, reason):
    headers = signed_headers(body, "issue_comment", "bad-body")
    headers.pop(drop_header, None)
    response = await client.post("/webhooks/github", data=body, headers=headers)
    assert response.status == 400
    assert reason in (await response.json())["error"]
    recorded = await count(deps, WebhookDelivery, WebhookDelivery.status == "invalid")
    assert recorded == (0 if drop_header else 1) and await count(deps, WebhookDelivery) == recorded
    assert await count(deps, QueuedJob) == 0


async def test_a_body_over_githubs_cap_is_413(client):
    body = b'{"pad": "' + b"x" * (27 * 1024 * 1024) + b'"}'
    response = await client.post("/webhooks/github", data=body, headers=signed_headers(body, "push", "huge"))
    assert response.status == 413
    assert "larger than" in (await response.json())["error"]


@pytest.mark.parametrize("mib, chunked", [(3, False), (24, False), (3, True)])
async def test_a_large_signed_delivery_is_read_whole(client, mib, chunked):
    body = json.dumps({"zen": "x" * (mib * 1024 * 1024), "hook_id": 1}).encode()
    headers = signed_headers(body, "ping", f"large-{mib}-{chunked}")

    async def pieces():
        for start in range(0, len(body), 256 * 1024):
            yield body[start:start + 256 * 1024]
            await asyncio.sleep(0)

    response = await client.post("/webhooks/github", data=pieces() if chunked else body, headers=headers)
    assert response.status == 200, await response.text()
    assert (await response.json())["status"] == "pong"


async def test_ping_answers_200(client):
    response = await post_webhook(client, "ping", {"zen": "Keep it logically awesome.", "hook_id": 1})
    assert response.status == 200
    assert (await response.json())["status"] == "pong"


async def test_a_form_encoded_delivery_is_accepted(client, deps):
    from urllib.parse import urlencode

    payload = (FIXTURES / "github-webhooks/installation/created.payload.json").read_text()
    body = urlencode({"payload": payload}).encode()
    headers = {**signed_headers(body, "installation", "form-1"), "Content-Type": "application/x-www-form-urlencoded"}
    response = await client.post("/webhooks/github", data=body, headers=headers)
    assert response.status == 202


async def raw_post(client, path: str, headers: dict[str, str], length: int = 25 * 1024 * 1024) -> bytes:
    """POSTs headers that announce a body of `length` bytes, sends none of it, and returns the head
    of the server's answer (which comes only if the server does not wait for the body)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{head}\r\n".encode())
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    finally:
        writer.close()


async def test_an_unsigned_delivery_is_refused_before_its_body_is_read(client):
    answer = await raw_post(client, "/webhooks/github", {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-1"})
    assert answer.startswith(b"HTTP/1.1 401")


async def test_a_body_announced_over_the_cap_is_refused_before_it_is_read(client):
    headers = {"X-GitHub-Event": "push", "X-GitHub-Delivery": "d-2", "X-Hub-Signature-256": "sha256=00"}
    answer = await raw_post(client, "/webhooks/github", headers, length=30_000_000)
    assert answer.startswith(b"HTTP/1.1 413")
