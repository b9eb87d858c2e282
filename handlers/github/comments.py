"""Slash commands in issue and pull request comments."""

from gidgethub import sansio
from gidgethub.routing import Router

from bot.commands import added_commands, parse_comment
from bot.queue import command_job
from handlers.intake import Intake, is_bot

router = Router()


@router.register("issue_comment", action="created")
async def comment_created(event: sansio.Event, intake: Intake) -> None:
    comment = event.data["comment"]
    if is_bot(comment.get("user"), intake.settings.github_app_slug):
        return
    commands = parse_comment(comment.get("body") or "", **_grammar(intake))
    _enqueue(intake, comment["id"], commands)


@router.register("issue_comment", action="edited")
async def comment_edited(event: sansio.Event, intake: Intake) -> None:
    comment = event.data["comment"]
    if is_bot(comment.get("user"), intake.settings.github_app_slug):
        return
    old_body = event.data.get("changes", {}).get("body", {}).get("from", "")
    commands = added_commands(old_body or "", comment.get("body") or "", **_grammar(intake))
    _enqueue(intake, comment["id"], commands)


def _grammar(intake: Intake) -> dict:
    return {"prefix": intake.settings.command_prefix, "app_slug": intake.settings.github_app_slug}


def _enqueue(intake: Intake, comment_id: int, commands: list) -> None:
    for command in commands:
        intake.enqueue(command_job(intake.delivery_id, comment_id, command.index, command.raw))
