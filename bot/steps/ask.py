"""A read-only question about the repository, answered on the issue; follow-ups resume the session."""

from __future__ import annotations

from bot import prompts, render, store, workspace
from bot.agents import EngineNotInstalled
from bot.deps import Deps
from bot.models import Project, ProtocolRun, StepRun
from bot.plans import render_prompt
from bot.projects import forge_of, repo_ref
from bot.protocols import steps_of
from bot.steps.agent_run import run_step_agent, step_engine
from bot.steps.outcome import Outcome, failed, from_result
from bot.untrusted import fence
from bot.workflow import StepStatus


async def run_ask(deps: Deps, project: Project, protocol: ProtocolRun, step: StepRun) -> Outcome:
    """A read-only question; a follow-up on the same issue resumes the same agent session."""
    checkout = await workspace.prepare(deps, project, protocol)
    engine, model = step_engine(deps, project, protocol, step)
    session_id = protocol.state.session_id if protocol.state.session_engine == engine else None
    async with deps.sessions() as session:
        earlier = [item for item in await steps_of(session, protocol.id) if item.step_index < step.step_index]
    history = "\n\n".join(f"Q: {item.prompt}\nA: {item.summary or '(no answer)'}" for item in earlier)
    prompt = render_prompt(prompts.template("ask.md"), question=fence(step.prompt or "", "the question"),
                           history=fence(history, "earlier questions and answers") if history else "")
    home = deps.settings.data_dir.resolve() / "homes" / f"protocol-{protocol.id}-{engine}"
    home.mkdir(parents=True, exist_ok=True)
    try:
        result = await run_step_agent(deps, project, protocol, step, "ask", engine=engine, model=model, prompt=prompt,
                                      cwd=checkout.path, kind="ask", read_only=True, session_id=session_id,
                                      home_dir=home)
    except EngineNotInstalled as exc:
        return failed(str(exc))
    outcome = from_result(result)
    if outcome.ok and protocol.issue_number is not None:
        note = "continues the earlier session" if session_id else None
        await forge_of(deps, project).create_comment(
            repo_ref(project), protocol.issue_number,
            render.reply_answer(step.prompt or "", result.final_message, engine=engine, session_note=note),
            is_merge_request=protocol.state.on_pull_request)
        await _remember_session(deps, protocol.id, engine, result.session_id)
    outcome.settle_as = StepStatus.COMPLETED
    return outcome


async def _remember_session(deps: Deps, protocol_id: int, engine: str, session_id: str | None) -> None:
    if not session_id:
        return
    async with deps.transaction() as session:
        protocol = await store.row(session, ProtocolRun, protocol_id)
        protocol.state = protocol.state.changed(session_id=session_id, session_engine=engine)
        session.add(protocol)
