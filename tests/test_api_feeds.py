"""Live feeds: SSE and WebSocket with several subscribers, resuming, run logs, idle cost."""

import asyncio
import json

from sqlalchemy import update

from bot import store
from bot.models import CodexRun
from handlers.api.feeds import HUB
from tests.api_support import AUTH, project, protocol, run


async def record(deps, event_type, **ids):
    async with deps.sessions() as session:
        event = await store.record_event(session, event_type, event_type, **ids)
        await session.commit()
    return event.id


async def read_sse(response, count, timeout=5.0):
    """The next `count` SSE events that carry data, as dicts of their fields."""
    found, current = [], {}
    async with asyncio.timeout(timeout):
        while len(found) < count:
            line = (await response.content.readline()).decode().rstrip("\n")
            if not line:
                if "data" in current:
                    found.append(current)
                current = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                current[name] = current[name] + "\n" + value if name in current else value
    return found


async def open_stream(api, path, headers=None):
    response = await api.get(path, headers=headers)
    assert response.status == 200 and response.content_type == "text/event-stream"
    await read_until_ready(response)
    return response


async def read_until_ready(response):
    """Skips the stream's opening `retry:` line."""
    async with asyncio.timeout(5):
        while (await response.content.readline()).strip():
            pass


async def test_events_stream_fans_out_to_several_subscribers(api):
    alpha, beta = await project(api.deps, name="alpha"), await project(api.deps, name="beta")
    everything = [await open_stream(api, "/events/stream") for _ in range(3)]
    only_alpha = await open_stream(api, f"/events/stream?project_id={alpha.id}")
    await record(api.deps, "one", project_id=beta.id)
    await record(api.deps, "two", project_id=alpha.id)
    for stream in everything:
        assert [json.loads(event["data"])["event_type"] for event in await read_sse(stream, 2)] == ["one", "two"]
    (event,) = await read_sse(only_alpha, 1)
    assert json.loads(event["data"])["event_type"] == "two" and json.loads(event["data"])["project_name"] == "alpha"
    for stream in [*everything, only_alpha]:
        stream.close()


async def test_events_stream_resumes_after_last_event_id(api):
    row = await project(api.deps)
    first = await record(api.deps, "a", project_id=row.id)
    await record(api.deps, "b", project_id=row.id)
    await record(api.deps, "c", project_id=row.id)
    stream = await open_stream(api, "/events/stream", headers={"Last-Event-ID": str(first)})
    replayed = await read_sse(stream, 2)
    assert [json.loads(event["data"])["event_type"] for event in replayed] == ["b", "c"]
    assert int(replayed[-1]["id"]) == first + 2
    await record(api.deps, "d", project_id=row.id)
    (live,) = await read_sse(stream, 1)
    assert json.loads(live["data"])["event_type"] == "d"
    stream.close()


async def test_stream_needs_auth_and_known_scope(api):
    assert (await api.get("/events/stream", auth=False)).status == 401
    assert (await api.get("/events/stream?project_id=404")).status == 404
    assert (await api.get("/events/stream", headers={"Last-Event-ID": "x"})).status == 400


async def test_websocket_feed_with_several_clients(api):
    row = await project(api.deps)
    sockets = [await api.client.ws_connect("/ws", headers=AUTH) for _ in range(3)]
    scoped = await api.client.ws_connect(f"/ws?project_id={row.id}", headers=AUTH)
    await asyncio.sleep(0.1)
    await record(api.deps, "elsewhere")
    await record(api.deps, "mine", project_id=row.id)
    for socket in sockets:
        received = [json.loads((await socket.receive(timeout=5)).data)["event_type"] for _ in range(2)]
        assert received == ["elsewhere", "mine"]
    assert json.loads((await scoped.receive(timeout=5)).data)["event_type"] == "mine"
    for socket in [*sockets, scoped]:
        await socket.close()
    assert (await api.get("/ws")).status == 400


async def test_websocket_resumes_after(api):
    first = await record(api.deps, "a")
    await record(api.deps, "b")
    socket = await api.client.ws_connect(f"/ws?after={first}", headers=AUTH)
    assert json.loads((await socket.receive(timeout=5)).data)["event_type"] == "b"
    await socket.close()


async def test_idle_subscribers_cost_no_extra_queries(api):
    hub = api.client.app[HUB]
    one = await open_stream(api, "/events/stream")
    polls_before = hub.polls
    await asyncio.sleep(1.0)
    with_one = hub.polls - polls_before
    many = [await open_stream(api, "/events/stream") for _ in range(40)]
    polls_before = hub.polls
    await asyncio.sleep(1.0)
    with_many = hub.polls - polls_before
    assert with_many <= with_one + 2, (with_one, with_many)
    assert len(hub.tables["events"].subscribers) == 41
    for stream in [one, *many]:
        stream.close()


async def test_no_subscriber_no_polling(api):
    hub = api.client.app[HUB]
    await asyncio.sleep(0.3)
    before = hub.polls
    await asyncio.sleep(0.6)
    assert hub.polls == before


async def test_message_streams(api):
    row = await project(api.deps)
    pr = await protocol(api.deps, row)
    on_project = await open_stream(api, f"/projects/{row.id}/messages/stream")
    on_protocol = await open_stream(api, f"/protocols/{pr.id}/messages/stream")
    await api.post(f"/projects/{row.id}/messages", {"body": "to everyone"})
    await api.post(f"/protocols/{pr.id}/messages", {"body": "to the protocol", "type": "FACT"})
    assert [json.loads(e["data"])["body"] for e in await read_sse(on_project, 2)] == ["to everyone",
                                                                                     "to the protocol"]
    assert [json.loads(e["data"])["type"] for e in await read_sse(on_protocol, 1)] == ["FACT"]
    on_project.close()
    on_protocol.close()


async def test_log_stream_sends_the_log_so_far_new_lines_then_done(api):
    runs = api.deps.settings.data_dir.resolve() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    log_path = runs / "live.log"
    log_path.write_text("first\nsecond\n")
    row = await run(api.deps, log_path=str(log_path), status="running")
    streams = [await open_stream(api, f"/codex/runs/{row.run_id}/logs/stream") for _ in range(2)]
    for stream in streams:
        (event,) = await read_sse(stream, 1)
        assert event["event"] == "log" and json.loads(event["data"])["chunk"] == "first\nsecond\n"
    with log_path.open("a") as handle:
        handle.write("third\n")
    for stream in streams:
        (event,) = await read_sse(stream, 1)
        assert json.loads(event["data"])["chunk"] == "third\n" and event["id"] == str(len("first\nsecond\nthird\n"))
    async with api.deps.sessions() as session:
        await session.exec(update(CodexRun).where(CodexRun.run_id == row.run_id).values(status="succeeded"))
        await session.commit()
    for stream in streams:
        (event,) = await read_sse(stream, 1)
        assert event["event"] == "done" and json.loads(event["data"]) == {"run_id": row.run_id, "status": "succeeded"}
        stream.close()


async def test_log_stream_of_a_finished_run_and_resume(api):
    runs = api.deps.settings.data_dir.resolve() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    (runs / "done.log").write_text("a\nb\n")
    row = await run(api.deps, log_path=str(runs / "done.log"), status="failed")
    stream = await open_stream(api, f"/codex/runs/{row.run_id}/logs/stream", headers={"Last-Event-ID": "2"})
    log_event, done = await read_sse(stream, 2)
    assert json.loads(log_event["data"])["chunk"] == "b\n" and json.loads(done["data"])["status"] == "failed"
    assert (await api.get("/codex/runs/nope/logs/stream")).status == 404


async def test_lists_and_feeds_leave_out_token_protected_projects_without_their_token(api):
    guarded = await project(api.deps, name="guarded", secrets={"api_token": "g-secret"})
    open_ = await project(api.deps, name="open")
    for row in (guarded, open_):
        await protocol(api.deps, row, protocol_name=f"{row.name}-work")
        await run(api.deps, project_id=row.id)
    live = await open_stream(api, "/events/stream")
    with_token = await open_stream(api, "/events/stream", headers={"X-Project-Token": "g-secret"})
    await record(api.deps, "secret", project_id=guarded.id)
    await record(api.deps, "public", project_id=open_.id)
    assert [json.loads(event["data"])["event_type"] for event in await read_sse(live, 1)] == ["public"]
    assert [json.loads(event["data"])["event_type"] for event in await read_sse(with_token, 2)] == ["secret", "public"]
    replay = await open_stream(api, "/events/stream", headers={"Last-Event-ID": "0"})
    assert [json.loads(event["data"])["event_type"] for event in await read_sse(replay, 1)] == ["public"]
    for stream in (live, with_token, replay):
        stream.close()
    lists = {"/projects": "name", "/protocols": "protocol_name", "/events": "event_type", "/codex/runs": "project_id"}
    hidden = {"guarded", "guarded-work", "secret", guarded.id}
    for path, field in lists.items():
        shown = [item[field] for item in await (await api.get(path)).json()]
        everything = [item[field] for item in await (await api.get(path, headers={"X-Project-Token": "g-secret"})).json()]
        assert not hidden & set(shown) and hidden & set(everything), (path, shown, everything)
        assert set(shown) < set(everything)
