"""Which agent engines this machine has, their versions, and the runs each is executing now."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web
from sqlmodel import col, select

from bot.agents import engine_versions
from bot.models import CodexRun
from bot.runs import engine_config
from bot.statuses import RunStatus
from handlers.api import answers, resources
from handlers.api.routing import Route, deps_of, json_response
from handlers.keys import DEPS

PROBE_TTL_SECONDS = 60.0
RUNNING_LIMIT = 200
PROBES = web.AppKey("api_engine_probes", dict)


async def probed_engines(app: web.Application) -> list[dict]:
    """`<engine> --version` for every engine, at most once a minute (the probe takes up to 5 s)."""
    cache = app[PROBES]
    if cache.get("at", 0) + PROBE_TTL_SECONDS < time.monotonic():
        async with cache["lock"]:
            if cache.get("at", 0) + PROBE_TTL_SECONDS < time.monotonic():
                config = engine_config(app[DEPS])
                cache["engines"] = await asyncio.to_thread(engine_versions, config)
                cache["at"] = time.monotonic()
    return cache["engines"]


async def running_by_engine(request: web.Request) -> dict[str, list[dict]]:
    statement = (select(CodexRun).where(CodexRun.status == RunStatus.RUNNING)
                 .order_by(col(CodexRun.created_at).desc()).limit(RUNNING_LIMIT))
    async with deps_of(request).sessions() as session:
        runs = (await session.exec(statement)).all()
    grouped: dict[str, list[dict]] = {}
    for run in runs:
        grouped.setdefault(run.engine or "", []).append(resources.CodexRun.of(run))
    return grouped


async def list_agents(request: web.Request) -> web.Response:
    engines, running = await asyncio.gather(probed_engines(request.app), running_by_engine(request))
    return json_response([resources.Agent.of(**engine, running=running.get(engine["engine"], [])) for engine in engines])


def setup_probes(app: web.Application) -> None:
    app[PROBES] = {"lock": asyncio.Lock()}


ROUTES = [
    Route("GET", "/agents", list_agents, "Agent engines: installed or not, version, runs executing now", "agents",
          {200: answers.ok_list("Agent")[200]}),
]
