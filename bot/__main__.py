"""Composition root: `python -m bot serve | worker | migrate`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from bot import db, private_files
from bot.config import ConfigError, Settings
from bot.deps import Deps, open_deps
from bot.logs import configure_logging
from bot.sandbox import make_sandbox
from bot.secretbox import SecretBoxError, seal_legacy_secrets

log = logging.getLogger("agentry")
GC_YOUNGEST_THRESHOLD = 20_000  # allocations between collections of the youngest generation (Python's default: 700)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ)
    except ConfigError as exc:
        print(f"agentry: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    private_files.prepare(settings)
    return args.run(settings)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="agentry: drive AI coding agents from GitHub and GitLab")
    commands = parser.add_subparsers(required=True, metavar="command")
    commands.add_parser("serve", help="the web service (and the embedded worker unless AGENTRY_REDIS_URL is set)").set_defaults(run=serve)
    commands.add_parser("worker", help="a worker process for the Redis queue").set_defaults(run=worker)
    commands.add_parser("migrate", help="apply pending database migrations").set_defaults(run=migrate)
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
    try:
        web.run_app(build_service(settings), host=settings.host, port=settings.port, print=None, access_log=None)
    except SecretBoxError as exc:
        print(f"agentry: {exc}", file=sys.stderr)
        return 2
    except DatabaseUnreachable as exc:
        print(f"agentry: cannot use the database of AGENTRY_DATABASE_URL: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the listening socket: address in use, not ours, unknown host
        print(f"agentry: cannot listen on {settings.host}:{settings.port} (AGENTRY_HOST, AGENTRY_PORT): "
              f"{exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0


class DatabaseUnreachable(Exception):
    """The database could not be reached or migrated at start-up; the message says why."""


async def build_service(settings: Settings) -> web.Application:
    from handlers.keys import JOB_RUNNER
    from handlers.web import make_app
    from jobs.worker import embedded_worker, run_inline

    try:
        if db.is_sqlite(settings.database_url):
            await db.upgrade_in_thread(settings.database_url)
            private_files.private_database(settings)
        deps = await _open_with_sealed_secrets(settings)
    except (OSError, SQLAlchemyError) as exc:
        raise DatabaseUnreachable(str(exc).splitlines()[0][:300]) from None
    app = make_app(deps)
    app[JOB_RUNNER] = run_inline(deps)
    if settings.embedded_queue:
        app.cleanup_ctx.append(_run_worker(lambda: embedded_worker(deps)))
    app.on_cleanup.append(lambda _app: deps.close())
    settle_garbage_collection()
    log.info("listening", extra={"host": settings.host, "port": settings.port, "embedded_queue": settings.embedded_queue})
    return app


def settle_garbage_collection() -> None:
    """What start-up made is moved out of the collector's sight, and it runs less often: a webhook's
    payload is thousands of small objects, and at the default threshold a full collection over
    everything the process holds ran every few requests, stalling them all (it was most of the p99)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNGEST_THRESHOLD, 20, 20)


async def _open_with_sealed_secrets(settings: Settings) -> Deps:
    """The dependencies, once any project secret still stored in clear is sealed."""
    deps = await open_deps(settings)
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
