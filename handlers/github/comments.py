"""Slash commands in issue and pull request comments."""

from bot.config import Settings
from bot.forge.events import app_login, github_comment
from bot.forge.payloads import IssueCommentPayload
from bot.queue import Job, command_job
from handlers.intake import Router, is_ours_or_a_bot

router = Router()


@router.register("issue_comment", action="created")
@router.register("issue_comment", action="edited")
def comment_commands(settings: Settings, delivery_id: str, shape: IssueCommentPayload) -> list[Job]:
    """One job per command in a new comment, or per command an edit added."""
    comment = github_comment(shape)
    if is_ours_or_a_bot(comment.author, app_login(settings.github_app_slug)):
        return []
    old_body = (comment.old_body or "") if shape.action == "edited" else None
    commands = settings.grammar("github").commands_in(comment.body, old_body)
    return [command_job(delivery_id, comment.comment_id, command.index, command.raw) for command in commands]
