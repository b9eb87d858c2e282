"""Composition root: `python -m bot serve | worker | migrate`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import socket
import sys
from pathlib import Path

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from bot import db, private_files
from bot.config import ConfigError, Settings
from bot.deps import Deps, open_deps
from bot.logs import configure_logging
from bot.sandbox import make_sandbox
from bot.secretbox import SecretBoxError, seal_legacy_secrets
from bot.web_processes import (
    WebProcesses,
    claim_port,
    fresh_metrics_directory,
    inherited,
    listening_sockets,
    metrics_directory,
    stop_when_main_process_goes,
)

log = logging.getLogger("agentry")
GC_YOUNGEST_THRESHOLD = 20_000  # allocations between collections of the youngest generation (Python's default: 700)
THREAD_SWITCH_SECONDS = 0.0001  # Python's default: 0.005


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"agentry: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    private_files.prepare(settings)
    if args.channel is not None:
        return web_process(settings, args.channel)
    return args.run(settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="agentry: drive AI coding agents from GitHub and GitLab")
    commands = parser.add_subparsers(required=True, metavar="command")
    commands.add_parser("serve", help="the web service (and the embedded worker unless AGENTRY_REDIS_URL is set)").set_defaults(run=serve)
    commands.add_parser("worker", help="a worker process for the Redis queue").set_defaults(run=worker)
    commands.add_parser("migrate", help="apply pending database migrations").set_defaults(run=migrate)
    web_command = commands.add_parser("web", help="one of the web processes `serve` starts beside itself")
    web_command.add_argument("--channel", type=int, required=True, help="this process's end of its socket pair")
    parser.set_defaults(channel=None)
    return parser


def migrate(settings: Settings) -> int:
    db.upgrade(settings.database_url)
    private_files.private_database(settings)
    log.info("database is at the latest migration")
    return 0


def warn_about_the_sandbox(settings: Settings) -> None:
    if settings.sandbox == "none":
        log.warning("AGENTRY_SANDBOX=none: agents run UNSANDBOXED as agentry's own user and can read its secrets, "
                    "database and every repository")
        return
    problem = make_sandbox(settings).problem()
    if problem:
        log.error("the agent sandbox cannot run, so every agent run will fail: %s", problem)


def serve(settings: Settings) -> int:
    if settings.webhook_secret_generated:
        print(f"agentry dev mode: webhook secret for this run: {settings.webhook_secret}", file=sys.stderr, flush=True)
    if not settings.api_token:
        log.warning("AGENTRY_API_TOKEN is not set: the REST API accepts requests without authentication")
    warn_about_the_sandbox(settings)
    count = settings.web_process_count
    try:
        port = claim_port(settings.host, settings.port) if count > 1 else settings.port
        listening = listening_sockets(settings.host, port, shared=count > 1)
    except OSError as exc:  # address in use, not ours, unknown host
        print(f"agentry: cannot listen on {settings.host}:{settings.port} (AGENTRY_HOST, AGENTRY_PORT): "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        web.run_app(build_service(settings, web_processes=count, listening=listening), sock=listening, print=None,
                    access_log=None)
    except SecretBoxError as exc:
        print(f"agentry: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnreachable as exc:
        print(f"agentry: cannot use the database of AGENTRY_DATABASE_URL: {exc}", file=sys.stderr)
        return 2
    return 0


def web_process(settings: Settings, channel: int) -> int:
    """One of the web processes beside `serve`'s (see `bot.web_processes`)."""
    listening = listening_sockets(settings.host, settings.port, shared=True)
    web.run_app(build_web_process(settings, inherited(channel)), sock=listening, print=None, access_log=None)
    return 0


class DatabaseUnreachable(Exception):
    """The database could not be reached or migrated at start-up; the message says why."""


async def build_service(settings: Settings, *, web_processes: int = 1,
                        listening: list[socket.socket] | None = None) -> web.Application:
    """The main web process's application; with `web_processes` > 1 it starts the others, which
    accept on its `listening` sockets."""
    from jobs.worker import embedded_worker

    shared_metrics = fresh_metrics_directory(settings.data_dir) if web_processes > 1 else None
    try:
        if db.is_sqlite(settings.database_url):
            await db.upgrade_in_thread(settings.database_url)
            private_files.private_database(settings)
        deps = await _open_with_sealed_secrets(settings, shared_metrics)
    except (OSError, SQLAlchemyError) as exc:
        raise DatabaseUnreachable(str(exc).splitlines()[0][:300]) from None
    app = _application(deps)
    if settings.embedded_queue:
        app.cleanup_ctx.append(_run_worker(lambda: embedded_worker(deps)))
    if shared_metrics is not None and listening:
        siblings = WebProcesses(web_processes, _sibling_environment(settings, listening, shared_metrics),
                                deps.queue if settings.embedded_queue else None)
        app.cleanup_ctx.append(_running(siblings))
        app.on_shutdown.append(lambda _app: _stopping(siblings))
    port = listening[0].getsockname()[1] if listening else settings.port
    log.info("listening", extra={"host": settings.host, "port": port, "web_processes": web_processes,
                                 "embedded_queue": settings.embedded_queue})
    return app


async def build_web_process(settings: Settings, channel: socket.socket) -> web.Application:
    reader, writer = await asyncio.open_unix_connection(sock=channel)
    deps = await open_deps(settings, relay=writer, shared_metrics=metrics_directory(settings.data_dir))
    app = _application(deps)
    watch = asyncio.create_task(stop_when_main_process_goes(reader, writer))
    app.on_cleanup.append(lambda _app: _cancel(watch))
    return app


def _application(deps: Deps) -> web.Application:
    from handlers.keys import JOB_RUNNER
    from handlers.web import make_app
    from jobs.worker import run_inline

    app = make_app(deps)
    app[JOB_RUNNER] = run_inline(deps)
    app.on_cleanup.append(lambda _app: deps.close())
    settle_garbage_collection()
    settle_thread_switching()
    return app


def _sibling_environment(settings: Settings, listening: list[socket.socket],
                         shared_metrics: os.PathLike[str]) -> dict[str, str]:
    """The environment of the other web processes: this one's, with what it settled at start-up."""
    return {**settings.environment, "AGENTRY_PORT": str(listening[0].getsockname()[1]),
            "AGENTRY_WEBHOOK_SECRET": settings.webhook_secret, "PROMETHEUS_MULTIPROC_DIR": os.fspath(shared_metrics)}


def _running(siblings: WebProcesses):
    async def lifecycle(_app: web.Application):
        siblings.start()
        yield
        await siblings.stop()

    return lifecycle


async def _stopping(siblings: WebProcesses) -> None:
    siblings.stopping()  # before the main process waits on its own requests: none is started again meanwhile


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def settle_garbage_collection() -> None:
    """What start-up made is moved out of the collector's sight, and it runs less often: a webhook's
    payload is thousands of small objects, and at the default threshold a full collection over
    everything the process holds ran every few requests, stalling them all (it was most of the p99)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNGEST_THRESHOLD, 20, 20)


def settle_thread_switching() -> None:
    """The delivery writer's thread gives up the interpreter lock on every SQLite call and, at the
    default interval, waited up to 5 ms to get it back from the event loop: that wait, not the write,
    set the commit latency of a batch under load."""
    sys.setswitchinterval(THREAD_SWITCH_SECONDS)


async def _open_with_sealed_secrets(settings: Settings, shared_metrics: Path | None = None) -> Deps:
    """The dependencies, once any project secret still stored in clear is sealed."""
    deps = await open_deps(settings, shared_metrics=shared_metrics)
    try:
        await seal_legacy_secrets(deps.sessions, deps.secret_box)
    except BaseException:
        await deps.close()
        raise
    return deps


def _run_worker(make_worker):
    """Runs the embedded worker for the life of the app, restarting it (and saying so) if it crashes."""
    current = {}

    async def supervise() -> None:
        while True:
            current["worker"] = make_worker()
            try:
                await current["worker"].main()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the embedded worker stopped; restarting it")
                await asyncio.sleep(1)

    async def lifecycle(_app: web.Application):
        task = asyncio.create_task(supervise())
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await current["worker"].close()

    return lifecycle


def worker(settings: Settings) -> int:
    from jobs.worker import run_resilient_worker

    if not settings.redis_url:
        print("agentry: the worker needs AGENTRY_REDIS_URL; without it `serve` runs the worker in-process", file=sys.stderr)
        return 2
    private_files.private_database(settings)
    warn_about_the_sandbox(settings)
    run_resilient_worker(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
