"""Keys of what the aiohttp application holds, shared by the web handlers and the REST API."""

from __future__ import annotations

from aiohttp import web

from bot.deps import Deps

DEPS = web.AppKey("deps", Deps)

# Runs one job in this process, for `inline` requests: `async def run(job: Job) -> None`. Set by the
# composition root (which may import the worker's functions); without it inline requests are queued.
JOB_RUNNER = web.AppKey("job_runner", object)
