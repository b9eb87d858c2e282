"""Installations register repositories as projects, and deactivate them when removed."""

from gidgethub import sansio
from gidgethub.routing import Router

from bot.queue import HANDLE_INSTALLATION, delivery_job
from handlers.intake import Intake

router = Router()


@router.register("installation")
@router.register("installation_repositories")
async def installation_changed(event: sansio.Event, intake: Intake) -> None:
    intake.enqueue(delivery_job(HANDLE_INSTALLATION, intake.delivery_id))
