"""Installations register repositories as projects, and deactivate them when removed."""

from bot.config import Settings
from bot.forge.payloads import Envelope
from bot.queue import HANDLE_INSTALLATION, Job, delivery_job
from handlers.intake import Router

router = Router()


@router.register("installation")
@router.register("installation_repositories")
def installation_changed(settings: Settings, delivery_id: str, shape: Envelope) -> list[Job]:
    return [delivery_job(HANDLE_INSTALLATION, delivery_id)]
