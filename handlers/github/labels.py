"""Configured labels start the same flows as the commands."""

from gidgethub import sansio
from gidgethub.routing import Router

from bot.queue import HANDLE_LABEL, delivery_job
from handlers.intake import Intake, is_bot

router = Router()


@router.register("issues", action="labeled")
@router.register("pull_request", action="labeled")
async def labeled(event: sansio.Event, intake: Intake) -> None:
    label = (event.data.get("label") or {}).get("name")
    labels = intake.settings.labels
    if label in (labels.run, labels.plan, labels.ralph) and not is_bot(event.data.get("sender")):
        intake.enqueue(delivery_job(HANDLE_LABEL, intake.delivery_id))
