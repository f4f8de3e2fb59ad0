"""Importing the sandbox (and its pytest plugin) pulls in neither Airflow nor an HTTP client."""

from __future__ import annotations

import subprocess
import sys


def test_import_is_light_and_airflow_free() -> None:
    code = (
        "import sys, luma_provider.sandbox, luma_provider.sandbox.pytest_plugin;"
        "bad = [m for m in ('airflow', 'aiohttp', 'requests') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
