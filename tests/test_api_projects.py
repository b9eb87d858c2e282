"""Projects, onboarding, branches and clarifications over HTTP."""

import subprocess

from bot import git
from bot.models import Clarification, Project
from tests.api_support import add, project, protocol, reload


async def test_create_project_queues_setup_and_redacts_secrets(api, tmp_path):
    response = await api.post("/projects", {"name": "demo", "git_url": str(tmp_path / "demo.git"),
                                            "local_path": str(tmp_path / "demo"),
                                            "secrets": {"api_token": "p-token", "other": "x"}})
    assert response.status == 200
    body = await response.json()
    assert body["local_path"] == str((tmp_path / "demo").resolve()) and body["base_branch"] == "main"
    assert body["secrets"] == {"api_token": "[redacted]", "other": "[redacted]"}
    jobs = await (await api.get("/queues/jobs?status=queued")).json()
    assert [job["job_type"] for job in jobs] == ["project_setup_job"]
    assert jobs[0]["payload"]["project_id"] == body["id"]
    stored = await reload(api.deps, Project, body["id"])
    assert stored.secrets["api_token"] != "p-token"
    assert api.deps.secret_box.open(stored.secrets["api_token"]) == "p-token"


async def test_create_project_needs_the_bearer_token(api):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}):
        response = await api.post("/projects", {"name": "demo", "git_url": "/x"}, auth=False, headers=headers)
        assert response.status == 401
        assert "error" in await response.json()
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="agentry"'


async def test_invalid_bodies_name_the_field_and_why(api):
    response = await api.post("/projects", {"git_url": 5, "local_path": "relative/path"})
    body = await response.json()
    assert response.status == 400
    assert body["fields"] == {"name": "is required", "git_url": "must be a string"}
    response = await api.post("/projects", {"name": "x", "git_url": "https://example.com/x.git",
                                            "local_path": "relative"})
    assert (await response.json())["fields"] == {"local_path": "must be an absolute path"}
    for raw in (b"{not json", b"[1, 2]", b'{"name": NaN}', b"\xff\xfe", b"[" * 100_000):
        response = await api.post("/projects", data=raw)
        assert response.status == 400, raw[:10]
    response = await api.post("/projects", {"name": "a\u0000b", "git_url": "/x"})
    assert (await response.json())["fields"] == {"name": "must not contain NUL characters"}


async def test_oversized_body_is_413(api):
    response = await api.post("/projects", data=b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}')
    assert response.status == 413


async def test_get_and_list_projects(api):
    rows = [await project(api.deps, name=f"p{index}") for index in range(5)]
    first = await api.get("/projects?limit=2")
    assert [item["name"] for item in await first.json()] == ["p0", "p1"]
    second = await api.get(f"/projects?limit=2&cursor={first.headers['X-Next-Cursor']}")
    assert [item["name"] for item in await second.json()] == ["p2", "p3"]
    assert (await api.get(f"/projects/{rows[0].id}")).status == 200
    assert (await api.get("/projects/999")).status == 404
    assert (await api.get("/projects/99999999999999")).status == 404
    assert (await api.get("/projects?limit=0")).status == 400
    assert (await api.get("/projects?cursor=garbage")).status == 400


async def test_project_token_guards_the_project(api):
    row = await project(api.deps, secrets={"api_token": "p-secret"})
    assert (await api.get(f"/projects/{row.id}")).status == 401
    denied = await api.get(f"/projects/{row.id}", headers={"X-Project-Token": "nope"})
    assert denied.status == 401 and denied.headers["WWW-Authenticate"].startswith("X-Project-Token realm=")
    assert (await api.get(f"/projects/{row.id}", headers={"X-Project-Token": "p-secret"})).status == 200
    assert (await api.get(f"/events?project_id={row.id}")).status == 401


async def test_onboarding_summary_and_start(api):
    row = await project(api.deps)
    summary = await (await api.get(f"/projects/{row.id}/onboarding")).json()
    assert summary["status"] == "pending" and "has not started" in summary["hint"]
    response = await api.post(f"/projects/{row.id}/onboarding/actions/start")
    body = await response.json()
    assert response.status == 200 and body["job"]["job_type"] == "project_setup_job"
    summary = await (await api.get(f"/projects/{row.id}/onboarding")).json()
    assert summary["stages"][0] == {**summary["stages"][0], "key": "queued", "status": "completed"}
    assert summary["last_event"]["event_type"] == "setup_enqueued"
    assert (await api.post("/projects/404/onboarding/actions/start")).status == 404


async def test_onboarding_inline_runs_the_job_in_process(api):
    from handlers.keys import JOB_RUNNER

    ran = []

    async def runner(job):
        ran.append(job.function)

    api.client.app[JOB_RUNNER] = runner
    row = await project(api.deps)
    body = await (await api.post(f"/projects/{row.id}/onboarding/actions/start", {"inline": True})).json()
    assert body == {"message": "Project setup ran inline.", "job": None, "jobs": []}
    assert ran == ["project_setup_job"]


def make_remote(tmp_path) -> str:
    remote = tmp_path / "remote.git"
    work = tmp_path / "work"
    run = lambda *args, cwd=None: subprocess.run(args, cwd=cwd, check=True, capture_output=True)  # noqa: E731
    run("git", "init", "--bare", "-b", "main", str(remote))
    run("git", "init", "-b", "main", str(work))
    run("git", "-c", "user.name=t", "-c", "user.email=t@e", "commit", "--allow-empty", "-m", "one", cwd=work)
    run("git", "push", str(remote), "main", "main:refs/heads/feature/x", cwd=work)
    return str(remote)


async def test_branches_list_and_delete(api, tmp_path):
    remote = make_remote(tmp_path)
    row = await project(api.deps, git_url=remote, local_path=remote)
    assert (await api.get(f"/projects/{row.id}/branches")).status == 409
    await git.ensure_mirror(remote, git.mirror_path(api.deps.settings.data_dir.resolve(), row.id))
    body = await (await api.get(f"/projects/{row.id}/branches")).json()
    assert body == {"branches": ["feature/x", "main"]}
    path = f"/projects/{row.id}/branches/feature/x/delete"
    assert (await api.post(path, {})).status == 400
    assert (await api.post(f"/projects/{row.id}/branches/main/delete", {"confirm": True})).status == 409
    response = await api.post(path, {"confirm": True})
    assert response.status == 200 and await response.json() == {"deleted": True, "branch": "feature/x"}
    listed = subprocess.run(["git", "ls-remote", "--heads", remote], capture_output=True, text=True).stdout
    assert "feature/x" not in listed


async def test_deleting_a_branch_that_does_not_exist_is_404_not_deleted(api, tmp_path):
    remote = make_remote(tmp_path)
    row = await project(api.deps, git_url=remote, local_path=remote)
    await git.ensure_mirror(remote, git.mirror_path(api.deps.settings.data_dir.resolve(), row.id))
    response = await api.post(f"/projects/{row.id}/branches/no/such/branch/delete", {"confirm": True})
    assert response.status == 404 and "no branch no/such/branch" in (await response.json())["error"]
    assert (await api.post(f"/projects/{row.id}/branches/feature/x/delete", {"confirm": True})).status == 200
    assert (await api.post(f"/projects/{row.id}/branches/feature/x/delete", {"confirm": True})).status == 404


async def test_clarifications_list_and_answer(api):
    row = await project(api.deps)
    run = await protocol(api.deps, row, status="paused", awaiting_answers=True)
    await add(api.deps, Clarification(project_id=row.id, key="db", question="Which DB?", scope="project"),
              Clarification(project_id=row.id, protocol_run_id=run.id, key="lang", question="Language?",
                            blocking=True))
    listed = await (await api.get(f"/projects/{row.id}/clarifications?status=open")).json()
    assert {item["key"] for item in listed} == {"db", "lang"}
    response = await api.post(f"/projects/{row.id}/clarifications/db", {"answer": "postgres", "answered_by": "ann"})
    body = await response.json()
    assert response.status == 200 and body["answer"] == {"value": "postgres"} and body["answered_by"] == "ann"
    assert (await api.post(f"/projects/{row.id}/clarifications/nope", {"answer": 1})).status == 404
    response = await api.post(f"/protocols/{run.id}/clarifications/lang", {"answer": {"choice": "python"}})
    assert (await response.json())["status"] == "answered"
    resumed = await (await api.get(f"/protocols/{run.id}")).json()
    assert resumed["status"] == "running"
    assert await (await api.get(f"/protocols/{run.id}/clarifications?status=open")).json() == []
