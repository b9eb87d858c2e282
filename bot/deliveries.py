"""A recorded webhook delivery read back as the normalized event that jobs work with."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from bot import store
from bot.deps import Deps
from bot.forge import events as github_events, gitlab_events, payloads
from bot.models import WebhookDelivery


def read_event(delivery: WebhookDelivery, kind: str, *, labels: Sequence[str] = ()) -> Any:
    """The delivery as the normalized event of `kind` (comment, label, pull_request, ci,
    check_action); `labels` are the configured ones a label event may name. It was checked against
    its shape at intake, so it reads back."""
    if delivery.forge == "gitlab":
        shape: Any = payloads.gitlab_shape(delivery.event, delivery.payload)
        readers: dict[str, Callable[[Any], Any]] = {
            "comment": gitlab_events.gitlab_comment,
            "label": lambda data: gitlab_events.gitlab_label(data, list(labels)),
            "pull_request": gitlab_events.gitlab_merge_request,
            "ci": gitlab_events.gitlab_pipeline,
        }
    else:
        shape = payloads.github_shape(delivery.event, delivery.payload)
        readers = {
            "comment": github_events.github_comment,
            "label": github_events.github_label,
            "pull_request": github_events.github_pull_request,
            "check_action": github_events.github_check_action,
            "ci": github_events.github_ci,
        }
    return readers[kind](shape)


async def load_delivery(deps: Deps, delivery_id: str) -> WebhookDelivery | None:
    async with deps.sessions() as session:
        return await store.get_delivery(session, delivery_id)
