"""Pull requests: merges complete protocols, closes cancel them, pushes move their head."""

from bot.config import Settings
from bot.forge.payloads import Envelope
from bot.queue import HANDLE_PULL_REQUEST, Job, delivery_job
from handlers.intake import Router

router = Router()


@router.register("pull_request", action="closed")
@router.register("pull_request", action="synchronize")
@router.register("pull_request", action="reopened")
def pull_request_changed(settings: Settings, delivery_id: str, shape: Envelope) -> list[Job]:
    return [delivery_job(HANDLE_PULL_REQUEST, delivery_id)]
