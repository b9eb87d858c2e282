"""The GitLab webhook: authenticate, decide the jobs, record the delivery once, answer 2xx fast.

GitLab disables hooks that keep failing, so a client problem is never a 5xx: a bad token is 401,
an unreadable or wrongly shaped payload is 400, everything else is 202 (or 200 for a duplicate).
No GitLab call happens here.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from aiohttp import web

from bot.config import Settings
from bot.deps import Deps
from bot.forge.events import UnsupportedEvent
from bot.forge.gitlab_events import (
    FINISHED_PIPELINE_STATUSES,
    gitlab_actor,
    gitlab_added_labels,
    gitlab_comment,
    gitlab_merge_request,
    is_own_status_pipeline,
    is_system_note,
)
from bot.forge.payloads import (
    GitLabEnvelope,
    IssueHookPayload,
    MergeRequestHookPayload,
    NoteHookPayload,
    PipelineHookPayload,
    gitlab_event_kind,
    gitlab_shape_from_json,
)
from bot.logs import log_context
from bot.models import IncomingDelivery
from bot.queue import (
    HANDLE_CI_RESULT,
    HANDLE_LABEL,
    HANDLE_PULL_REQUEST,
    Job,
    command_job,
    delivery_job,
)
from bot.statuses import DeliveryStatus
from bot.webhooks import InvalidPayload, storable_text
from bot.webhooks_gitlab import (
    GITLAB_MAX_PAYLOAD_BYTES,
    gitlab_delivery_id,
    verify_gitlab_token,
    verify_standard_webhook,
)
from handlers.bodies import TooLarge, read_body
from handlers.intake import Router, answer, is_ours_or_a_bot, refuse
from handlers.keys import DEPS

PATH = "/webhooks/gitlab"
FORGE = "gitlab"


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, view)


async def view(request: web.Request) -> web.Response:
    return await gitlab_webhook(request, request.app[DEPS])


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


async def gitlab_webhook(request: web.Request, deps: Deps) -> web.Response:
    if (rejection := token_problem(deps.settings, request.headers)) is not None:  # before the body is read
        deps.metrics.delivered(FORGE, "rejected")
        return error(401, rejection)
    try:
        body = await read_body(request, GITLAB_MAX_PAYLOAD_BYTES)
    except TooLarge as exc:
        deps.metrics.delivered(FORGE, "invalid")
        return error(413, str(exc))
    rejection = authentication_problem(deps.settings, request.headers, body, now=time.time())
    if rejection is not None:
        deps.metrics.delivered(FORGE, "rejected")
        return error(401, rejection)
    event = request.headers.get("X-Gitlab-Event")
    if not event:
        deps.metrics.delivered(FORGE, "invalid")
        return error(400, "missing X-Gitlab-Event header")
    delivery_id = gitlab_delivery_id(request.headers, body)
    with log_context(delivery_id=delivery_id, event=event):
        try:
            shape = gitlab_shape_from_json(event, body)
        except InvalidPayload as exc:
            await refuse(deps, forge=FORGE, delivery_id=delivery_id, event=event, payload_json=storable_text(body),
                         reason=str(exc))
            return error(400, str(exc))
        kind, action = gitlab_event_kind(event), shape.object_attributes.action if shape.object_attributes else None
        jobs = router.decide(deps.settings, kind, action, delivery_id, shape)
        delivery = delivery_row(event, delivery_id, body.decode(), shape, status=DeliveryStatus.of(jobs))
        return await answer(deps, delivery, jobs)


def token_problem(settings: Settings, headers: Mapping[str, str]) -> str | None:
    """What the headers alone show wrong: a configured secret token missing or not matching."""
    if settings.gitlab_webhook_token and not verify_gitlab_token(settings.gitlab_webhook_token, headers):
        return "missing or invalid X-Gitlab-Token"
    return None


def authentication_problem(
    settings: Settings, headers: Mapping[str, str], body: bytes, *, now: float
) -> str | None:
    """Why the delivery is not proven to come from GitLab, or None when it is.

    The secret token and the signing token are each checked when configured; with neither,
    only dev mode lets deliveries in.
    """
    token, signing_token = settings.gitlab_webhook_token, settings.gitlab_signing_token
    if not token and not signing_token:
        return None if settings.dev_mode else "GitLab webhooks are not configured (set AGENTRY_GITLAB_WEBHOOK_TOKEN)"
    if token and not verify_gitlab_token(token, headers):
        return "missing or invalid X-Gitlab-Token"
    if signing_token and not verify_standard_webhook(signing_token, headers, body, now=now):
        return "missing, stale or invalid webhook-signature"
    return None


def delivery_row(event: str, delivery_id: str, payload_json: str, shape: GitLabEnvelope, *,
                 status: DeliveryStatus) -> IncomingDelivery:
    return IncomingDelivery(
        delivery_id=delivery_id,
        forge=FORGE,
        event=event,
        action=shape.object_attributes.action if shape.object_attributes else None,
        status=status,
        repo=shape.project.path_with_namespace if shape.project else None,
        payload_json=payload_json,
    )


# -- which jobs a delivery asks for ---------------------------------------------------------------

router = Router()


@router.register("Note Hook")
def note_jobs(settings: Settings, delivery_id: str, shape: NoteHookPayload) -> list[Job]:
    """One job per slash command in a new note, or per command an edit added."""
    try:
        comment = gitlab_comment(shape)
    except UnsupportedEvent:
        return []
    if is_ours_or_a_bot(comment.author, settings.gitlab_bot_username) or is_system_note(shape):
        return []
    if shape.object_attributes.action == "update" and comment.old_body is None:
        return []
    commands = settings.grammar("gitlab").commands_in(comment.body, comment.old_body)
    return [command_job(delivery_id, comment.comment_id, command.index, command.raw) for command in commands]


@router.register("Issue Hook")
@router.register("Merge Request Hook")
def label_jobs(settings: Settings, delivery_id: str, shape: IssueHookPayload) -> list[Job]:
    labels = settings.labels
    configured = {labels.run, labels.plan, labels.ralph}
    if is_ours_or_a_bot(gitlab_actor(shape.user), settings.gitlab_bot_username):
        return []
    if not configured.intersection(gitlab_added_labels(shape)):
        return []
    return [delivery_job(HANDLE_LABEL, delivery_id)]


@router.register("Merge Request Hook")
def merge_request_jobs(settings: Settings, delivery_id: str, shape: MergeRequestHookPayload) -> list[Job]:
    """Merged, closed, reopened, or new commits pushed: the protocol behind it hears about it."""
    try:
        gitlab_merge_request(shape)
    except UnsupportedEvent:
        return []
    return [delivery_job(HANDLE_PULL_REQUEST, delivery_id)]


@router.register("Pipeline Hook")
def pipeline_jobs(settings: Settings, delivery_id: str, shape: PipelineHookPayload) -> list[Job]:
    """A finished pipeline, except those made of agentry's own commit statuses."""
    if shape.object_attributes.status not in FINISHED_PIPELINE_STATUSES or is_own_status_pipeline(shape):
        return []
    return [delivery_job(HANDLE_CI_RESULT, delivery_id)]

