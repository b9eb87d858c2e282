"""Check-run buttons, and CI results on protocol branches."""

from gidgethub import sansio
from gidgethub.routing import Router

from bot.forge.events import UnsupportedEvent, github_check_action
from bot.forge.payloads import CheckRunPayload, StatusPayload
from bot.queue import HANDLE_CHECK_ACTION, HANDLE_CI_RESULT, delivery_job
from handlers.intake import Intake

router = Router()


@router.register("check_run", action="requested_action")
@router.register("check_run", action="rerequested")
async def check_run_action(event: sansio.Event, intake: Intake) -> None:
    try:
        github_check_action(intake.read(CheckRunPayload))
    except UnsupportedEvent:  # a button agentry did not make
        return
    intake.enqueue(delivery_job(HANDLE_CHECK_ACTION, intake.delivery_id))


@router.register("check_suite", action="completed")
@router.register("workflow_run", action="completed")
async def suite_completed(event: sansio.Event, intake: Intake) -> None:
    intake.enqueue(delivery_job(HANDLE_CI_RESULT, intake.delivery_id))


@router.register("status")
async def status_changed(event: sansio.Event, intake: Intake) -> None:
    if intake.read(StatusPayload).state in ("success", "failure", "error"):
        intake.enqueue(delivery_job(HANDLE_CI_RESULT, intake.delivery_id))
