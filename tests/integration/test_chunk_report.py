"""``write_chunk_report`` and the ``check`` step, run for real under ``dag.test()`` against a sandbox.

The DAG mirrors ``luma_daily_content``: ``load_prompts`` cuts N prompts into chunks, the real
``dags/luma_common.chunk_group`` (submit -> wait -> download) is mapped over the chunks, and
``report`` writes one manifest entry per prompt. 1 chunk and several matter because Airflow 3's
``xcom_pull`` returns a single value, not a list, when a mapped task has exactly one result.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
PROMPTS = [f"A short clip number {i}, golden light" for i in range(5)]


def pipeline_body(prompts_file: Path, out: Path, chunk_size: int) -> str:
    return f"""
        from luma_common import chunk_group

        @task
        def load_prompts() -> list:
            from luma_common import chunk_prompts
            from luma_provider.prompts import load_prompt_file
            return chunk_prompts(load_prompt_file({str(prompts_file)!r}), {chunk_size})

        @task(trigger_rule="all_done")
        def report(run_id, ti=None):
            from luma_common import write_chunk_report
            return write_chunk_report(ti=ti, run_id=run_id, output_dir={str(out)!r})

        chunk_group({f"{out}/"!r}).expand_kwargs(load_prompts()) >> report()
    """


@pytest.fixture
def pipeline(run_dag, gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``pipeline(prompts, chunk_size)`` -> (DagResult, manifest, output folder)."""
    monkeypatch.syspath_prepend(str(DAGS))
    monkeypatch.setenv("LUMA_POLL_INTERVAL", "0.3")
    sys.modules.pop("luma_common", None)

    def run(prompts: list[str], chunk_size: int):
        import yaml

        prompts_file = tmp_path / "prompts.yaml"
        rows = [{"prompt": p} for p in prompts]
        prompts_file.write_text(yaml.safe_dump(rows, sort_keys=False), encoding="utf-8")
        out = tmp_path / "out"
        result = run_dag.run(pipeline_body(prompts_file, out, chunk_size))
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        return result, manifest, out

    yield run
    sys.modules.pop("luma_common", None)


def check(summary: dict[str, Any]) -> None:
    from luma_common import raise_if_any_failed

    raise_if_any_failed(summary)


@pytest.mark.parametrize(("count", "chunk_size"), [(1, 100), (5, 100), (5, 2)])
def test_one_entry_per_prompt_with_its_file(pipeline, gateway, count: int, chunk_size: int) -> None:
    prompts = PROMPTS[:count]
    result, manifest, out = pipeline(prompts, chunk_size)
    assert result.state == "success"
    entries = manifest["generations"]
    assert [e["prompt"] for e in entries] == prompts
    assert all(e["state"] == "completed" for e in entries)
    assert {e["video"] for e in entries} == {p.name for p in out.glob("*.mp4")}
    assert len({e["generation_id"] for e in entries}) == count == gateway.submissions
    assert len(result.mapped("chunks.wait")) == -(-count // chunk_size)
    check(manifest)  # every video is there: the check passes


def test_check_fails_when_a_completed_video_is_not_on_storage(pipeline, gateway) -> None:
    # The defer/trigger race can leave a chunk "done" without its download; the states alone
    # would say success. Here the file disappears after the report, as if never downloaded.
    _result, manifest, out = pipeline(PROMPTS[:3], 2)
    assert all(e["state"] == "completed" for e in manifest["generations"])
    lost = manifest["generations"][1]
    (out / lost["video"]).unlink()
    with pytest.raises(RuntimeError, match="1 of 3 prompts have no video") as info:
        check(manifest)
    assert "completed, but its video is not on storage" in str(info.value)
    assert lost["prompt"][:40] in str(info.value)


def test_a_failed_prompt_is_reported_with_its_reason(pipeline, gateway) -> None:
    prompts = [PROMPTS[0], "A flamingo #fail:Content policy: no flamingos", PROMPTS[2]]
    _result, manifest, _out = pipeline(prompts, 2)
    assert [e["state"] for e in manifest["generations"]] == ["completed", "failed", "completed"]
    assert manifest["generations"][1]["failure_reason"] == "Content policy: no flamingos"
    with pytest.raises(RuntimeError, match="Content policy: no flamingos"):
        check(manifest)
