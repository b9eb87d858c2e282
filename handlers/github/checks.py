"""Check-run buttons, and CI results on protocol branches."""

from bot.config import Settings
from bot.forge.events import UnsupportedEvent, github_check_action
from bot.forge.payloads import CheckRunPayload, Envelope, StatusPayload
from bot.queue import HANDLE_CHECK_ACTION, HANDLE_CI_RESULT, Job, delivery_job
from handlers.intake import Router

router = Router()


@router.register("check_run", action="requested_action")
@router.register("check_run", action="rerequested")
def check_run_action(settings: Settings, delivery_id: str, shape: CheckRunPayload) -> list[Job]:
    try:
        github_check_action(shape)
    except UnsupportedEvent:  # a button agentry did not make
        return []
    return [delivery_job(HANDLE_CHECK_ACTION, delivery_id)]


@router.register("check_suite", action="completed")
@router.register("workflow_run", action="completed")
def suite_completed(settings: Settings, delivery_id: str, shape: Envelope) -> list[Job]:
    return [delivery_job(HANDLE_CI_RESULT, delivery_id)]


@router.register("status")
def status_changed(settings: Settings, delivery_id: str, shape: StatusPayload) -> list[Job]:
    return [delivery_job(HANDLE_CI_RESULT, delivery_id)] if shape.state in ("success", "failure", "error") else []
