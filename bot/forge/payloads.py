"""The shapes of the webhook payloads agentry reads, one per event kind and forge (pure).

A delivery is checked against its shape at intake; one that does not fit is refused there with the
path of its first bad field, so a recorded delivery always reads back into its shape and no job
fails on a missing key or a value of the wrong type. Only the fields agentry reads are declared;
the rest of a payload is kept, unread. Types are strict: a string is never taken for a number.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bot.webhooks import InvalidPayload, check_storable, read_json

S = TypeVar("S", bound="Shape")
M = TypeVar("M", bound=BaseModel)

Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


class Shape(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


# -- GitHub -----------------------------------------------------------------------------------------


class User(Shape):
    login: str = ""
    type: str | None = None


class Repo(Shape):
    full_name: str
    id: Int64 | None = None
    clone_url: str | None = None
    default_branch: str | None = None
    html_url: str | None = None


class Installation(Shape):
    id: Int64


class Envelope(Shape):
    """What every GitHub delivery is read for: its action, repository and installation."""

    action: str | None = None
    repository: Repo | None = None
    installation: Installation | None = None
    sender: User | None = None


class InRepo(Envelope):
    repository: Repo


class Issue(Shape):
    number: Int64
    title: str | None = None
    body: str | None = None
    pull_request: dict[str, Any] | None = None
    html_url: str | None = None


class Comment(Shape):
    id: Int64
    body: str | None = None
    user: User | None = None
    html_url: str | None = None


class BodyChange(Shape):
    previous: str | None = Field(default=None, alias="from")


class CommentChanges(Shape):
    body: BodyChange | None = None


class IssueCommentPayload(InRepo):
    issue: Issue
    comment: Comment
    changes: CommentChanges | None = None


class Label(Shape):
    name: str


class IssueLabeled(InRepo):
    issue: Issue
    label: Label


class HeadRepo(Shape):
    full_name: str


class Head(Shape):
    ref: str
    sha: str
    repo: HeadRepo | None = None


class Base(Shape):
    ref: str


class Pull(Shape):
    number: Int64
    title: str | None = None
    body: str | None = None
    merged: bool | None = None
    head: Head
    base: Base
    html_url: str | None = None


class PullRequestPayload(InRepo):
    pull_request: Pull


class PullRequestLabeled(PullRequestPayload):
    label: Label


class App(Shape):
    name: str | None = None


class CheckSuite(Shape):
    head_branch: str | None = None
    head_sha: str
    conclusion: str | None = None
    app: App | None = None
    url: str | None = None


class CheckSuitePayload(InRepo):
    check_suite: CheckSuite


class WorkflowRun(Shape):
    head_branch: str | None = None
    head_sha: str
    conclusion: str | None = None
    name: str | None = None
    html_url: str | None = None


class WorkflowRunPayload(InRepo):
    workflow_run: WorkflowRun


class StatusBranch(Shape):
    name: str


class StatusPayload(InRepo):
    sha: str
    state: str | None = None
    context: str | None = None
    target_url: str | None = None
    description: str | None = None
    branches: list[StatusBranch] = []


class CheckRun(Shape):
    id: Int64
    head_sha: str
    external_id: str | None = None


class RequestedAction(Shape):
    identifier: str = ""


class CheckRunPayload(InRepo):
    check_run: CheckRun
    requested_action: RequestedAction | None = None


class InstalledRepo(Shape):
    full_name: str
    id: Int64 | None = None


class InstallationPayload(Envelope):
    installation: Installation
    repositories: list[InstalledRepo] | None = None


class InstallationRepositoriesPayload(Envelope):
    installation: Installation
    repositories_added: list[InstalledRepo] = []
    repositories_removed: list[InstalledRepo] = []


GITHUB_SHAPES: dict[tuple[str, str | None], type[Envelope]] = {  # (event, action or None for any)
    ("issue_comment", None): IssueCommentPayload,
    ("issues", "labeled"): IssueLabeled,
    ("pull_request", "labeled"): PullRequestLabeled,
    ("pull_request", None): PullRequestPayload,
    ("check_run", None): CheckRunPayload,
    ("check_suite", None): CheckSuitePayload,
    ("workflow_run", None): WorkflowRunPayload,
    ("status", None): StatusPayload,
    ("installation", None): InstallationPayload,
    ("installation_repositories", None): InstallationRepositoriesPayload,
}
_EVENTS_SHAPED_BY_ACTION = frozenset(event for event, action in GITHUB_SHAPES if action is not None)


def github_shape(event: str, payload: dict[str, Any]) -> Envelope:
    """The payload read into the shape of its event (and action); InvalidPayload names the first bad field."""
    return _read(_github_shape_of(event, payload.get("action")), payload, f"a GitHub {event} event")


def github_shape_from_json(event: str, body: bytes) -> Envelope:
    """`github_shape` of the JSON body `read_json` would read, straight from its text: only what the
    shape declares becomes Python objects. InvalidPayload says what `read_json` or `github_shape` would."""
    action = _action(body) if event in _EVENTS_SHAPED_BY_ACTION else None
    return _read_json(_github_shape_of(event, action), body, f"a GitHub {event} event")


def _github_shape_of(event: str, action: object) -> type[Envelope]:
    """The shape of the event's deliveries with that action (some events have one per action)."""
    key = (event, action if isinstance(action, str) else None)
    return GITHUB_SHAPES.get(key) or GITHUB_SHAPES.get((event, None)) or Envelope


# -- GitLab -----------------------------------------------------------------------------------------


class Project(Shape):
    path_with_namespace: str
    id: Int64 | None = None
    git_http_url: str | None = None
    http_url: str | None = None
    default_branch: str | None = None
    web_url: str | None = None


class GitLabUser(Shape):
    username: str | None = None
    bot: bool | None = None


class Attributes(Shape):
    action: str | None = None


class GitLabEnvelope(Shape):
    """What every GitLab delivery is read for: its action and project."""

    object_kind: str | None = None
    project: Project | None = None
    object_attributes: Attributes | None = None
    user: GitLabUser | None = None


class Noteable(Shape):
    iid: Int64
    title: str | None = None
    description: str | None = None
    url: str | None = None


class NoteAttributes(Attributes):
    id: Int64
    note: str | None = None
    noteable_type: str | None = None
    system: bool | None = None
    url: str | None = None


class NoteChange(Shape):
    previous: str | None = None


class NoteChanges(Shape):
    note: NoteChange | None = None


NOTEABLE_FIELDS = {"Issue": "issue", "MergeRequest": "merge_request"}


class NoteHookPayload(GitLabEnvelope):
    project: Project
    object_attributes: NoteAttributes
    issue: Noteable | None = None
    merge_request: Noteable | None = None
    changes: NoteChanges | None = None

    @model_validator(mode="after")
    def _names_its_noteable(self) -> NoteHookPayload:
        field = NOTEABLE_FIELDS.get(self.object_attributes.noteable_type or "")
        if field is not None and getattr(self, field) is None:
            raise ValueError(f"a note on an {self.object_attributes.noteable_type} carries no {field}")
        return self


class GitLabLabel(Shape):
    title: str


class LabelChange(Shape):
    previous: list[GitLabLabel] | None = None
    current: list[GitLabLabel] | None = None


class ItemChanges(Shape):
    labels: LabelChange | None = None


class IssueAttributes(Attributes, Noteable):
    pass


class Commit(Shape):
    id: str | None = None


class Source(Shape):
    path_with_namespace: str | None = None


class MergeRequestAttributes(IssueAttributes):
    source_branch: str
    target_branch: str
    oldrev: str | None = None
    last_commit: Commit | None = None
    source: Source | None = None


class IssueHookPayload(GitLabEnvelope):
    project: Project
    object_attributes: IssueAttributes
    labels: list[GitLabLabel] | None = None
    changes: ItemChanges | None = None


class MergeRequestHookPayload(IssueHookPayload):
    object_attributes: MergeRequestAttributes


class PipelineAttributes(Attributes):
    id: Int64
    iid: Int64 | None = None
    sha: str
    ref: str | None = None
    tag: bool | None = None
    status: str | None = None
    detailed_status: str | None = None


class Build(Shape):
    name: str | None = None


class PipelineHookPayload(GitLabEnvelope):
    project: Project
    object_attributes: PipelineAttributes
    builds: list[Build] | None = None


GITLAB_SHAPES: dict[str, type[GitLabEnvelope]] = {
    "Note Hook": NoteHookPayload,
    "Issue Hook": IssueHookPayload,
    "Merge Request Hook": MergeRequestHookPayload,
    "Pipeline Hook": PipelineHookPayload,
}


def gitlab_event_kind(event: str) -> str:
    """Confidential issues and notes arrive as "Confidential Issue Hook" and "Confidential Note Hook"."""
    return event.removeprefix("Confidential ")


def gitlab_shape(event: str, payload: dict[str, Any]) -> GitLabEnvelope:
    shape = GITLAB_SHAPES.get(gitlab_event_kind(event), GitLabEnvelope)
    return _read(shape, payload, f"a GitLab {event}")


def gitlab_shape_from_json(event: str, body: bytes) -> GitLabEnvelope:
    """`gitlab_shape` of the JSON body, straight from its text (see `github_shape_from_json`)."""
    return _read_json(GITLAB_SHAPES.get(gitlab_event_kind(event), GitLabEnvelope), body, f"a GitLab {event}")


class _Action(BaseModel):
    action: Any = None


def _action(body: bytes) -> object:
    """The body's top-level `action`; InvalidPayload when the body is no JSON object."""
    return _parsed(_Action, body, "a JSON object").action


def _read(shape: type[S], payload: dict[str, Any], what: str) -> S:
    try:
        return shape.model_validate(payload)
    except ValidationError as exc:
        raise _not_the_shape(exc, what) from None


def _read_json(shape: type[S], body: bytes, what: str) -> S:
    found = _parsed(shape, body, what)
    check_storable(body)
    return found


def _parsed(shape: type[M], body: bytes, what: str) -> M:
    try:
        return shape.model_validate_json(body)
    except ValidationError as exc:
        read_json(body)  # what the database cannot store, or no JSON object at all, is said first
        raise _not_the_shape(exc, what) from None


def _not_the_shape(exc: ValidationError, what: str) -> InvalidPayload:
    first = exc.errors(include_url=False)[0]
    path = ".".join(str(part) for part in first["loc"]) or "the payload"
    return InvalidPayload(f"payload does not have the shape of {what}: {path}: {first['msg']}")
