"""``make demo`` (``scripts/demo.py``): sandbox mode, real-gateway mode, and its error message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from .conftest import REPO, SANDBOX_KEY, write_prompt_file

pytestmark = pytest.mark.system
DEMO = REPO / "scripts" / "demo.py"


@pytest.fixture(scope="module")
def demo_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """One demo home for the module: the first run migrates it, the next reuses it."""
    base = tmp_path_factory.mktemp("demo")
    return {"LUMA_DEMO_HOME": str(base / "airflow_home"), "LUMA_DEMO_OUTPUT": str(base / "output")}


def run_demo(env_extra: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LUMA_", "AIRFLOW"))}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, str(DEMO)], env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def test_demo_with_the_sandbox(demo_dirs: dict[str, str]) -> None:
    proc = run_demo(demo_dirs)

    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "Luma sandbox (local fake gateway, no credits) listening on http://127.0.0.1:" in out
    assert "submitting 4 prompts from dags/prompts/daily_prompts.yaml" in out
    assert out.count("] submitted ") == 4
    assert "sensor deferred to the triggerer" in out
    assert "done: 4 prompts -> 4 completed" in out
    # The usage line: what was made and what it cost (the gateway sandbox has no balance).
    usage = next(line for line in out.splitlines() if "] usage: " in line)
    assert "usage: 4 videos, " in usage and usage.endswith("credits spent: n/a (gateway API)")
    assert "sandbox stopped" in out
    # Every line is a short progress line, not Airflow's log.
    assert all(line.startswith("[demo ") for line in out.splitlines()), out
    gallery = next(line for line in out.splitlines() if "gallery:" in line)
    folder = Path(gallery.split("(open file://", 1)[1].rstrip(")")).parent
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["counts"] == {"completed": 4}
    assert len(list(folder.glob("*.mp4"))) == 4
    # The sandbox was stopped: its port no longer answers.
    url = out.split("listening on ", 1)[1].split()[0]
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/_sandbox/health", timeout=5)


def test_demo_against_a_real_gateway_never_prints_the_key(
    demo_dirs: dict[str, str], sandbox, tmp_path: Path
) -> None:
    # The in-process sandbox plays the "real" gateway: same code path as LUMA_API_KEY in production.
    prompts = write_prompt_file(
        tmp_path / "prompts.yaml",
        [
            {"prompt": "A kite over a beach"},
            {"prompt": "A blocked prompt #fail:Quota exceeded for this key"},
        ],
    )
    proc = run_demo(
        {
            **demo_dirs,
            "LUMA_API_KEY": SANDBOX_KEY,
            "LUMA_BASE_URL": sandbox.url,
            "LUMA_POLL_INTERVAL": "1",
            "LUMA_PROMPTS_FILE": str(prompts),
        }
    )

    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"using the real Luma gateway at {sandbox.url}" in proc.stdout
    assert "finished with failures: 2 prompts -> 1 completed, 1 failed" in proc.stdout
    assert "Quota exceeded for this key" in proc.stdout
    assert sandbox.stats()["submissions"] == 2
    log = Path(demo_dirs["LUMA_DEMO_HOME"]) / "demo.log"
    for text in (proc.stdout, proc.stderr, log.read_text()):
        assert SANDBOX_KEY not in text


def test_demo_needs_a_base_url_with_an_api_key() -> None:
    proc = run_demo({"LUMA_API_KEY": "sk-only-a-key-0000"}, timeout=60)

    assert proc.returncode == 2
    assert "LUMA_BASE_URL must name your gateway" in proc.stdout
    assert "sk-only-a-key-0000" not in proc.stdout + proc.stderr
