"""What jobs need from a webhook, whichever forge sent it (pure).

Each forge's payload is read into these shapes by one parser per event kind; jobs never read a
raw payload, so GitHub and GitLab differ only here and in the forge clients.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.forge import RepoRef, payloads
from bot.workflow import BUTTONS, RERUN


class UnsupportedEvent(ValueError):
    """The payload is not one of the kinds this parser reads."""


@dataclass(frozen=True)
class Repository:
    ref: RepoRef
    clone_url: str | None
    default_branch: str | None
    repo_id: int | None
    html_url: str | None = None


@dataclass(frozen=True)
class Actor:
    login: str
    is_bot: bool


@dataclass(frozen=True)
class Issue:
    number: int
    title: str
    body: str
    is_pull_request: bool
    url: str | None = None


@dataclass(frozen=True)
class CommentEvent:
    repo: Repository
    issue: Issue
    comment_id: int
    body: str
    old_body: str | None
    author: Actor
    url: str | None = None


@dataclass(frozen=True)
class LabelEvent:
    repo: Repository
    issue: Issue
    label: str
    actor: Actor


@dataclass(frozen=True)
class PullRequestEvent:
    repo: Repository
    number: int
    action: str  # merged | closed | synchronize | reopened
    head_branch: str
    head_sha: str
    head_repo: str | None
    base_branch: str
    url: str | None = None


@dataclass(frozen=True)
class CiEvent:
    repo: Repository
    branch: str | None
    sha: str
    conclusion: str  # success | failure | neutral | cancelled | pending
    name: str
    details_url: str | None = None
    summary: str = ""


@dataclass(frozen=True)
class CheckActionEvent:
    repo: Repository
    check_run_id: int
    action: str  # retry | approve | cancel | rerun
    head_sha: str
    external_id: str | None
    actor: Actor


FAILED_CONCLUSIONS = {"failure", "timed_out", "action_required", "startup_failure", "error"}
PASSED_CONCLUSIONS = {"success"}


def ci_conclusion(value: str | None) -> str:
    if value in PASSED_CONCLUSIONS:
        return "success"
    if value in FAILED_CONCLUSIONS:
        return "failure"
    return value or "pending"


# GitHub


def github_repository(shape: payloads.InRepo) -> Repository:
    repo, installation = shape.repository, shape.installation
    return Repository(
        ref=RepoRef(forge="github", full_name=repo.full_name, installation_id=installation.id if installation else None),
        clone_url=repo.clone_url,
        default_branch=repo.default_branch,
        repo_id=repo.id,
        html_url=repo.html_url,
    )


def app_login(app_slug: str | None) -> str | None:
    """The login a GitHub App acts as (`<slug>[bot]`), whose comments are never commands."""
    return f"{app_slug}[bot]" if app_slug else None


def github_actor(user: payloads.User | None) -> Actor:
    login = user.login if user else ""
    return Actor(login=login, is_bot=bool(user and user.type == "Bot") or login.endswith("[bot]"))


def github_issue(issue: payloads.Issue | payloads.Pull, *, is_pull_request: bool) -> Issue:
    return Issue(number=issue.number, title=issue.title or "", body=issue.body or "",
                 is_pull_request=is_pull_request, url=issue.html_url)


def github_comment(shape: payloads.IssueCommentPayload) -> CommentEvent:
    comment, changes = shape.comment, shape.changes
    edited = shape.action == "edited" and changes is not None and changes.body is not None
    return CommentEvent(
        repo=github_repository(shape),
        issue=github_issue(shape.issue, is_pull_request=shape.issue.pull_request is not None),
        comment_id=comment.id,
        body=comment.body or "",
        old_body=changes.body.previous if edited and changes and changes.body else None,
        author=github_actor(comment.user),
        url=comment.html_url,
    )


def github_label(shape: payloads.IssueLabeled | payloads.PullRequestLabeled) -> LabelEvent:
    if isinstance(shape, payloads.PullRequestLabeled):
        issue = github_issue(shape.pull_request, is_pull_request=True)
    else:
        issue = github_issue(shape.issue, is_pull_request=shape.issue.pull_request is not None)
    return LabelEvent(repo=github_repository(shape), issue=issue, label=shape.label.name,
                      actor=github_actor(shape.sender))


def github_pull_request(shape: payloads.PullRequestPayload) -> PullRequestEvent:
    pull = shape.pull_request
    action = shape.action or ""
    if action == "closed":
        action = "merged" if pull.merged else "closed"
    return PullRequestEvent(
        repo=github_repository(shape),
        number=pull.number,
        action=action,
        head_branch=pull.head.ref,
        head_sha=pull.head.sha,
        head_repo=pull.head.repo.full_name if pull.head.repo else None,
        base_branch=pull.base.ref,
        url=pull.html_url,
    )


def github_ci(shape: payloads.CheckSuitePayload | payloads.WorkflowRunPayload | payloads.StatusPayload) -> CiEvent:
    repo = github_repository(shape)
    if isinstance(shape, payloads.CheckSuitePayload):
        suite = shape.check_suite
        name = f"check suite {(suite.app.name if suite.app else None) or ''}".strip()
        return CiEvent(repo, suite.head_branch, suite.head_sha, ci_conclusion(suite.conclusion), name, suite.url)
    if isinstance(shape, payloads.WorkflowRunPayload):
        run = shape.workflow_run
        return CiEvent(repo, run.head_branch, run.head_sha, ci_conclusion(run.conclusion), run.name or "workflow",
                       run.html_url)
    branches = [branch.name for branch in shape.branches]
    return CiEvent(repo, branches[0] if len(branches) == 1 else None, shape.sha, ci_conclusion(shape.state),
                   shape.context or "status", shape.target_url, shape.description or "")


def github_check_action(shape: payloads.CheckRunPayload) -> CheckActionEvent:
    if shape.action == "rerequested":
        action = RERUN
    else:
        action = shape.requested_action.identifier if shape.requested_action else ""
        if action not in BUTTONS:
            raise UnsupportedEvent(f"check run action {action!r}")
    return CheckActionEvent(
        repo=github_repository(shape),
        check_run_id=shape.check_run.id,
        action=action,
        head_sha=shape.check_run.head_sha,
        external_id=shape.check_run.external_id,
        actor=github_actor(shape.sender),
    )
