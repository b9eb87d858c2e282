"""The aiohttp application: webhook intake, health and metrics. No forge call happens in a request."""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from bot import db
from bot.deps import Deps
from bot.forge.payloads import Envelope, github_shape_from_json
from bot.logs import log_context
from bot.metrics import CONTENT_TYPE
from bot.models import IncomingDelivery
from bot.statuses import DeliveryStatus
from bot.webhooks import (
    GITHUB_MAX_PAYLOAD_BYTES,
    InvalidPayload,
    github_json,
    read_json,
    storable_text,
    verify_github_signature,
)
from handlers.api import add_api_routes
from handlers.bodies import TooLarge, add_body_slots, read_body
from handlers.github import router as github_router
from handlers.gitlab import add_routes as add_gitlab_routes
from handlers.intake import answer, refuse
from handlers.keys import DEPS

log = logging.getLogger("agentry.web")

MAX_BODY_BYTES = GITHUB_MAX_PAYLOAD_BYTES + 1024 * 1024


def make_app(deps: Deps) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[measured_with_json_errors])
    app[DEPS] = deps
    add_body_slots(app)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/webhooks/github", github_webhook)
    add_gitlab_routes(app)
    add_api_routes(app)
    return app


def error(status: int, message: str, **extra) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def measured_with_json_errors(request: web.Request, handler) -> web.StreamResponse:
    """Every request counted with its latency, and every error answered in JSON (one middleware, as
    each costs every request its own layer)."""
    started = time.perf_counter()
    status = 500
    try:
        response = await _json_errors(request, handler)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics = request.app[DEPS].metrics
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        metrics.served(request.method, route, status, time.perf_counter() - started)


async def _json_errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return error(413, f"body is larger than {MAX_BODY_BYTES} bytes (GitHub caps payloads at 25 MB)")
    except web.HTTPException as exc:
        if exc.status >= 400 and exc.content_type != "application/json":
            return error(exc.status, exc.reason)
        raise
    except Exception:  # a bug: logged with its traceback, answered in JSON like every other error
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error(500, "internal error; the service log has the details")


async def health(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    checks = {"database": await _check(db.ping(deps.engine)), "queue": await _check(deps.queue.ping()),
              "sandbox": await _sandbox_check(deps)}
    ok = all(value in ("ok", "off") for value in checks.values())
    body: dict = {"status": "ok" if ok else "degraded", "checks": checks}
    if checks["sandbox"] == "off":
        body["warnings"] = [SANDBOX_OFF]
    return web.json_response(body, status=200 if ok else 503)


SANDBOX_OFF = ("AGENTRY_SANDBOX=none: agents run unsandboxed, as agentry's own user, and can read its secrets, "
               "database and every repository")


async def _sandbox_check(deps: Deps) -> str:
    if deps.sandbox.name == "none":
        return "off"
    problem = await asyncio.to_thread(deps.sandbox.problem)  # probes bubblewrap once, then remembers
    return "ok" if problem is None else f"error: {problem}"


async def _check(probe) -> str:
    try:
        await probe
        return "ok"
    except Exception as exc:
        return f"error: {type(exc).__name__}"


async def metrics(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    try:
        if not deps.queue.elsewhere:
            deps.metrics.queue_depth.set(await deps.queue.depth())
    except Exception:
        log.warning("queue depth unavailable")
    return web.Response(body=deps.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})


async def github_webhook(request: web.Request) -> web.Response:
    deps = request.app[DEPS]
    signature = request.headers.get("X-Hub-Signature-256")
    if not signature:  # refused before its body is read
        deps.metrics.delivered("github", "rejected")
        return error(401, "missing X-Hub-Signature-256")
    try:
        body = await read_body(request, GITHUB_MAX_PAYLOAD_BYTES)
    except TooLarge as exc:
        deps.metrics.delivered("github", "invalid")
        return error(413, f"{exc} (GitHub caps payloads at 25 MB)")
    if not verify_github_signature(deps.settings.webhook_secret, body, signature):
        deps.metrics.delivered("github", "rejected")
        return error(401, "invalid X-Hub-Signature-256")
    event_name = request.headers.get("X-GitHub-Event")
    delivery_id = request.headers.get("X-GitHub-Delivery")
    if not event_name or not delivery_id:
        deps.metrics.delivered("github", "invalid")
        return error(400, "missing X-GitHub-Event or X-GitHub-Delivery header")
    with log_context(delivery_id=delivery_id, event=event_name):
        raw = b"{}"
        try:
            raw = github_json(body, request.content_type)
            shape = github_shape_from_json(event_name, raw)
        except InvalidPayload as exc:
            await refuse(deps, forge="github", delivery_id=delivery_id, event=event_name,
                         payload_json=storable_text(raw), reason=str(exc))
            return error(400, str(exc))
        jobs = github_router.decide(deps.settings, event_name, shape.action, delivery_id, shape)
        delivery = _delivery_row(event_name, delivery_id, raw.decode(), shape, status=DeliveryStatus.of(jobs))
        pong = {"status": "pong", "zen": read_json(raw).get("zen")} if event_name == "ping" else {}
        return await answer(deps, delivery, jobs, **pong)


def _delivery_row(event: str, delivery_id: str, payload_json: str, shape: Envelope, *,
                  status: DeliveryStatus) -> IncomingDelivery:
    return IncomingDelivery(
        delivery_id=delivery_id,
        forge="github",
        event=event,
        action=shape.action,
        status=status,
        repo=shape.repository.full_name if shape.repository else None,
        installation_id=shape.installation.id if shape.installation else None,
        payload_json=payload_json,
    )
