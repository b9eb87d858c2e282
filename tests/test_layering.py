"""The import directions that keep the core independent, and the job registry complete."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE_MODULES = ["bot/commands.py", "bot/workflow.py", "bot/render/__init__.py", "bot/render/attention.py", "bot/render/check_runs.py",
                "bot/render/fitting.py", "bot/render/markdown.py", "bot/render/messages.py", "bot/render/status_comment.py",
                "bot/render/status_parts.py", "bot/render/text.py", "bot/render/views.py", "bot/plans.py", "bot/webhooks.py",
                "bot/webhooks_gitlab.py", "bot/forge/events.py", "bot/forge/gitlab_events.py",
                "bot/forge/payloads.py", "bot/sandbox/policy.py", "bot/redact.py", "bot/untrusted.py", "bot/paths.py",
                "bot/recovery.py", "bot/step_policy.py", "bot/engines.py",
                "bot/state.py"]
IMPURE_PACKAGES = {"aiohttp", "gidgethub", "gidgetlab", "sqlmodel", "sqlalchemy", "arq", "redis", "fakeredis", "bot.models",
                   "bot.store", "bot.db", "bot.deps"}


def imports_of(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def top(name: str) -> str:
    return name.split(".")[0]


@pytest.mark.parametrize("path", python_files("bot"), ids=lambda path: str(path.relative_to(ROOT)))
def test_the_core_imports_neither_handlers_nor_jobs(path):
    if path.name == "__main__.py":
        return
    assert not {top(name) for name in imports_of(path)} & {"handlers", "jobs"}


@pytest.mark.parametrize("path", python_files("handlers"), ids=lambda path: str(path.relative_to(ROOT)))
def test_handlers_never_import_jobs(path):
    assert "jobs" not in {top(name) for name in imports_of(path)}


@pytest.mark.parametrize("path", python_files("jobs"), ids=lambda path: str(path.relative_to(ROOT)))
def test_jobs_never_import_handlers(path):
    assert "handlers" not in {top(name) for name in imports_of(path)}


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_import_no_io_library(module):
    path = ROOT / module
    if not path.exists():
        pytest.fail(f"{module} is missing")
    found = {name for name in imports_of(path) if name in IMPURE_PACKAGES or top(name) in IMPURE_PACKAGES}
    assert not found


def test_every_job_name_is_registered_with_the_worker():
    from bot import queue

    job_names = {value for name, value in vars(queue).items() if name.isupper() and str(value).endswith("_job")}
    from jobs.worker import CRON_JOBS, JOB_FUNCTIONS

    registered = {function.__name__ for function in JOB_FUNCTIONS} | {job.name.split(":")[-1] for job in CRON_JOBS}
    registered |= {job.coroutine.__name__ for job in CRON_JOBS}
    assert len(job_names) > 10 and job_names <= registered, sorted(job_names - registered)


def test_importing_the_worker_module_builds_nothing(monkeypatch):
    import importlib

    monkeypatch.delenv("AGENTRY_WEBHOOK_SECRET", raising=False)
    monkeypatch.delenv("AGENTRY_DEV_MODE", raising=False)
    importlib.reload(importlib.import_module("jobs.worker"))
