"""Shared helpers for the unit tests: reference payloads in ``test_data/``.

The DAG-level fixtures (metadata DB, DAG runner, sandbox gateway) live in ``tests/conftest.py``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TEST_DATA = Path(__file__).parent / "test_data"


def load_fixture(name: str) -> Any:
    """Parsed JSON of ``tests/unit/test_data/<name>`` (the ``.json`` suffix is optional)."""
    path = TEST_DATA / (name if name.endswith(".json") else f"{name}.json")
    return json.loads(path.read_text(encoding="utf-8"))


def fixture_text(name: str) -> str:
    """Raw text of a fixture, for tests that feed bodies to ``decode``/``error_for_status``."""
    path = TEST_DATA / (name if name.endswith(".json") else f"{name}.json")
    return path.read_text(encoding="utf-8")


def all_fixture_names(prefix: str = "") -> list[str]:
    return sorted(p.stem for p in TEST_DATA.glob(f"{prefix}*.json"))


@pytest.fixture(name="load_fixture")
def load_fixture_fixture():
    """The ``load_fixture`` helper as a fixture, for tests that prefer injection."""
    return load_fixture
