"""Slash commands in issue and pull request comments."""

from gidgethub import sansio
from gidgethub.routing import Router

from bot.commands import added_commands, parse_comment
from bot.forge.events import CommentEvent, github_comment
from bot.forge.payloads import IssueCommentPayload
from bot.queue import command_job
from handlers.intake import Intake, is_ours_or_a_bot

router = Router()


@router.register("issue_comment", action="created")
async def comment_created(event: sansio.Event, intake: Intake) -> None:
    if (comment := _from_a_person(intake)) is not None:
        _enqueue(intake, comment, parse_comment(comment.body, **_grammar(intake)))


@router.register("issue_comment", action="edited")
async def comment_edited(event: sansio.Event, intake: Intake) -> None:
    if (comment := _from_a_person(intake)) is not None:
        _enqueue(intake, comment, added_commands(comment.old_body or "", comment.body, **_grammar(intake)))


def _from_a_person(intake: Intake) -> CommentEvent | None:
    comment = github_comment(intake.read(IssueCommentPayload))
    return None if is_ours_or_a_bot(comment.author, intake.app_login) else comment


def _grammar(intake: Intake) -> dict:
    return {"prefix": intake.settings.command_prefix, "app_slug": intake.settings.github_app_slug}


def _enqueue(intake: Intake, comment: CommentEvent, commands: list) -> None:
    for command in commands:
        intake.enqueue(command_job(intake.delivery_id, comment.comment_id, command.index, command.raw))
