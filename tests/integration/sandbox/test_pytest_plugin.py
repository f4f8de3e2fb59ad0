"""The sandbox's pytest plugin is opt-in: a project gets its fixtures only by listing it.

Each case runs pytest in a subprocess on a tiny project of its own, with plugin autoload on,
so an installed ``pytest11`` entry point would show up.
"""

from __future__ import annotations

import importlib.metadata

import pytest

PLUGIN = "luma_provider.sandbox.pytest_plugin"

# A submit then a poll over real HTTP, on the sandbox the fixture started.
TEST_FILE = """
import requests


def test_fetches_its_generation(luma_sandbox):
    auth = {"Authorization": f"Bearer {luma_sandbox.api_key}"}
    created = requests.post(f"{luma_sandbox.url}/luma/generations", json={"user_prompt": "a fox"},
                            headers=auth, timeout=10)
    assert created.status_code == 200, created.text
    gen_id = created.json()["id"]
    fetched = requests.get(f"{luma_sandbox.url}/luma/generations/{gen_id}", headers=auth, timeout=10)
    assert fetched.status_code == 200, fetched.text
    assert fetched.json()["id"] == gen_id
    assert luma_sandbox.submissions == 1
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pytester.makeini("[pytest]\n")  # its own rootdir, whatever the base temp directory
    pytester.makepyfile(test_sandbox=TEST_FILE)
    return pytester


def test_no_pytest11_entry_point_is_installed() -> None:
    plugins = importlib.metadata.entry_points(group="pytest11")
    assert [ep for ep in plugins if ep.value.startswith("luma_provider")] == []


def test_without_pytest_plugins_there_is_no_sandbox_fixture(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'luma_sandbox' not found*"])


def test_with_pytest_plugins_the_fixture_serves_real_http(project: pytest.Pytester) -> None:
    project.makeconftest(f"pytest_plugins = [{PLUGIN!r}]\n")
    result = project.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
