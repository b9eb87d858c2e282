"""Configured labels start the same flows as the commands."""

from gidgethub import sansio
from gidgethub.routing import Router

from bot.forge.events import github_label
from bot.forge.payloads import IssueLabeled, PullRequestLabeled
from bot.queue import HANDLE_LABEL, delivery_job
from handlers.intake import Intake, is_ours_or_a_bot

router = Router()


@router.register("issues", action="labeled")
@router.register("pull_request", action="labeled")
async def labeled(event: sansio.Event, intake: Intake) -> None:
    shape = intake.read(IssueLabeled) if event.event == "issues" else intake.read(PullRequestLabeled)
    label = github_label(shape)
    labels = intake.settings.labels
    if label.label in (labels.run, labels.plan, labels.ralph) and not is_ours_or_a_bot(label.actor):
        intake.enqueue(delivery_job(HANDLE_LABEL, intake.delivery_id))
