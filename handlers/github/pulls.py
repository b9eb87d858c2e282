"""Pull requests: merges complete protocols, closes cancel them, pushes move their head."""

from gidgethub import sansio
from gidgethub.routing import Router

from bot.queue import HANDLE_PULL_REQUEST, delivery_job
from handlers.intake import Intake

router = Router()


@router.register("pull_request", action="closed")
@router.register("pull_request", action="synchronize")
@router.register("pull_request", action="reopened")
async def pull_request_changed(event: sansio.Event, intake: Intake) -> None:
    intake.enqueue(delivery_job(HANDLE_PULL_REQUEST, intake.delivery_id))
