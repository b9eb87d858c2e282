"""What jobs need from a webhook, whichever forge sent it (pure).

Each forge's payload is read into these shapes by one parser per event kind; jobs never read a
raw payload, so GitHub and GitLab differ only here and in the forge clients.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.forge import RepoRef


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


def github_repository(payload: dict) -> Repository:
    repo = payload["repository"]
    installation = payload.get("installation") or {}
    return Repository(
        ref=RepoRef(forge="github", full_name=repo["full_name"], installation_id=installation.get("id")),
        clone_url=repo.get("clone_url"),
        default_branch=repo.get("default_branch"),
        repo_id=repo.get("id"),
        html_url=repo.get("html_url"),
    )


def github_actor(user: dict | None) -> Actor:
    user = user or {}
    login = user.get("login", "")
    return Actor(login=login, is_bot=user.get("type") == "Bot" or login.endswith("[bot]"))


def github_issue(issue: dict) -> Issue:
    return Issue(
        number=issue["number"],
        title=issue.get("title") or "",
        body=issue.get("body") or "",
        is_pull_request="pull_request" in issue,
        url=issue.get("html_url"),
    )


def github_comment(payload: dict) -> CommentEvent:
    comment = payload["comment"]
    changes = payload.get("changes") or {}
    return CommentEvent(
        repo=github_repository(payload),
        issue=github_issue(payload["issue"]),
        comment_id=comment["id"],
        body=comment.get("body") or "",
        old_body=(changes.get("body") or {}).get("from") if payload.get("action") == "edited" else None,
        author=github_actor(comment.get("user")),
        url=comment.get("html_url"),
    )


def github_label(payload: dict) -> LabelEvent:
    item = payload.get("issue") or payload.get("pull_request")
    issue = github_issue(item)
    if "pull_request" in payload:
        issue = Issue(issue.number, issue.title, issue.body, True, issue.url)
    return LabelEvent(
        repo=github_repository(payload),
        issue=issue,
        label=payload["label"]["name"],
        actor=github_actor(payload.get("sender")),
    )


def github_pull_request(payload: dict) -> PullRequestEvent:
    pull = payload["pull_request"]
    action = payload["action"]
    if action == "closed":
        action = "merged" if pull.get("merged") else "closed"
    return PullRequestEvent(
        repo=github_repository(payload),
        number=pull["number"],
        action=action,
        head_branch=pull["head"]["ref"],
        head_sha=pull["head"]["sha"],
        head_repo=((pull["head"].get("repo") or {}).get("full_name")),
        base_branch=pull["base"]["ref"],
        url=pull.get("html_url"),
    )


def github_ci(event: str, payload: dict) -> CiEvent:
    repo = github_repository(payload)
    if event == "check_suite":
        suite = payload["check_suite"]
        return CiEvent(repo, suite.get("head_branch"), suite["head_sha"], ci_conclusion(suite.get("conclusion")),
                       f"check suite {(suite.get('app') or {}).get('name', '')}".strip(), suite.get("url"))
    if event == "workflow_run":
        run = payload["workflow_run"]
        return CiEvent(repo, run.get("head_branch"), run["head_sha"], ci_conclusion(run.get("conclusion")),
                       run.get("name") or "workflow", run.get("html_url"))
    if event == "status":
        branches = [branch["name"] for branch in payload.get("branches") or []]
        return CiEvent(repo, branches[0] if len(branches) == 1 else None, payload["sha"],
                       ci_conclusion(payload.get("state")), payload.get("context") or "status",
                       payload.get("target_url"), payload.get("description") or "")
    raise UnsupportedEvent(event)


CHECK_BUTTONS = {"retry": "retry", "approve": "approve", "cancel": "cancel"}


def github_check_action(payload: dict) -> CheckActionEvent:
    check_run = payload["check_run"]
    if payload["action"] == "rerequested":
        action = "rerun"
    else:
        identifier = (payload.get("requested_action") or {}).get("identifier", "")
        if identifier not in CHECK_BUTTONS:
            raise UnsupportedEvent(f"check run action {identifier!r}")
        action = CHECK_BUTTONS[identifier]
    return CheckActionEvent(
        repo=github_repository(payload),
        check_run_id=check_run["id"],
        action=action,
        head_sha=check_run["head_sha"],
        external_id=check_run.get("external_id"),
        actor=github_actor(payload.get("sender")),
    )
