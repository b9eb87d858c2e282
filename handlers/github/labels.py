"""Configured labels start the same flows as the commands."""

from bot.config import Settings
from bot.forge.events import github_label
from bot.forge.payloads import IssueLabeled, PullRequestLabeled
from bot.queue import HANDLE_LABEL, Job, delivery_job
from handlers.intake import Router, is_ours_or_a_bot

router = Router()


@router.register("issues", action="labeled")
@router.register("pull_request", action="labeled")
def labeled(settings: Settings, delivery_id: str, shape: IssueLabeled | PullRequestLabeled) -> list[Job]:
    label = github_label(shape)
    labels = settings.labels
    if label.label in (labels.run, labels.plan, labels.ralph) and not is_ours_or_a_bot(label.actor):
        return [delivery_job(HANDLE_LABEL, delivery_id)]
    return []
