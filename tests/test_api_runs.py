"""Runs, logs, artifacts (and traversal attempts), events, queues, messages, agents, the audit log."""

import os

import pytest

from bot import store
from tests.api_support import artifact, project, protocol, run, steps


def runs_dir(api):
    path = api.deps.settings.data_dir.resolve() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


async def test_runs_list_filters_and_read(api):
    row = await project(api.deps)
    pr = await protocol(api.deps, row)
    (step,) = await steps(api.deps, pr, "running")
    a = await run(api.deps, project_id=row.id, protocol_run_id=pr.id, step_run_id=step.id, run_kind="exec")
    b = await run(api.deps, project_id=row.id, protocol_run_id=pr.id, run_kind="plan", job_type="plan_protocol_job",
                  status="succeeded")
    everything = await (await api.get("/codex/runs")).json()
    assert {item["run_id"] for item in everything} == {a.run_id, b.run_id}
    for query, expected in [("job_type=plan_protocol_job", {b.run_id}), ("status=running", {a.run_id}),
                            (f"step_run_id={step.id}", {a.run_id}), ("run_kind=plan", {b.run_id}),
                            (f"project_id={row.id}&protocol_run_id={pr.id}", {a.run_id, b.run_id})]:
        assert {item["run_id"] for item in await (await api.get(f"/codex/runs?{query}")).json()} == expected
    assert {item["run_id"] for item in await (await api.get(f"/protocols/{pr.id}/runs?run_kind=exec")).json()} \
        == {a.run_id}
    assert [item["run_id"] for item in await (await api.get(f"/steps/{step.id}/runs")).json()] == [a.run_id]
    assert (await (await api.get(f"/codex/runs/{a.run_id}")).json())["status"] == "running"
    assert (await api.get("/codex/runs/nope")).status == 404
    assert (await api.get("/codex/runs?project_id=404")).status == 404
    first = await api.get("/codex/runs?limit=1")
    second = await api.get(f"/codex/runs?limit=1&cursor={first.headers['X-Next-Cursor']}")
    assert {(await first.json())[0]["run_id"], (await second.json())[0]["run_id"]} == {a.run_id, b.run_id}


async def test_logs_as_plain_text_and_tail(api):
    log_path = runs_dir(api) / "r.log"
    log_path.write_text("line one\nline two\n")
    row = await run(api.deps, log_path=str(log_path))
    response = await api.get(f"/codex/runs/{row.run_id}/logs")
    assert response.status == 200 and response.content_type == "text/plain"
    assert await response.text() == "line one\nline two\n"
    tail = await (await api.get(f"/codex/runs/{row.run_id}/logs/tail?offset=9")).json()
    assert tail["chunk"] == "line two\n" and tail["eof"] is True
    missing = await run(api.deps)
    assert (await api.get(f"/codex/runs/{missing.run_id}/logs")).status == 404


async def test_artifacts_list_and_content(api):
    path = runs_dir(api) / "report.md"
    path.write_text("# Hello\n")
    row = await run(api.deps)
    item = await artifact(api.deps, row, str(path), kind="qa_report")
    listed = await (await api.get(f"/codex/runs/{row.run_id}/artifacts?kind=qa_report")).json()
    assert [entry["id"] for entry in listed] == [item.id]
    content = await api.get(f"/codex/runs/{row.run_id}/artifacts/{item.id}/content")
    assert content.status == 200 and await content.text() == "# Hello\n"
    other = await run(api.deps)
    assert (await api.get(f"/codex/runs/{other.run_id}/artifacts/{item.id}/content")).status == 404
    assert (await api.get("/codex/runs/nope/artifacts")).status == 404


async def test_artifact_larger_than_a_megabyte_is_413(api):
    path = runs_dir(api) / "big.txt"
    path.write_bytes(b"x" * 1_000_001)
    row = await run(api.deps)
    item = await artifact(api.deps, row, str(path))
    assert (await api.get(f"/codex/runs/{row.run_id}/artifacts/{item.id}/content")).status == 413


@pytest.mark.parametrize("attempt", [
    "/codex/runs/{run}/artifacts/..%2F..%2Fetc%2Fpasswd/content",
    "/codex/runs/{run}/artifacts/%2e%2e/content",
    "/codex/runs/{run}/artifacts/1%2F..%2F2/content",
    "/codex/runs/..%2F..%2Fetc/artifacts/{id}/content",
    "/codex/runs/{run}/artifacts/{id}/content/../../../../etc/passwd",
    "/codex/runs/{run}/artifacts/-1/content",
    "/codex/runs/{run}/artifacts/99999999999999999999/content",
])
async def test_artifact_traversal_attempts_never_reach_the_filesystem(api, attempt):
    path = runs_dir(api) / "ok.txt"
    path.write_text("registered")
    row = await run(api.deps)
    item = await artifact(api.deps, row, str(path))
    response = await api.get(attempt.format(run=row.run_id, id=item.id))
    assert response.status in (400, 404)
    assert "root:" not in await response.text()


@pytest.mark.parametrize("registered", ["/etc/passwd", "{runs}/../../../../etc/passwd", "{runs}/link", "{runs}"])
async def test_registered_paths_outside_the_data_dir_or_through_symlinks_are_refused(api, registered):
    runs = runs_dir(api)
    link = runs / "link"
    if not link.exists():
        os.symlink("/etc/passwd", link)
    row = await run(api.deps)
    item = await artifact(api.deps, row, registered.format(runs=runs))
    response = await api.get(f"/codex/runs/{row.run_id}/artifacts/{item.id}/content")
    assert response.status == 404 and "root:" not in await response.text()


async def test_events_recent_and_per_protocol(api):
    row = await project(api.deps, name="alpha")
    pr = await protocol(api.deps, row, protocol_name="p-one")
    async with api.deps.sessions() as session:
        for index in range(5):
            await store.record_event(session, "note", f"n{index}", project_id=row.id, protocol_run_id=pr.id)
        await store.record_event(session, "elsewhere", "x")
        await session.commit()
    recent = await (await api.get("/events?limit=2")).json()
    assert [event["event_type"] for event in recent] == ["elsewhere", "note"]
    scoped = await (await api.get(f"/events?project_id={row.id}")).json()
    assert len(scoped) == 5 and scoped[0]["project_name"] == "alpha" and scoped[0]["protocol_name"] == "p-one"
    timeline = await api.get(f"/protocols/{pr.id}/events?limit=3")
    assert [event["message"] for event in await timeline.json()] == ["n0", "n1", "n2"]
    rest = await api.get(f"/protocols/{pr.id}/events?cursor={timeline.headers['X-Next-Cursor']}")
    assert [event["message"] for event in await rest.json()] == ["n3", "n4"]
    assert (await api.get("/protocols/404/events")).status == 404
    assert (await api.get("/events?limit=abc")).status == 400


async def test_queues(api):
    await api.post("/projects", {"name": "demo", "git_url": "https://example.com/demo.git"})
    stats = await (await api.get("/queues")).json()
    assert stats["default"]["queued"] == 1
    assert len(await (await api.get("/queues/jobs?status=queued")).json()) == 1
    assert await (await api.get("/queues/jobs?status=finished")).json() == []
    assert (await api.get("/queues/jobs?status=bogus")).status == 400


async def test_message_bus(api):
    row = await project(api.deps)
    pr = await protocol(api.deps, row)
    created = await api.post(f"/protocols/{pr.id}/messages", {"type": "DECISION", "body": "use postgres"})
    assert created.status == 201 and (await created.json())["protocol_run_id"] == pr.id
    await api.post(f"/projects/{row.id}/messages", {"body": "hello"})
    assert (await api.post(f"/projects/{row.id}/messages", {"body": "x", "type": "SHOUT"})).status == 400
    assert (await api.post(f"/projects/{row.id}/messages", {})).status == 400
    every = await (await api.get(f"/projects/{row.id}/messages")).json()
    assert [message["body"] for message in every] == ["use postgres", "hello"]
    after = await (await api.get(f"/projects/{row.id}/messages?after={every[0]['id']}")).json()
    assert [message["body"] for message in after] == ["hello"]
    assert [m["type"] for m in await (await api.get(f"/protocols/{pr.id}/messages")).json()] == ["DECISION"]
    assert (await api.post("/protocols/404/messages", {"body": "x"})).status == 404


async def test_agents(api):
    engines = await (await api.get("/agents")).json()
    assert {engine["engine"] for engine in engines} == {"codex", "claude", "opencode", "gemini", "aider", "command"}
    assert all({"installed", "version", "running"} <= set(engine) for engine in engines)


async def test_running_runs_show_under_their_engine(api):
    row = await run(api.deps, engine="codex", status="running")
    engines = {engine["engine"]: engine for engine in await (await api.get("/agents")).json()}
    assert [item["run_id"] for item in engines["codex"]["running"]] == [row.run_id]


async def test_audit_log_records_writes_and_denials_with_secrets_redacted(api):
    token = "ghp_" + "a" * 36
    await api.post("/projects", {"name": "demo", "git_url": f"https://x-access-token:{token}@github.com/o/r",
                                 "secrets": {"api_token": "p-secret"}}, headers={"X-Request-ID": "req-1"})
    await api.post("/projects", {"name": "nope", "git_url": "/x"}, auth=False)
    await api.get("/projects")
    records = [line for line in api.client.app[__import__("handlers.api.routing", fromlist=["AUDIT"]).AUDIT].read()]
    assert [(record["outcome"], record["action"]) for record in records] == [
        ("accepted", "POST /projects"), ("denied", "POST /projects")]
    accepted = records[0]
    assert accepted["request_id"] == "req-1" and accepted["actor"] == "api" and accepted["ids"]["project_id"] == 1
    text = (api.deps.settings.data_dir / "audit.log").read_text()
    assert token not in text and "p-secret" not in text
    assert accepted["body"]["secrets"] == "[redacted]"
