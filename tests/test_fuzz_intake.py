"""Fuzzed deliveries, correctly signed: every real payload under tests/fixtures, mutated a thousand
times (seeded), is answered below 500 with a reason for each refusal, and every job an accepted
one queues runs without crashing.

A mutation deletes a field, puts a hostile value where another was (wrong types, NUL, numbers
beyond 64 bits, non-finite numbers, deep nesting, a value taken from elsewhere in the payload),
switches the action, turns a text into a command agentry answers, or sends the payload under
another event's name. `AGENTRY_FUZZ_SEED` and `AGENTRY_FUZZ_MUTATIONS` change the run; a failure
names the seed and the mutations that led to it.
"""

from __future__ import annotations

import copy
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from bot.models import QueuedJob, WebhookDelivery
from tests.conftest import FIXTURES, run_jobs, signed_headers

SEED = int(os.environ.get("AGENTRY_FUZZ_SEED", "20261202"))
MUTATIONS = int(os.environ.get("AGENTRY_FUZZ_MUTATIONS", "1000"))
GITLAB_TOKEN = "fuzz-hook-token"

GITHUB_EVENTS = sorted(path.name for path in (FIXTURES / "github-webhooks").iterdir() if path.is_dir())
GITLAB_EVENTS = {"issue": "Issue Hook", "merge_request": "Merge Request Hook", "note": "Note Hook",
                 "pipeline": "Pipeline Hook", "push": "Push Hook"}
ACTIONS = ["created", "edited", "deleted", "labeled", "unlabeled", "opened", "closed", "synchronize", "reopened",
           "completed", "requested_action", "rerequested", "added", "removed", "suspend", "unsuspend",
           "open", "update", "merge", "close", "reopen", "approved"]
COMMANDS = ["/agent status", "/agent help", "/agent", "/agent status extra words", "@agentry-test status"]


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


HOSTILE: list[Any] = [
    None, True, False, 0, -1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1, 2**200, 1.5, float("nan"), float("inf"),
    "", "x", "x\x00y", "\u00e4\U0001f600", "a" * 5000, "999999999999999999999", "refs/heads/../x", "-x",
    [], {}, [None], [{}], {"id": 1}, {"name": None}, _deep(40), _deep(250),
]


@dataclass(frozen=True)
class Delivery:
    forge: str
    event: str
    payload: dict

    @property
    def name(self) -> str:
        return f"{self.forge}:{self.event}"


def _fixtures() -> list[tuple[str, str, Path]]:
    github = [("github", path.parent.name, path) for path in sorted((FIXTURES / "github-webhooks").glob("*/*.json"))]
    gitlab = []
    for path in sorted((FIXTURES / "gitlab-webhooks").glob("*.json")):
        kind = json.loads(path.read_text())["object_kind"]
        gitlab.append(("gitlab", GITLAB_EVENTS[kind], path))
    return github + gitlab


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a payload that a mutation may touch."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value[:5]):
            found += _paths(item, (*prefix, index))
    return found


def _at(payload: Any, path: tuple) -> Any:
    for part in path:
        payload = payload[part]
    return payload


def mutate(rng: random.Random, delivery: Delivery) -> tuple[Delivery, list[str]]:
    """The delivery after one to three mutations, and what they were."""
    payload = json.loads(json.dumps(delivery.payload))
    event, done = delivery.event, []
    for _ in range(rng.randint(1, 3)):
        places = _paths(payload)
        if not places:
            break
        path = rng.choice(places)
        parent, key = _at(payload, path[:-1]), path[-1]
        kind = rng.random()
        if kind < 0.25 and isinstance(parent, dict):
            del parent[key]
            done.append(f"delete {path}")
        elif kind < 0.6:
            parent[key] = copy.deepcopy(rng.choice(HOSTILE))  # never the shared constant itself
            done.append(f"{path} = {_short(parent[key])}")
        elif kind < 0.75:
            parent[key] = json.loads(json.dumps(_at(payload, rng.choice(places))))
            done.append(f"{path} = another field's value")
        elif kind < 0.85:
            _set(payload, rng.choice([("action",), ("object_attributes", "action")]), rng.choice(ACTIONS))
            done.append(f"action = {_short(payload.get('action'))}")
        elif kind < 0.95 and isinstance(parent[key], str):
            parent[key] = rng.choice(COMMANDS)
            done.append(f"{path} = a command")
        else:
            event = rng.choice(GITHUB_EVENTS if delivery.forge == "github" else list(GITLAB_EVENTS.values()))
            done.append(f"sent as {event}")
    return Delivery(delivery.forge, event, payload), done


def _set(payload: dict, path: tuple, value: str) -> None:
    target = payload
    for part in path[:-1]:
        if not isinstance(target.get(part), dict):
            return
        target = target[part]
    target[path[-1]] = value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def headers(delivery: Delivery, body: bytes, delivery_id: str) -> dict:
    if delivery.forge == "github":
        return signed_headers(body, delivery.event, delivery_id)
    return {"X-Gitlab-Event": delivery.event, "X-Gitlab-Token": GITLAB_TOKEN, "Idempotency-Key": delivery_id,
            "Content-Type": "application/json"}


@pytest.fixture
def settings_env(settings_env):
    return {**settings_env, "AGENTRY_GITLAB_WEBHOOK_TOKEN": GITLAB_TOKEN, "AGENTRY_GITLAB_BOT_USERNAME": "agentry"}


FIXTURE_FILES = _fixtures()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("forge, event, path", FIXTURE_FILES,
                         ids=[f"{forge}/{path.parent.name}/{path.name}" for forge, _, path in FIXTURE_FILES])
async def test_fuzzed_signed_deliveries_get_no_5xx_and_crash_no_job(client, deps, forge, event, path):
    original = Delivery(forge, event, json.loads(path.read_text()))
    rng = random.Random(f"{SEED}:{forge}:{path.parent.name}/{path.name}")
    url = f"/webhooks/{forge}"
    statuses: dict[int, int] = {}
    for number in range(MUTATIONS):
        delivery, mutations = mutate(rng, original)
        body = json.dumps(delivery.payload).encode()
        delivery_id = f"fuzz-{number}"
        response = await client.post(url, data=body, headers=headers(delivery, body, delivery_id))
        statuses[response.status] = statuses.get(response.status, 0) + 1
        answer = await response.json()
        where = f"seed {SEED}, mutation {number} of {path.name} ({delivery.name}): {mutations}"
        assert response.status < 500, f"{where}: {answer}"
        if response.status == 400:
            assert answer["error"], where
    await run_jobs(deps)
    async with deps.sessions() as session:
        failed = (await session.exec(select(QueuedJob).where(QueuedJob.status == "failed"))).all()
        unfinished = (await session.exec(select(QueuedJob).where(QueuedJob.status != "done"))).all()
        refused = (await session.exec(select(WebhookDelivery).where(WebhookDelivery.status == "invalid"))).all()
    assert not failed, [(job.job_id, job.error) for job in failed[:5]]
    assert not unfinished, [(job.job_id, job.status) for job in unfinished[:5]]
    assert len(refused) == statuses.get(400, 0), "every refused delivery is recorded with its reason"
    assert all(delivery.error for delivery in refused)
    assert sum(statuses.values()) == MUTATIONS
