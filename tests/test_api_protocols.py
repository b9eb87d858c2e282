"""Protocol runs, their actions, steps and step actions, CodeMachine imports, over HTTP."""

import json

import pytest

from tests.api_support import add, project, protocol, steps


async def test_create_list_and_read_protocols(api):
    row = await project(api.deps)
    response = await api.post(f"/projects/{row.id}/protocols", {"protocol_name": "Add retries",
                                                                "template_config": {"a": 1}})
    created = await response.json()
    assert response.status == 200 and created["status"] == "pending" and created["template_config"] == {"a": 1}
    listed = await (await api.get(f"/projects/{row.id}/protocols")).json()
    assert [item["id"] for item in listed] == [created["id"]]
    assert (await (await api.get(f"/protocols/{created['id']}")).json())["branch"].startswith("agent/")
    assert (await api.get("/protocols/404")).status == 404
    assert (await api.post("/projects/404/protocols", {"protocol_name": "x"})).status == 404
    bad = await api.post(f"/projects/{row.id}/protocols", {"protocol_name": "x", "status": "running"})
    assert bad.status == 400 and "status" in (await bad.json())["fields"]
    assert (await api.post(f"/projects/{row.id}/protocols", {"status": "bogus"})).status == 400


async def test_start_queues_planning_and_refuses_twice(api):
    row = await project(api.deps)
    run = await protocol(api.deps, row)
    response = await api.post(f"/protocols/{run.id}/actions/start")
    body = await response.json()
    assert response.status == 200 and body["job"]["job_type"] == "plan_protocol_job"
    again = await api.post(f"/protocols/{run.id}/actions/start")
    assert again.status == 409 and "planning" in (await again.json())["error"]
    assert (await api.post("/protocols/404/actions/start")).status == 404
    assert (await api.post(f"/protocols/{run.id}/actions/start", auth=False)).status == 401


async def test_pause_resume_cancel(api):
    row = await project(api.deps)
    run = await protocol(api.deps, row, status="running")
    await steps(api.deps, run, "completed", "pending")
    assert (await api.post(f"/protocols/{run.id}/actions/resume")).status == 409
    paused = await api.post(f"/protocols/{run.id}/actions/pause")
    assert (await paused.json())["status"] == "paused"
    resumed = await api.post(f"/protocols/{run.id}/actions/resume")
    assert (await resumed.json())["status"] == "running"
    cancelled = await api.post(f"/protocols/{run.id}/actions/cancel")
    assert (await cancelled.json())["status"] == "cancelled"
    again = await api.post(f"/protocols/{run.id}/actions/cancel")
    assert again.status == 200 and (await again.json())["status"] == "cancelled"
    assert (await api.post(f"/protocols/{run.id}/actions/pause")).status == 409
    listed = await (await api.get(f"/protocols/{run.id}/steps")).json()
    assert [step["status"] for step in listed] == ["completed", "cancelled"]


async def test_completed_protocol_cannot_be_cancelled(api):
    run = await protocol(api.deps, await project(api.deps), status="completed")
    assert (await api.post(f"/protocols/{run.id}/actions/cancel")).status == 409


async def test_run_next_step_and_retry_latest(api):
    row = await project(api.deps)
    run = await protocol(api.deps, row, status="planned")
    assert (await api.post(f"/protocols/{run.id}/actions/run_next_step")).status == 404
    await steps(api.deps, run, "pending", "pending")
    body = await (await api.post(f"/protocols/{run.id}/actions/run_next_step")).json()
    assert body["job"]["job_type"] == "execute_step_job"
    assert (await api.post(f"/protocols/{run.id}/actions/retry_latest")).status == 404
    blocked = await protocol(api.deps, row, status="blocked")
    await steps(api.deps, blocked, "completed", "failed")
    body = await (await api.post(f"/protocols/{blocked.id}/actions/retry_latest")).json()
    assert body["job"]["job_type"] == "execute_step_job"
    assert (await (await api.get(f"/protocols/{blocked.id}")).json())["status"] == "running"
    done = await protocol(api.deps, row, status="completed")
    await steps(api.deps, done, "failed")
    assert (await api.post(f"/protocols/{done.id}/actions/retry_latest")).status == 409


async def test_retry_latest_while_a_step_is_still_running_is_409_saying_so(api):
    row = await project(api.deps)
    run = await protocol(api.deps, row, status="running")
    await steps(api.deps, run, "completed", "running", "pending")
    response = await api.post(f"/protocols/{run.id}/actions/retry_latest")
    assert response.status == 409 and "still running (step 2)" in (await response.json())["error"]


async def test_open_pr(api):
    row = await project(api.deps)
    run = await protocol(api.deps, row, status="running")
    body = await (await api.post(f"/protocols/{run.id}/actions/open_pr")).json()
    assert body["job"]["job_type"] == "open_pr_job"
    pending = await protocol(api.deps, row)
    assert (await api.post(f"/protocols/{pending.id}/actions/open_pr")).status == 409


async def test_steps_create_list_read(api):
    run = await protocol(api.deps, await project(api.deps))
    body = {"step_index": 0, "step_name": "build", "step_type": "code", "policy": [{"behavior": "loop"}]}
    response = await api.post(f"/protocols/{run.id}/steps", body)
    created = await response.json()
    assert response.status == 200 and created["policy"] == {"codemachine": [{"behavior": "loop"}]}
    assert (await api.post(f"/protocols/{run.id}/steps", body)).status == 409
    assert (await api.post(f"/protocols/{run.id}/steps", {**body, "step_index": -1})).status == 400
    assert (await api.post("/protocols/404/steps", body)).status == 404
    assert (await (await api.get(f"/steps/{created['id']}")).json())["step_name"] == "build"
    assert (await api.get("/steps/404")).status == 404
    assert len(await (await api.get(f"/protocols/{run.id}/steps")).json()) == 1


async def test_step_actions(api):
    run = await protocol(api.deps, await project(api.deps), status="running")
    pending, failed, needs_qa, completed = await steps(api.deps, run, "pending", "failed", "needs_qa", "completed")
    body = await (await api.post(f"/steps/{pending.id}/actions/run")).json()
    assert body["job"]["job_type"] == "execute_step_job"
    assert (await api.post(f"/steps/{completed.id}/actions/run")).status == 409
    body = await (await api.post(f"/steps/{needs_qa.id}/actions/run_qa")).json()
    assert body["job"]["job_type"] == "run_quality_job"
    assert (await api.post(f"/steps/{completed.id}/actions/run_qa")).status == 409
    approved = await (await api.post(f"/steps/{failed.id}/actions/approve")).json()
    assert approved["status"] == "completed"
    assert (await api.post(f"/steps/{pending.id}/actions/approve")).status == 409
    assert (await api.post("/steps/404/actions/run")).status == 404


@pytest.mark.parametrize("status", ["pending", "planned", "paused"])
async def test_running_a_step_of_a_protocol_that_is_not_running_is_409_not_enqueued(api, status):
    run = await protocol(api.deps, await project(api.deps), status=status)
    [pending] = await steps(api.deps, run, "pending")
    response = await api.post(f"/steps/{pending.id}/actions/run")
    assert response.status == 409 and f"the protocol is {status}" in (await response.json())["error"]
    assert (await (await api.get(f"/steps/{pending.id}")).json())["status"] == "pending"


CODEMACHINE_AGENTS = """
// the workflow's agents
const path = require('node:path');
const prompts = path.join(__dirname, '..', 'prompts');
module.exports = [
  { id: 'plan', name: 'Planner', promptPath: path.join(prompts, 'plan.md'), moduleId: 'loop-check', },
  { id: 'build', promptPath: "prompts/build.md", engineId: 'claude', model: 'sonnet' },
  { id: 'review', promptPath: 'prompts/review.md', moduleId: ['retry-build', 'handoff'] },
];
"""
CODEMACHINE_MODULES = """export default [
  { "id": "loop-check", "behavior": { "type": "loop", "action": "stepBack", "maxIterations": 2 } },
  { "id": "retry-build", "behavior": { "type": "loop", "stepBack": 1, "maxIterations": 5 } },
  { "id": "handoff", "behavior": { "type": "trigger", "triggerAgentId": "build" } }
];"""


def codemachine_workspace(root):
    config = root / ".codemachine" / "config"
    config.mkdir(parents=True)
    (root / ".codemachine" / "prompts").mkdir()
    for name in ("plan", "build", "review"):
        (root / ".codemachine" / "prompts" / f"{name}.md").write_text(f"{name} prompt")
    (config / "main.agents.js").write_text(CODEMACHINE_AGENTS)
    (config / "modules.js").write_text(CODEMACHINE_MODULES)
    (root / ".codemachine" / "template.json").write_text(json.dumps({"template": "spec", "version": "0.0.1"}))
    return root


async def test_codemachine_import_inline(api, tmp_path):
    workspace = codemachine_workspace(tmp_path / "ws")
    row = await project(api.deps, local_path=str(tmp_path))
    response = await api.post(f"/projects/{row.id}/codemachine/import",
                              {"protocol_name": "cm", "workspace_path": str(workspace)})
    body = await response.json()
    assert response.status == 200 and body["job"] is None
    assert body["protocol_run"]["status"] == "planned"
    assert body["protocol_run"]["template_source"] == {"template": "spec", "version": "0.0.1"}
    listed = await (await api.get(f"/protocols/{body['protocol_run']['id']}/steps")).json()
    assert [step["step_name"] for step in listed] == ["00-plan", "01-build", "02-review"]
    assert listed[0]["prompt"] == "plan prompt" and listed[1]["engine_id"] == "claude"
    assert listed[2]["policy"]["loop"] == {"back_to": "01-build", "max_iterations": 5, "when": "qa_fail"}
    assert listed[2]["policy"]["trigger"] == {"step": "01-build", "when": "completed"}
    assert listed[0]["policy"]["loop"]["back_to"] == "00-plan"
    assert listed[1]["depends_on"] == ["00-plan"]


async def test_codemachine_import_enqueued_and_refusals(api, tmp_path):
    workspace = codemachine_workspace(tmp_path / "ws")
    row = await project(api.deps, local_path=str(tmp_path))
    body = await (await api.post(f"/projects/{row.id}/codemachine/import",
                                 {"protocol_name": "cm", "workspace_path": str(workspace), "enqueue": True})).json()
    assert body["job"]["job_type"] == "codemachine_import_job" and body["protocol_run"]["status"] == "planning"
    outside = await api.post(f"/projects/{row.id}/codemachine/import",
                             {"protocol_name": "cm", "workspace_path": "/etc"})
    assert outside.status == 400 and "workspace_path" in (await outside.json())["fields"]
    (workspace / ".codemachine" / "config" / "main.agents.js").write_text("module.exports = [ { id: 'x' } ]")
    broken = await api.post(f"/projects/{row.id}/codemachine/import",
                            {"protocol_name": "cm", "workspace_path": str(workspace)})
    assert broken.status == 400 and "promptPath" in (await broken.json())["error"]
    listed = await (await api.get(f"/projects/{row.id}/protocols")).json()
    assert len(listed) == 1  # the failed import left nothing behind


@pytest.mark.parametrize("prompt_path", ["../../../etc/passwd", "/etc/passwd"])
async def test_codemachine_prompts_stay_inside_the_workspace(api, tmp_path, prompt_path):
    workspace = codemachine_workspace(tmp_path / "ws")
    (workspace / ".codemachine" / "config" / "main.agents.js").write_text(
        json.dumps([{"id": "x", "promptPath": prompt_path}]))
    row = await project(api.deps, local_path=str(tmp_path))
    response = await api.post(f"/projects/{row.id}/codemachine/import",
                              {"protocol_name": "cm", "workspace_path": str(workspace)})
    assert response.status == 400 and "outside the workspace" in (await response.json())["error"]


async def test_stop_winds_down_at_once_when_nothing_runs(api):
    row = await project(api.deps)
    run = await protocol(api.deps, row, status="blocked")
    await steps(api.deps, run, "completed", "failed", "pending")
    response = await api.post(f"/protocols/{run.id}/actions/stop")
    body = await response.json()
    assert response.status == 200 and body["status"] == "completed"
    assert body["runtime_state"]["completion_reason"] == "manual_stop" and body["runtime_state"]["stop_requested_by"]
    listed = await (await api.get(f"/protocols/{run.id}/steps")).json()
    assert [step["status"] for step in listed] == ["completed", "cancelled", "cancelled"]
    again = await api.post(f"/protocols/{run.id}/actions/stop")
    assert again.status == 409 and "completed" in (await again.json())["error"]
    untouched = await protocol(api.deps, row, status="planned")
    await steps(api.deps, untouched, "pending")
    body = await (await api.post(f"/protocols/{untouched.id}/actions/stop", {"now": True})).json()
    assert (body["status"], body["runtime_state"]["completion_reason"]) == ("cancelled", "manual_stop")
    bad = await api.post(f"/protocols/{untouched.id}/actions/stop", {"now": "soon"})
    assert bad.status == 400 and "now" in (await bad.json())["fields"]


async def test_stop_waits_for_the_running_step(api):
    row = await project(api.deps)
    run = await protocol(api.deps, row, status="running")
    await steps(api.deps, run, "completed", "running", "pending")
    body = await (await api.post(f"/protocols/{run.id}/actions/stop")).json()
    assert body["status"] == "running" and body["runtime_state"]["stop_now"] is False
    listed = await (await api.get(f"/protocols/{run.id}/steps")).json()
    assert [step["status"] for step in listed] == ["completed", "running", "pending"]
    pending, running = listed[2], listed[1]
    refused = await api.post(f"/steps/{pending['id']}/actions/stop")
    assert refused.status == 409 and "cannot stop step: it is pending" in (await refused.json())["error"]
    stopped = await (await api.post(f"/steps/{running['id']}/actions/stop")).json()
    assert stopped["status"] == "running" and stopped["runtime_state"]["stop_requested_by"]


@pytest.mark.parametrize(("body", "field", "reason"), [
    ({"kind": "code"}, "prompt", "a code protocol needs its task"),
    ({"kind": "ralph", "max_iterations": 3}, "prompt", "a ralph protocol needs its task"),
    ({"kind": "run", "prompt": "do it"}, "prompt", "only code and ralph protocols take a prompt"),
    ({"kind": "code", "prompt": "do it", "completion_promise": "DONE"}, "completion_promise", "only for ralph"),
    ({"kind": "ralph", "prompt": "loop", "max_iterations": 0}, "max_iterations", "must be between 1 and 1000"),
    ({"kind": "ralph", "prompt": "loop", "feedback_commands": [""]}, "feedback_commands", "item 0 must not be empty"),
])
async def test_task_fields_are_validated_per_kind(api, body, field, reason):
    row = await project(api.deps)
    response = await api.post(f"/projects/{row.id}/protocols", {"protocol_name": "Task", **body})
    answer = await response.json()
    assert response.status == 400 and reason in answer["fields"][field]


async def test_code_and_ralph_protocols_get_their_step_and_start_without_a_plan(api):
    row = await project(api.deps)
    code = await (await api.post(f"/projects/{row.id}/protocols", {
        "protocol_name": "Fix typo", "kind": "code", "prompt": "Fix the typo in README.md"})).json()
    ralph = await (await api.post(f"/projects/{row.id}/protocols", {
        "protocol_name": "Loop", "kind": "ralph", "prompt": "Make the tests pass", "max_iterations": 4,
        "completion_promise": "GREEN", "feedback_commands": ["make test"]})).json()
    [step] = await (await api.get(f"/protocols/{code['id']}/steps")).json()
    assert (step["step_name"], step["step_type"], step["qa_policy"]) == ("Fix the typo in README.md", "code", "full")
    [loop] = await (await api.get(f"/protocols/{ralph['id']}/steps")).json()
    assert loop["policy"] == {"max_iterations": 4, "promise": "GREEN", "feedback": ["make test"]}
    started = await (await api.post(f"/protocols/{code['id']}/actions/start")).json()
    assert started["job"]["job_type"] == "execute_step_job"


async def test_caller_chosen_branch_and_id_are_checked(api):
    row = await project(api.deps)
    await protocol(api.deps, row, branch="feature/taken")
    gone = await protocol(api.deps, row, branch="agent/gone", status="cancelled")
    create = f"/projects/{row.id}/protocols"
    made = await api.post(create, {"protocol_name": "Mine", "kind": "code", "prompt": "do it",
                                   "branch": "feature/mine", "external_id": "ticket-7"})
    body = await made.json()
    assert made.status == 200 and (body["branch"], body["external_id"]) == ("feature/mine", "ticket-7")
    assert body["runtime_state"]["chosen_branch"] is True
    found = await (await api.get("/protocols?external_id=ticket-7")).json()
    assert [item["id"] for item in found] == [body["id"]]
    for fields, status, words in [
        ({"branch": "feature/taken"}, 409, "branch feature/taken belongs to protocol"),
        ({"branch": "main"}, 400, "must not be the base branch"),
        ({"branch": "bad..name"}, 400, "is not a valid git branch name"),
        ({"branch": "sp ace"}, 400, "must match"),
        ({"external_id": "ticket-7"}, 409, "already has a protocol with external_id 'ticket-7'"),
        ({"depends_on": [404]}, 400, "no protocol 404 in this project"),
        ({"depends_on": [gone.id]}, 400, f"protocol {gone.id} will never complete (run, cancelled)"),
    ]:
        refused = await api.post(create, {"protocol_name": "Other", **fields})
        assert (refused.status, words in json.dumps(await refused.json())) == (status, True), fields


async def test_a_protocol_waiting_for_another_is_blocked_and_says_why(api):
    row = await project(api.deps)
    first = await protocol(api.deps, row, status="running", branch="agent/first")
    create = f"/projects/{row.id}/protocols"
    waiting = await (await api.post(create, {"protocol_name": "Then", "kind": "code", "prompt": "after it",
                                             "depends_on": [first.id, first.id]})).json()
    assert waiting["depends_on"] == [first.id]
    started = await api.post(f"/protocols/{waiting['id']}/actions/start")
    assert started.status == 200
    shown = await (await api.get(f"/protocols/{waiting['id']}")).json()
    assert shown["status"] == "blocked"
    assert shown["runtime_state"]["blocked_reason"] == (
        f"waiting for the protocols it depends on to complete: #{first.id} running")


async def test_a_released_protocol_with_an_open_blocking_question_waits_for_its_answer(api):
    from bot.dependencies import release_dependents
    from bot.models import Clarification, ProtocolRun

    row = await project(api.deps)
    first = await protocol(api.deps, row, status="running", branch="agent/first")
    planned = await protocol(api.deps, row, status="planned", branch="agent/planned", depends_on=[first.id])
    await steps(api.deps, planned, "pending")
    await add(api.deps, Clarification(project_id=row.id, protocol_run_id=planned.id, key="db", question="Which?",
                                      blocking=True))
    assert (await (await api.post(f"/protocols/{planned.id}/actions/start")).json())["message"] == (
        "Protocol waiting for the protocols it depends on to complete")
    async with api.deps.transaction() as session:
        (await session.get(ProtocolRun, first.id)).status = "completed"
    await release_dependents(api.deps, first.id)
    shown = await (await api.get(f"/protocols/{planned.id}")).json()
    assert shown["status"] == "paused" and shown["runtime_state"]["awaiting_answers"] is True
    assert not shown["runtime_state"].get("waiting_for_protocols")


async def test_stop_while_planning_again_does_not_wait_for_the_plan(api):
    row = await project(api.deps)
    run = await protocol(api.deps, row, status="planning")
    await steps(api.deps, run, "completed")
    body = await (await api.post(f"/protocols/{run.id}/actions/stop")).json()
    assert body["status"] == "completed" and body["runtime_state"]["stop_now"] is True  # its planner is killed
