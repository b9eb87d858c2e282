"""Paths a request names stay inside the data directory and AGENTRY_ALLOWED_PATHS."""

from pathlib import Path

import pytest

from bot.config import Settings
from bot.paths import PathNotAllowed, confine, confine_git_url, local_git_path
from tests.api_support import API_TOKEN, project


@pytest.fixture
def allowed(tmp_path) -> Path:
    root = tmp_path / "allowed"
    (root / "repo").mkdir(parents=True)
    return root


@pytest.fixture
def api_settings(settings_env, allowed) -> Settings:
    """Only the data directory and `allowed`: the rest of tmp_path is outside."""
    return Settings.from_env({**settings_env, "AGENTRY_API_TOKEN": API_TOKEN, "AGENTRY_ALLOWED_PATHS": str(allowed)})


@pytest.fixture
def escapes(tmp_path, allowed) -> dict[str, str]:
    (tmp_path / "outside").mkdir()
    (allowed / "link").symlink_to(tmp_path / "outside")
    return {"root": "/", "symlink": str(allowed / "link"), "dotdot": f"{allowed}/../outside",
            "relative": "allowed/repo"}


def test_confine_resolves_and_keeps_paths_inside_the_roots(tmp_path, allowed, escapes):
    assert confine(f"{allowed}/repo/../repo/", [allowed]) == (allowed / "repo").resolve()
    for name, path in escapes.items():
        with pytest.raises(PathNotAllowed) as refused:
            confine(path, [allowed])
        reason = str(refused.value)
        assert reason == "must be an absolute path" if name == "relative" else (
            "AGENTRY_ALLOWED_PATHS" in reason and str(allowed.resolve()) in reason), name


def test_a_symlinked_root_is_compared_resolved(tmp_path, allowed):
    (tmp_path / "alias").symlink_to(allowed)
    assert confine(str(allowed / "repo"), [tmp_path / "alias"]) == (allowed / "repo").resolve()


@pytest.mark.parametrize("url, path", [
    ("https://github.com/o/r.git", None), ("ssh://git@host/o/r.git", None), ("git@github.com:o/r.git", None),
    ("ext::sh -c true", None), ("/srv/r.git", "/srv/r.git"), ("file:///srv/r.git", "/srv/r.git"),
    ("file://localhost/srv/r.git", "/srv/r.git"), ("/srv/a://b", "/srv/a://b"), ("relative/r.git", "relative/r.git"),
])
def test_which_git_urls_name_local_paths(url, path):
    assert local_git_path(url) == path


def test_git_url_paths_are_confined(allowed):
    confine_git_url(f"file://{allowed}/repo", [allowed])
    confine_git_url("https://github.com/o/r.git", [allowed])
    for url in ("/", "file:///etc", f"file://{allowed}/%2e%2e/%2e%2e", "file://other-host/srv/r.git", "r.git"):
        with pytest.raises(PathNotAllowed):
            confine_git_url(url, [allowed])


async def create(api, **fields):
    response = await api.post("/projects", {"name": "demo", "git_url": "https://example.com/demo.git", **fields})
    return response.status, await response.json()


async def test_local_path_outside_the_roots_is_400_with_the_reason(api, escapes):
    for name, path in escapes.items():
        status, body = await create(api, local_path=path)
        assert status == 400 and set(body["fields"]) == {"local_path"}, name
        reason = body["fields"]["local_path"]
        assert "absolute" in reason if name == "relative" else "AGENTRY_ALLOWED_PATHS" in reason, name
    assert await (await api.get("/projects")).json() == []


async def test_local_path_under_the_allowed_paths_or_the_data_dir_is_accepted(api, allowed):
    status, body = await create(api, local_path=f"{allowed}/repo/")
    assert status == 200 and body["local_path"] == str((allowed / "repo").resolve())
    inside_data = api.deps.settings.data_dir / "clones" / "demo"
    status, body = await create(api, local_path=str(inside_data))
    assert status == 200 and body["local_path"] == str(inside_data.resolve())


async def test_local_git_urls_outside_the_roots_are_400_with_the_reason(api, escapes):
    urls = {**escapes, "file_root": "file:///", "file_symlink": f"file://{escapes['symlink']}",
            "file_dotdot": f"file://{escapes['dotdot']}", "file_remote_host": "file://example.com/srv/r.git"}
    for name, url in urls.items():
        status, body = await create(api, git_url=url)
        assert status == 400 and set(body["fields"]) == {"git_url"}, name
        assert body["fields"]["git_url"] in body["error"]
    assert await (await api.get("/projects")).json() == []


async def test_local_git_urls_inside_the_roots_and_remote_urls_are_accepted(api, allowed):
    for url in (str(allowed / "repo"), f"file://{allowed}/repo", "git@github.com:o/r.git", "ssh://git@h/o/r"):
        status, body = await create(api, git_url=url)
        assert (status, body["git_url"]) == (200, url)


async def test_both_path_fields_are_named_when_both_are_refused(api):
    status, body = await create(api, git_url="/etc", local_path="/")
    assert status == 400 and set(body["fields"]) == {"git_url", "local_path"}


async def import_workspace(api, project_id: int, workspace: str):
    response = await api.post(f"/projects/{project_id}/codemachine/import",
                              {"protocol_name": "cm", "workspace_path": workspace, "enqueue": True})
    return response.status, await response.json()


async def test_workspace_path_escapes_are_400_with_the_reason(api, allowed, escapes):
    row = await project(api.deps, local_path=str(allowed))
    for name, path in escapes.items():
        status, body = await import_workspace(api, row.id, path)
        assert status == 400 and set(body["fields"]) == {"workspace_path"}, name
        assert "absolute" in body["error"] if name == "relative" else "AGENTRY_ALLOWED_PATHS" in body["error"], name
    status, body = await import_workspace(api, row.id, str(allowed / "repo"))
    assert status == 200 and body["job"]["job_type"] == "codemachine_import_job"


async def test_workspace_path_stays_inside_the_project_clone_or_the_data_dir(api, allowed):
    with_clone = await project(api.deps, local_path=str(allowed / "repo"))
    status, body = await import_workspace(api, with_clone.id, str(api.deps.settings.data_dir))
    assert status == 400 and "the project's local_path" in body["fields"]["workspace_path"]
    without_clone = await project(api.deps)
    status, body = await import_workspace(api, without_clone.id, str(allowed / "repo"))
    assert status == 400 and "agentry's data directory" in body["fields"]["workspace_path"]
    status, _ = await import_workspace(api, without_clone.id, str(api.deps.settings.data_dir / "ws"))
    assert status == 200


async def test_workspace_path_of_a_project_cloned_outside_the_roots_is_refused(api, tmp_path):
    (tmp_path / "legacy" / "ws").mkdir(parents=True)
    row = await project(api.deps, local_path=str(tmp_path / "legacy"))
    status, body = await import_workspace(api, row.id, str(tmp_path / "legacy" / "ws"))
    assert status == 400 and "AGENTRY_ALLOWED_PATHS" in body["fields"]["workspace_path"]
