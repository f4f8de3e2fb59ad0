"""Fixtures for the sandbox tests: real HTTP against a started sandbox, no mocks."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from luma_provider.sandbox import LumaSandbox

KEY = "sandbox-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def sb() -> Iterator[LumaSandbox]:
    """A sandbox with short but observable phases: pending 0.2 s, processing 0.3 s."""
    with LumaSandbox(port=0, api_key=KEY, queue_seconds=0.2, process_seconds=0.3) as sandbox:
        yield sandbox


@pytest.fixture
def instant() -> Iterator[LumaSandbox]:
    """A sandbox whose generations are terminal as soon as they are created."""
    with LumaSandbox(port=0, api_key=KEY, time_scale=0) as sandbox:
        yield sandbox


@pytest.fixture
def api() -> Iterator[Callable[..., requests.Response]]:
    """``api(sandbox, method, path, json=...)``: an authenticated call with a short timeout."""
    with requests.Session() as session:

        def call(sandbox: LumaSandbox, method: str, path: str, **kwargs: Any) -> requests.Response:
            headers = {**AUTH, **kwargs.pop("headers", {})}
            return session.request(method, sandbox.url + path, headers=headers, timeout=10, **kwargs)

        yield call


@pytest.fixture
def submit(api: Callable[..., requests.Response]) -> Callable[..., str]:
    """``submit(sandbox, prompt, **body)``: submit a generation and return its id."""

    def call(sandbox: LumaSandbox, prompt: str = "cat dance", **body: Any) -> str:
        resp = api(sandbox, "POST", "/luma/generations", json={"user_prompt": prompt, **body})
        assert resp.status_code == 200, resp.text
        return resp.json()["id"]

    return call


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """``wait_for(predicate, timeout)``: poll until ``predicate()`` is truthy."""

    def call(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            time.sleep(0.05)

    return call
