"""The daily pipeline's budget and usage, under ``airflow dags test``: a per-run ``max_generations``,
skipped prompts in the manifest, and what the run used and spent (official API: real credits)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow_helpers import parse_gallery

from .conftest import write_prompt_file

pytestmark = pytest.mark.system

PROMPTS = [
    {"prompt": "A lighthouse at dawn, slow drone orbit", "aspect_ratio": "16:9"},
    {"prompt": "Ink drops blooming in water, macro", "aspect_ratio": "1:1"},
    {"prompt": "A fox in fresh snow, tracking shot", "aspect_ratio": "16:9"},
]


def manifest_of(run) -> dict:
    (path,) = list(run.out_root.rglob("manifest.json"))
    return json.loads(path.read_text(encoding="utf-8"))


def test_max_generations_skips_the_rest_and_the_run_still_passes(dags_test, sandbox, tmp_path: Path) -> None:
    prompts_file = write_prompt_file(tmp_path / "prompts.yaml", PROMPTS)
    conf = {"prompts_file": str(prompts_file), "max_generations": 2}
    run = dags_test("luma_daily_content", "2026-12-01", conf=conf)

    assert run.returncode == 0, run.output[-3000:]
    assert sandbox.stats()["submissions"] == 2
    assert "Budget: this run submits 2 of 3 prompts (max_generations=2); 1 are skipped" in run.task_log(
        "load_prompts"
    )
    manifest = manifest_of(run)
    states = [(e["prompt"], e["state"]) for e in manifest["generations"]]
    assert states == [
        (PROMPTS[0]["prompt"], "completed"),
        (PROMPTS[1]["prompt"], "completed"),
        (PROMPTS[2]["prompt"], "skipped"),
    ]
    skipped = manifest["generations"][2]
    assert skipped["skip_reason"] == "budget: max_generations=2"
    assert skipped["failure_reason"] is None and skipped["generation_id"] is None
    assert manifest["counts"] == {"completed": 2, "skipped": 1}


def test_official_run_records_usage_and_the_credits_it_spent(
    official_dags_test, official_sandbox, tmp_path: Path
) -> None:
    prompts = [{**p, "resolution": "720p", "duration": "5s"} for p in PROMPTS[:2]]
    prompts_file = write_prompt_file(tmp_path / "prompts.yaml", prompts)
    before = official_sandbox.stats()["credit_balance"]
    run = official_dags_test("luma_daily_content", "2026-12-02", conf={"prompts_file": str(prompts_file)})

    assert run.returncode == 0, run.output[-3000:]
    after = official_sandbox.stats()["credit_balance"]
    manifest = manifest_of(run)
    usage = manifest["usage"]
    assert usage["flavour"] == "official"
    assert usage["videos"] == 2
    assert (usage["credits_before"], usage["credits_after"]) == (before, after)
    assert usage["credits_spent"] == round(before - after, 2) > 0
    for entry in manifest["generations"]:
        assert entry["usage"]["flavour"] == "official"
        assert entry["usage"]["generation_type"] == "video"
        assert entry["usage"]["model"] == "ray-2"
        assert (entry["usage"]["resolution"], entry["usage"]["duration"]) == ("720p", "5s")
        assert entry["usage"]["video_seconds"] == entry["duration"]
        # Submit to completion, as seen by the wait: the sandbox renders in ~1.5 s.
        assert 0 < entry["usage"]["seconds_to_complete"] < 60
    # The gallery header says the same.
    (folder,) = {p.parent for p in run.out_root.rglob("manifest.json")}
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert f"credits spent: {usage['credits_spent']:,.0f} (USD cents)" in page
    assert "2 videos, " in page and "720p ray-2" in page
    assert len(parse_gallery(folder / "index.html")) == 2
