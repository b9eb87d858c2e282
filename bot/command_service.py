"""Slash commands, labels and check-run buttons: who asked, may they, and what it does.

Every accepted command gets 👀 and does its work through `bot.protocols`; every refusal gets a
reply that says why and what to do instead, and lands in the audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import git, protocols, render, store, workspace
from bot.commands import COMMANDS, Command, CommandError, help_text, permits, required_permission
from bot.deliveries import load_delivery, read_event
from bot.deps import Deps
from bot.forge import Forge, RepoRef
from bot.forge.events import Actor, Issue
from bot.models import Project, ProtocolRun, utcnow
from bot.projects import ensure_project, forge_of, repo_ref
from bot.protocols import Conflict, NotFound
from bot.queue import Job
from bot.state import Fork, ProtocolState, StepState
from bot.workflow import ENDED_PROTOCOL_STATUSES, ProtocolAction, ProtocolStatus, StepAction, command_of

log = logging.getLogger("agentry.commands")

RATE_WINDOW = timedelta(hours=1)


class Refused(Exception):
    """The command is declined with a ready reply (for example a rate limit)."""

    def __init__(self, reply: str):
        super().__init__(reply)
        self.reply = reply


@dataclass(frozen=True)
class JobOrigin:
    """The job a request runs in: its id, and whether it was taken over from a worker that died."""

    job_id: str
    taken_over: bool

    @classmethod
    def of(cls, ctx: dict) -> JobOrigin:
        return cls(str(ctx.get("job_id", "")), bool(ctx.get("taken_over")))


@dataclass
class Request:
    """One command in its context: who, where, and through which forge to answer."""

    deps: Deps
    session: AsyncSession
    project: Project
    forge: Forge
    repo: RepoRef
    issue: Issue
    actor: Actor
    command: Command
    comment_id: int | None = None
    job: JobOrigin = field(default_factory=lambda: JobOrigin("", False))
    replies: int = 0

    @property
    def prefix(self) -> str:
        return self.deps.settings.command_prefix

    async def reply(self, body: str, *, key: str | None = None) -> None:
        """A comment answering the command, made once however often its job runs: each reply is
        marked with the job (and its number, or `key`), and a job taken over from a dead worker
        looks before it posts."""
        self.replies += 1
        marker = render.reply_marker(f"{self.job.job_id}/{key or self.replies}")
        merge_request = self.issue.is_pull_request
        if self.job.taken_over and await self.forge.find_comment(self.repo, self.issue.number, marker,
                                                                 is_merge_request=merge_request):
            return
        await self.forge.create_comment(self.repo, self.issue.number, f"{body}\n\n{marker}",
                                        is_merge_request=merge_request)


async def answer_comment(deps: Deps, delivery_id: str, index: int, origin: JobOrigin) -> None:
    """The command at `index` in a comment, carried out (or its error answered)."""
    delivery = await load_delivery(deps, delivery_id)
    if delivery is None:
        return
    event = read_event(delivery, "comment")
    command = _command_at(deps, delivery.forge, event, index)
    if command is None or event.author.is_bot:
        return
    async with deps.sessions() as session:
        project = await ensure_project(session, event.repo)
        await session.commit()
        request = Request(deps, session, project, forge_of(deps, project), repo_ref(project), event.issue,
                          event.author, command if isinstance(command, Command) else None, event.comment_id,
                          origin)
        if isinstance(command, CommandError):
            await answer(request, lambda request: _reply_to_error(request, command))
            return
        await answer(request, run_command)


def _command_at(deps: Deps, forge: str, event, index: int) -> Command | CommandError | None:
    """The command the handler saw at `index`, parsed again with the same grammar."""
    commands = deps.settings.grammar(forge).commands_in(event.body, event.old_body)
    return next((command for command in commands if command.index == index), None)


async def _reply_to_error(request: Request, error: CommandError) -> None:
    if not permits(await request.forge.permission(request.repo, request.actor.login), "read"):
        return
    if error.message.startswith("unknown command"):
        body = render.reply_unknown(error.name or "", error.suggestion, help_text(request.prefix),
                                    command_prefix=request.prefix)
    else:
        body = render.reply_error(error.name or "", error.message, error.usage)
    await request.reply(body)


async def run_command(request: Request) -> None:
    """Checks permission, acknowledges, and carries the command out."""
    command = request.command
    required = required_permission(command)
    actual = await request.forge.permission(request.repo, request.actor.login)
    if not permits(actual, required):
        await _deny(request, required, actual)
        return
    if request.comment_id is not None:
        await request.forge.react(request.repo, request.comment_id, "eyes", issue_number=request.issue.number,
                                  is_merge_request=request.issue.is_pull_request)
    _audit(request, "accepted")
    try:
        jobs = await handler_of(command.name)(request)
    except Refused as refusal:
        await request.session.rollback()
        await request.reply(refusal.reply)
        return
    except (Conflict, NotFound) as refusal:
        await request.session.rollback()
        await request.reply(render.reply_conflict(command.name, str(refusal), command_prefix=request.prefix))
        return
    await request.session.commit()
    await request.deps.submit(jobs)


async def answer(request: Request, work: Callable[[Request], Awaitable[None]]) -> None:
    """Does `work` for the person who asked; whatever fails in it, they hear so once (and the job
    fails, for the log and the metrics)."""
    try:
        await work(request)
    except Exception as failure:
        await request.session.rollback()
        await _report_failure(request, failure)
        raise


async def _report_failure(request: Request, failure: Exception) -> None:
    """What failed and what to do next, in one reply that a rerun of the job does not repeat."""
    reason = render.inline_text(f"{type(failure).__name__}: {failure}", 300)
    name = request.command.name if request.command else "the command"
    body = render.reply_error(name, f"agentry could not carry this out ({reason}). {_again(request)} If it keeps "
                              "failing, the service's log has the details.", "")
    try:
        await request.reply(body, key="failed")
    except Exception:
        log.exception("could not tell %s that %s failed", request.actor.login, name)


def _again(request: Request) -> str:
    raw = request.command.raw if request.command else ""
    if raw.startswith("label "):
        return f"Remove the label `{raw.removeprefix('label ')}` and add it again to retry."
    if raw.startswith("check run button"):
        return "Press the button again to retry."
    return f"Type {render.code_span(raw or request.prefix, 200)} again to retry."


async def _deny(request: Request, required: str, actual: str) -> None:
    _audit(request, "denied", reason=f"needs {required}, has {actual}")
    await store.record_event(request.session, "command_denied",
                             f"{request.actor.login} may not run {request.command.name} ({actual})",
                             project_id=request.project.id,
                             meta={"user": request.actor.login, "command": request.command.name,
                                   "required": required, "actual": actual})
    await request.session.commit()
    await request.reply(render.reply_denied(request.actor.login, request.command.name, required, actual,
                                            request.repo.full_name))


def _audit(request: Request, outcome: str, reason: str | None = None) -> None:
    request.deps.audit.write(action=f"command.{request.command.name}", outcome=outcome, actor=request.actor.login,
                path=f"{request.repo.forge}:{request.repo.full_name}#{request.issue.number}",
                ids={"project_id": request.project.id, "comment_id": request.comment_id},
                body={"raw": request.command.raw}, reason=reason)


# Starting work


async def start_protocol(request: Request, kind: str) -> list[Job]:
    existing = await protocols.active_protocol_for_issue(request.session, request.project.id, request.issue.number)
    if existing is not None and existing.status not in ENDED_PROTOCOL_STATUSES:
        if existing.kind == "plan" and existing.status == ProtocolStatus.PLANNED and kind == "run":
            existing.kind = "run"
            return await protocols.apply_protocol_action(request.session, existing, ProtocolAction.START,
                                                         actor=request.actor.login)
        raise Conflict(f"protocol #{existing.id} is already {existing.status} on this issue; "
                       f"use `{request.prefix} status`, or `{request.prefix} cancel` before starting another")
    await _check_rate(request)
    pull = await _pull_request(request)
    protocol = await _create(request, kind, pull=pull)
    if kind == "code":
        await protocols.add_code_step(request.session, protocol, request.command.text)
    if protocol.state.fork:
        return await _await_fork_approval(request, protocol)
    return await protocols.apply_protocol_action(request.session, protocol, ProtocolAction.START,
                                                 actor=request.actor.login)


async def _pull_request(request: Request) -> dict | None:
    if not request.issue.is_pull_request:
        return None
    pull = await request.forge.get_pull_request(request.repo, request.issue.number)
    if pull is None or not pull.get("head_branch"):
        raise NotFound(f"cannot read the branch of pull request #{request.issue.number}")
    if pull.get("state") != "open":
        raise Conflict(f"pull request #{request.issue.number} is {pull.get('state')}")
    return pull


def _on_pull_request(pull: dict | None, repo: RepoRef) -> dict:
    """Where a protocol on a pull request works: the PR's own branch when it lives in this
    repository; for a fork, a branch of ours started from the commit a maintainer approves."""
    if pull is None:
        return {}
    if pull.get("head_repo") == repo.full_name:
        return {"branch": pull["head_branch"], "base_branch": pull.get("base_branch"),
                "state": {"existing_pull": pull["number"]}}
    fork = Fork(**{key: pull.get(key) for key in ("number", "head_repo", "head_sha", "head_ref")}, approved_sha=None)
    return {"base_branch": pull.get("base_branch"), "state": {"fork": fork}}


async def _await_fork_approval(request: Request, protocol: ProtocolRun) -> list[Job]:
    fork = protocol.state.fork or Fork()
    await store.record_event(request.session, "fork_approval_needed", f"pull request from {fork.head_repo}",
                             project_id=protocol.project_id, protocol_run_id=protocol.id, meta=fork.shown())
    await request.reply(
        f"This pull request comes from the fork `{fork.head_repo}`. Agents run its code only after someone "
        f"with write access approves the exact commit: `{request.prefix} approve` approves the current head "
        f"(`{(fork.head_sha or '')[:12]}`); later pushes need a new approval.")
    return [protocols.report(protocol, "fork")]


async def approve_fork(request: Request, protocol: ProtocolRun) -> list[Job]:
    """Pins the fork's current head as the approved start of the protocol's branch, then starts."""
    fork = protocol.state.fork or Fork()
    if not fork.head_ref:
        raise NotFound(f"protocol #{protocol.id} has no fork head to approve; start it again with "
                       f"`{request.prefix} run` on the pull request")
    mirror = await workspace.mirror(request.deps, request.project, await workspace.git_token(request.deps, request.project))
    sha = await git.fetch_ref(mirror, fork.head_ref)
    protocol.state = protocol.state.changed(fork=fork.changed(approved_sha=sha, approved_by=request.actor.login))
    await store.record_event(request.session, "fork_approved", f"{request.actor.login} approved {sha[:12]}",
                             project_id=protocol.project_id, protocol_run_id=protocol.id, meta={"sha": sha})
    return await protocols.apply_protocol_action(request.session, protocol, ProtocolAction.START,
                                                 actor=request.actor.login)


async def _create(request: Request, kind: str, pull: dict | None = None, **extra) -> ProtocolRun:
    options = request.command.options
    defaults = request.project.default_models or {}
    engine = options.get("engine") or defaults.get("engine") or request.deps.settings.default_engine
    model = options.get("model") or defaults.get(kind) or defaults.get("execute") or request.deps.settings.default_model
    policy = {"max_tokens_per_protocol": options["max_tokens"]} if "max_tokens" in options else {}
    description = "\n\n".join(part for part in (request.issue.body, request.command.text) if part)
    target = _on_pull_request(pull, request.repo)
    protocol = await protocols.create_protocol(
        request.session, request.project, title=request.issue.title or f"issue {request.issue.number}", kind=kind,
        description=description, issue_number=request.issue.number, engine=engine, model=model,
        created_by=request.actor.login, policy={**policy, "instructions": request.command.text},
        branch=target.get("branch"), base_branch=target.get("base_branch"), **extra)
    protocol.state = ProtocolState(issue_url=request.issue.url, on_pull_request=request.issue.is_pull_request,
                                   **target.get("state", {}))
    if protocol.state.existing_pull is not None:
        protocol.pr_number, protocol.pr_url = pull["number"], pull.get("url")
    return protocol


async def _check_rate(request: Request) -> None:
    settings = request.deps.settings
    since = utcnow() - RATE_WINDOW
    by_user = await _starts_since(request.session, since, ProtocolRun.created_by == request.actor.login)
    by_repo = await _starts_since(request.session, since, ProtocolRun.project_id == request.project.id)
    for (count, oldest), limit in ((by_user, settings.starts_per_user_per_hour),
                                   (by_repo, settings.starts_per_repo_per_hour)):
        if count >= limit:
            retry_after = int(((oldest.replace(tzinfo=since.tzinfo) if oldest.tzinfo is None else oldest)
                               + RATE_WINDOW - utcnow()).total_seconds()) + 1
            raise Refused(render.reply_rate_limited(request.actor.login, max(retry_after, 1)))


async def _starts_since(session: AsyncSession, since, condition):
    statement = select(func.count(), func.min(ProtocolRun.created_at)).where(
        condition, col(ProtocolRun.created_at) >= since, col(ProtocolRun.kind) != "ask")
    return (await session.exec(statement)).one()


Handler = Callable[[Request], Awaitable[list[Job]]]
HANDLERS: dict[str, Handler] = {}


def handles(name: str) -> Callable[[Handler], Handler]:
    """Registers the handler of the declared command `name` (a `CommandSpec` in `bot.commands`)."""
    spec = COMMANDS[name]

    def register(handler: Handler) -> Handler:
        HANDLERS[spec.name] = handler
        return handler

    return register


@handles("run")
async def cmd_run(request: Request) -> list[Job]:
    if request.command.options.get("no_plan"):
        return await start_protocol(request, "code")
    return await start_protocol(request, "run")


@handles("plan")
async def cmd_plan(request: Request) -> list[Job]:
    return await start_protocol(request, "plan")


@handles("ralph")
async def cmd_ralph(request: Request) -> list[Job]:
    await _check_rate(request)
    protocol = await _create(request, "ralph")
    options = request.command.options
    policy = protocols.ralph_policy(options.get("max_iterations"), options.get("promise"), options.get("feedback", ()))
    await protocols.add_step(request.session, protocol, "ralph", request.command.text, step_type="ralph", policy=policy)
    return await _run_without_plan(request, protocol)


@handles("ask")
async def cmd_ask(request: Request) -> list[Job]:
    protocol = await protocols.active_protocol_for_issue(request.session, request.project.id, request.issue.number,
                                                         kinds=("ask",))
    if protocol is None or protocol.status in (ProtocolStatus.CANCELLED, ProtocolStatus.COMPLETED):
        protocol = await _create(request, "ask")
    steps = await protocols.steps_of(request.session, protocol.id)
    await protocols.add_step(request.session, protocol, f"ask {len(steps) + 1}", request.command.text, step_type="ask",
                           engine=request.command.options.get("engine") or protocol.engine,
                           model=request.command.options.get("model") or protocol.model,
                           state=StepState(asked_by=request.actor.login))
    if protocol.status == ProtocolStatus.PENDING:
        return await _run_without_plan(request, protocol)
    if protocol.status != ProtocolStatus.RUNNING:
        await protocols.set_protocol_status(request.session, protocol, ProtocolAction.RUN_NEXT_STEP,
                                            actor=request.actor.login)
    return await protocols.schedule_next(request.session, protocol)


async def _run_without_plan(request: Request, protocol: ProtocolRun) -> list[Job]:
    """A protocol whose steps the command gave: starting it runs them, with no plan."""
    return await protocols.apply_protocol_action(request.session, protocol, ProtocolAction.START,
                                                 actor=request.actor.login)


# Steering


async def _protocol(request: Request) -> ProtocolRun:
    protocol = await protocols.active_protocol_for_issue(request.session, request.project.id, request.issue.number)
    if protocol is None:
        raise NotFound(f"there is no protocol on this issue yet; start one with `{request.prefix} run`")
    return protocol


def protocol_command(action: ProtocolAction) -> Handler:
    async def run(request: Request) -> list[Job]:
        protocol = await _protocol(request)
        return await protocols.apply_protocol_action(request.session, protocol, action, actor=request.actor.login)

    return run


@handles("stop")
async def cmd_stop(request: Request) -> list[Job]:
    protocol = await _protocol(request)
    return await protocols.stop_protocol(request.session, protocol, now=bool(request.command.options.get("now")),
                                         actor=request.actor.login)


@handles("status")
async def cmd_status(request: Request) -> list[Job]:
    protocol = await _protocol(request)
    return [protocols.report(protocol, "status")]


@handles("retry")
async def cmd_retry(request: Request) -> list[Job]:
    protocol = await _protocol(request)
    if not request.command.args:
        return await protocols.apply_protocol_action(request.session, protocol, ProtocolAction.RETRY_LATEST,
                                                     actor=request.actor.login)
    step = protocols.find_step(await protocols.steps_of(request.session, protocol.id), request.command.args[0],
                               StepAction.RETRY)
    return await protocols.apply_step_action(request.session, protocol, step, StepAction.RETRY,
                                             actor=request.actor.login)


@handles("approve")
async def cmd_approve(request: Request) -> list[Job]:
    protocol = await _protocol(request)
    fork = protocol.state.fork
    if fork and not fork.approved_sha and protocol.status == ProtocolStatus.PENDING:
        return await approve_fork(request, protocol)
    steps = await protocols.steps_of(request.session, protocol.id)
    reference = request.command.args[0] if request.command.args else None
    step = protocols.find_step(steps, reference, StepAction.APPROVE)
    return await protocols.apply_step_action(request.session, protocol, step, StepAction.APPROVE,
                                             actor=request.actor.login)


@handles("qa")
async def cmd_qa(request: Request) -> list[Job]:
    protocol = await _protocol(request)
    steps = await protocols.steps_of(request.session, protocol.id)
    reference = request.command.args[0] if request.command.args else None
    step = protocols.find_step(steps, reference, StepAction.RUN_QA)
    options = request.command.options
    if "engine" in options or "model" in options:
        step.state = step.state.changed(qa_engine=options.get("engine"), qa_model=options.get("model"))
    return await protocols.apply_step_action(request.session, protocol, step, StepAction.RUN_QA,
                                             actor=request.actor.login)


@handles("answer")
async def cmd_answer(request: Request) -> list[Job]:
    protocol = await _protocol(request)
    key, text = request.command.args[0], request.command.text
    open_items = await protocols.open_clarifications(request.session, protocol)
    match = next((item for item in open_items if item.key.lower() == key.lower()), None)
    if match is None:
        keys = ", ".join(f"`{item.key}`" for item in open_items) or "none"
        raise NotFound(f"no open question `{key}`; open questions: {keys}")
    return await protocols.answer_clarification(request.session, protocol, match, text, actor=request.actor.login)


@handles("help")
async def cmd_help(request: Request) -> list[Job]:
    topic = request.command.args[0] if request.command.args else None
    await request.reply(help_text(request.prefix, topic))
    return []


def handler_of(name: str) -> Handler:
    """What carries out the declared command `name`: its protocol action, or the handler registered for it."""
    action = COMMANDS[name].action
    return protocol_command(action) if action is not None else HANDLERS[name]


# Labels and check-run buttons start and steer the same way


async def answer_label(deps: Deps, delivery_id: str, origin: JobOrigin) -> None:
    """A configured label added to an issue starts work as its command would."""
    delivery = await load_delivery(deps, delivery_id)
    if delivery is None:
        return
    labels = deps.settings.labels
    event = read_event(delivery, "label", labels=(labels.run, labels.plan, labels.ralph))
    if event is None:
        return
    name = {labels.run: "run", labels.plan: "plan", labels.ralph: "ralph"}.get(event.label)
    if name is None:
        return
    text = event.issue.body if name == "ralph" else ""
    command = Command(name=name, text=text, args=(), options={}, line=0, index=0, raw=f"label {event.label}")
    async with deps.sessions() as session:
        project = await ensure_project(session, event.repo)
        await session.commit()
        await answer(Request(deps, session, project, forge_of(deps, project), repo_ref(project), event.issue,
                             event.actor, command, job=origin), run_command)


async def answer_button(deps: Deps, delivery_id: str, origin: JobOrigin) -> None:
    """A check-run button (or GitHub's re-run of the check) steers as its command would."""
    delivery = await load_delivery(deps, delivery_id)
    if delivery is None:
        return
    event = read_event(delivery, "check_action")
    async with deps.sessions() as session:
        protocol = await _protocol_of_check_run(session, event)
        if protocol is None or protocol.issue_number is None:
            return
        project = await session.get(Project, protocol.project_id)
        issue = Issue(number=protocol.issue_number, title=protocol.issue_title or "", body="", is_pull_request=False)
        command = Command(name=command_of(event.action), text="", args=(), options={}, line=0, index=0,
                          raw=f"check run button {event.action}")
        await answer(Request(deps, session, project, forge_of(deps, project), repo_ref(project), issue,
                             event.actor, command, job=origin), run_command)


async def _protocol_of_check_run(session: AsyncSession, event) -> ProtocolRun | None:
    if event.external_id and event.external_id.isdigit() and int(event.external_id) < 2**63:
        protocol = await session.get(ProtocolRun, int(event.external_id))
        if protocol is not None:
            return protocol
    statement = select(ProtocolRun).where(ProtocolRun.check_run_id == event.check_run_id)
    return (await session.exec(statement)).first()

