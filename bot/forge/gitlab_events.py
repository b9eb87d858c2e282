"""GitLab webhook payloads read into the forge-neutral events of :mod:`bot.forge.events` (pure).

GitLab numbers issues and merge requests per project with ``iid``: that is ``Issue.number`` and
``PullRequestEvent.number``. A merge request is ``is_pull_request=True``.
"""

from __future__ import annotations

import re

from bot.forge import RepoRef, payloads
from bot.forge.events import (
    Actor,
    CiEvent,
    CommentEvent,
    Issue,
    LabelEvent,
    PullRequestEvent,
    Repository,
    UnsupportedEvent,
)

MERGE_REQUEST_ACTIONS = {"merge": "merged", "close": "closed", "reopen": "reopened"}
PIPELINE_CONCLUSIONS = {
    "success": "success",
    "failed": "failure",
    "canceled": "cancelled",
    "skipped": "neutral",
}
FINISHED_PIPELINE_STATUSES = frozenset(PIPELINE_CONCLUSIONS)
OWN_STATUS_PREFIX = "agentry/"

# Project and group access tokens act as users named project_<id>_bot_<hash> / group_<id>_bot_…;
# service accounts as service_account_…; GitLab's own helpers end in -bot (support-bot, alert-bot).
BOT_USERNAME = re.compile(
    r"^(project|group)_\d+_bot(_\w+)?$|^service_account_|[_-]bot$|\[bot\]$", re.IGNORECASE
)


def gitlab_repository(shape: payloads.GitLabEnvelope) -> Repository:
    project = shape.project
    if project is None:
        raise UnsupportedEvent("a delivery about no project")
    return Repository(
        ref=RepoRef(forge="gitlab", full_name=project.path_with_namespace, project_id=project.id),
        clone_url=project.git_http_url or project.http_url,
        default_branch=project.default_branch,
        repo_id=project.id,
        html_url=project.web_url,
    )


def gitlab_actor(user: payloads.GitLabUser | None) -> Actor:
    """The acting user; anything that looks like a bot (or no user at all) counts as one."""
    username = (user.username if user else None) or ""
    is_bot = bool(user and user.bot) or not username or bool(BOT_USERNAME.search(username))
    return Actor(login=username, is_bot=is_bot)


def gitlab_issue(item: payloads.Noteable, *, is_merge_request: bool) -> Issue:
    return Issue(number=item.iid, title=item.title or "", body=item.description or "",
                 is_pull_request=is_merge_request, url=item.url)


def gitlab_comment(shape: payloads.NoteHookPayload) -> CommentEvent:
    """A Note Hook on an issue or a merge request (notes on commits and snippets are unsupported)."""
    note = shape.object_attributes
    field = payloads.NOTEABLE_FIELDS.get(note.noteable_type or "")
    item = getattr(shape, field) if field else None
    if item is None:
        raise UnsupportedEvent(f"note on a {note.noteable_type!r}")
    return CommentEvent(
        repo=gitlab_repository(shape),
        issue=gitlab_issue(item, is_merge_request=note.noteable_type == "MergeRequest"),
        comment_id=note.id,
        body=note.note or "",
        old_body=gitlab_old_note(shape),
        author=gitlab_actor(shape.user),
        url=note.url,
    )


def gitlab_old_note(shape: payloads.NoteHookPayload) -> str | None:
    """The body before an edit, when GitLab says what it was (``changes.note.previous``)."""
    if shape.object_attributes.action != "update" or shape.changes is None or shape.changes.note is None:
        return None
    return shape.changes.note.previous


def is_system_note(shape: payloads.NoteHookPayload) -> bool:
    return bool(shape.object_attributes.system)


def _titles(labels: list[payloads.GitLabLabel] | None) -> list[str]:
    return [label.title for label in labels or []]


def gitlab_added_labels(shape: payloads.IssueHookPayload) -> list[str]:
    """Labels an Issue or Merge Request Hook added: ``changes.labels`` current minus previous.

    An issue or merge request opened with labels may carry no label change; then all its labels
    were just added.
    """
    change = shape.changes.labels if shape.changes else None
    if change is None:
        return _titles(shape.labels) if shape.object_attributes.action == "open" else []
    previous = set(_titles(change.previous))
    return [title for title in _titles(change.current) if title not in previous]


def gitlab_label_event(shape: payloads.IssueHookPayload, label: str) -> LabelEvent:
    return LabelEvent(
        repo=gitlab_repository(shape),
        issue=gitlab_issue(shape.object_attributes,
                           is_merge_request=isinstance(shape, payloads.MergeRequestHookPayload)),
        label=label,
        actor=gitlab_actor(shape.user),
    )


def gitlab_label(shape: payloads.IssueHookPayload, names: tuple[str, ...] | list[str] | set[str]) -> LabelEvent | None:
    """The event for the first added label among ``names``, or None."""
    label = next((title for title in gitlab_added_labels(shape) if title in names), None)
    return None if label is None else gitlab_label_event(shape, label)


def merge_request_action(shape: payloads.MergeRequestHookPayload) -> str:
    """``merged``, ``closed``, ``reopened`` or ``synchronize`` (an update that pushed commits)."""
    attributes = shape.object_attributes
    if attributes.action in MERGE_REQUEST_ACTIONS:
        return MERGE_REQUEST_ACTIONS[attributes.action]
    if attributes.action == "update" and attributes.oldrev:
        return "synchronize"
    raise UnsupportedEvent(f"merge request action {attributes.action!r}")


def gitlab_merge_request(shape: payloads.MergeRequestHookPayload) -> PullRequestEvent:
    attributes = shape.object_attributes
    return PullRequestEvent(
        repo=gitlab_repository(shape),
        number=attributes.iid,
        action=merge_request_action(shape),
        head_branch=attributes.source_branch,
        head_sha=(attributes.last_commit.id if attributes.last_commit else None) or "",
        head_repo=attributes.source.path_with_namespace if attributes.source else None,
        base_branch=attributes.target_branch,
        url=attributes.url,
    )


def pipeline_conclusion(status: str | None) -> str:
    """GitLab's pipeline status in GitHub's terms; every unfinished status is ``pending``."""
    return PIPELINE_CONCLUSIONS.get(status or "", "pending")


def gitlab_pipeline(shape: payloads.PipelineHookPayload) -> CiEvent:
    pipeline = shape.object_attributes
    web_url = shape.project.web_url
    return CiEvent(
        repo=gitlab_repository(shape),
        branch=None if pipeline.tag else pipeline.ref,
        sha=pipeline.sha,
        conclusion=pipeline_conclusion(pipeline.status),
        name=f"pipeline #{pipeline.iid or pipeline.id}",
        details_url=f"{web_url}/-/pipelines/{pipeline.id}" if web_url else None,
        summary=pipeline.detailed_status or pipeline.status or "",
    )


def is_own_status_pipeline(shape: payloads.PipelineHookPayload) -> bool:
    """A pipeline made only of agentry's own commit statuses (posting a status creates one)."""
    builds = shape.builds or []
    return bool(builds) and all((build.name or "").startswith(OWN_STATUS_PREFIX) for build in builds)
