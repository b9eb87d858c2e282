"""The OpenAPI document matches the routes, a schemathesis run finds no 5xx and no answer that breaks
the schema, and the reference's curl examples work as written against a real server."""

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from bot.models import StepRun
from tests.api_support import API_TOKEN, project, protocol, run


async def test_every_route_is_described_and_every_description_is_a_route(api):
    document = await (await api.get("/openapi.json")).json()
    described = {(method.upper(), path) for path, operations in document["paths"].items() for method in operations}
    served = {(route.method, route.resource.canonical) for route in api.client.app.router.routes()
              if route.method != "HEAD" and route.resource is not None}
    assert described == served
    assert document["openapi"].startswith("3.")
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert operation["responses"], (method, path)
            if path not in ("/health", "/metrics") and not path.startswith("/webhooks"):
                assert "401" in operation["responses"], (method, path)


async def test_openapi_needs_the_token(api):
    assert (await api.get("/openapi.json", auth=False)).status == 401


async def seed(deps, data_dir: Path):
    row = await project(deps)
    pr = await protocol(deps, row, status="running")
    async with deps.sessions() as session:
        session.add(StepRun(protocol_run_id=pr.id, step_index=0, step_name="one", status="needs_qa"))
        await session.commit()
    runs = data_dir.resolve() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    (runs / "r.log").write_text("hello\n")
    await run(deps, project_id=row.id, protocol_run_id=pr.id, log_path=str(runs / "r.log"), status="succeeded")


async def run_command(*argv, env=None, timeout=600) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.STDOUT, env=env)
    output, _ = await asyncio.wait_for(process.communicate(), timeout)
    return process.returncode, output.decode(errors="replace")


@pytest.mark.timeout(900)
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(aiohttp_server, api_deps):
    from handlers.web import make_app

    server = await aiohttp_server(make_app(api_deps))
    await seed(api_deps, api_deps.settings.data_dir)
    st = shutil.which("st", path=str(Path(sys.executable).parent)) or "st"
    code, output = await run_command(
        st, "run", str(server.make_url("/openapi.json")), "-H", f"Authorization: Bearer {API_TOKEN}",
        "--checks", "not_a_server_error,response_schema_conformance,status_code_conformance,"
                    "content_type_conformance",
        "--exclude-path-regex", "stream|^/ws$|^/webhooks", "--max-examples", "15", "--seed", "11",
        "--phases", "examples,coverage,fuzzing", "--no-color",
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""})
    assert code == 0, output[-6000:]
    assert "No issues found" in output or " passed" in output, output[-3000:]


CURL_EXAMPLES = [
    # Create project
    """curl -X POST http://localhost:8011/projects \\
  -H "Authorization: Bearer $AGENTRY_API_TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{"name":"demo","git_url":"/path/to/repo","base_branch":"main"}'""",
    # Run onboarding inline for an existing project
    """curl -X POST http://localhost:8011/projects/1/onboarding/actions/start \\
  -H "Authorization: Bearer $AGENTRY_API_TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{"inline": true}'""",
    # Start planning a protocol
    """curl -X POST http://localhost:8011/protocols/1/actions/start \\
  -H "Authorization: Bearer $AGENTRY_API_TOKEN\"""",
    # Run QA for a step
    """curl -X POST http://localhost:8011/steps/10/actions/run_qa \\
  -H "Authorization: Bearer $AGENTRY_API_TOKEN\"""",
    # List queue jobs
    """curl -X GET "http://localhost:8011/queues/jobs?status=queued" \\
  -H "Authorization: Bearer $AGENTRY_API_TOKEN\"""",
]


async def curl(example: str, base_url: str, tmp_path: Path) -> tuple[int, object]:
    out = tmp_path / "body.json"
    command = example.replace("http://localhost:8011", base_url).replace("/path/to/repo", str(tmp_path / "repo"))
    command = command.replace("curl ", f"curl --silent --show-error --output {out} --write-out '%{{http_code}}' ", 1)
    code, output = await run_command("bash", "-c", command, env={**os.environ, "AGENTRY_API_TOKEN": API_TOKEN})
    assert code == 0, output
    return int(output.strip()[-3:]), json.loads(out.read_text())


@pytest.mark.skipif(shutil.which("curl") is None and not os.environ.get("CI"), reason="curl is not installed")
async def test_the_reference_curl_examples_work_as_written(aiohttp_server, api_deps, tmp_path):
    from handlers.web import make_app

    server = await aiohttp_server(make_app(api_deps))
    base_url = str(server.make_url("")).rstrip("/")
    status, created = await curl(CURL_EXAMPLES[0], base_url, tmp_path)
    assert (status, created["id"], created["name"]) == (200, 1, "demo")
    status, onboarding = await curl(CURL_EXAMPLES[1], base_url, tmp_path)
    assert status == 200 and "setup" in onboarding["message"].lower()
    await protocol(api_deps, await_project(created), status="pending")
    status, started = await curl(CURL_EXAMPLES[2], base_url, tmp_path)
    assert status == 200 and started["job"]["job_type"] == "plan_protocol_job"
    async with api_deps.sessions() as session:
        session.add_all([StepRun(protocol_run_id=1, step_index=index, step_name=f"s{index}",
                                 status="needs_qa" if index == 9 else "completed") for index in range(10)])
        await session.commit()
    status, qa = await curl(CURL_EXAMPLES[3], base_url, tmp_path)
    assert status == 200 and qa["job"]["job_type"] == "run_quality_job", qa
    status, jobs = await curl(CURL_EXAMPLES[4], base_url, tmp_path)
    assert status == 200 and {"project_setup_job", "plan_protocol_job", "run_quality_job"} <= {
        job["job_type"] for job in jobs}


def await_project(created: dict):
    from bot.models import Project

    return Project(id=created["id"], name=created["name"])
