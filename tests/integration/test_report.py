"""``write_run_report`` run for real: the example pipeline's shape under ``dag.test()`` against a sandbox.

The DAG mirrors ``luma_daily_content``: ``load_prompts`` returns N prompt rows, the real
``dags/luma_common.video_group`` (submit -> wait -> download) is mapped over them, and
``report`` writes the manifest and gallery. N = 0, 1 and several matter because Airflow 3's
``xcom_pull`` returns a single value, not a list, when a mapped task has exactly one result.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow_helpers import parse_gallery

DAGS = Path(__file__).resolve().parents[2] / "dags"

PROMPTS = [
    {"prompt": "A red fox trotting through fresh snow, low sun", "aspect_ratio": "16:9"},
    {"prompt": "Macro shot of dew on a spider web", "aspect_ratio": "1:1"},
    {
        "prompt": "A paper plane gliding over rooftops at sunset, seen from far above the city",
        "aspect_ratio": "4:3",
    },
]
FAIL_REASON = "Content policy: no flamingos allowed"


def pipeline_body(prompts_file: Path, out: Path) -> str:
    """Body of a DAG shaped like ``luma_daily_content``, using the shipped ``video_group``."""
    return f"""
        from luma_common import video_group

        @task
        def load_prompts() -> list:
            from luma_provider.prompts import load_prompt_file
            return load_prompt_file({str(prompts_file)!r})

        @task(trigger_rule="all_done")
        def report(run_id, ti=None):
            from luma_common import write_run_report
            return write_run_report(ti=ti, run_id=run_id, output_dir={str(out)!r}, group_id="generate")

        groups = video_group({f"{out}/"!r}).expand_kwargs(load_prompts())
        groups >> report()
    """


@pytest.fixture
def pipeline(run_dag, gateway, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``pipeline(prompts)`` -> (DagResult, manifest, output folder)."""
    # As Airflow does for a real dags folder; luma_common reads the poll interval at import,
    # so import it afresh here and drop it afterwards.
    monkeypatch.syspath_prepend(str(DAGS))
    monkeypatch.setenv("LUMA_POLL_INTERVAL", "0.3")
    sys.modules.pop("luma_common", None)

    def run(prompts: list[dict[str, Any]]):
        import yaml

        prompts_file = tmp_path / "prompts.yaml"
        prompts_file.write_text(yaml.safe_dump(prompts, sort_keys=False), encoding="utf-8")
        out = tmp_path / "out"
        result = run_dag.run(pipeline_body(prompts_file, out))
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        assert result.xcom("report") == manifest  # the task returns what it wrote
        return result, manifest, out

    yield run
    sys.modules.pop("luma_common", None)


@pytest.mark.parametrize("count", [0, 1, 3])
def test_report_lists_every_downloaded_video(pipeline, gateway, count: int) -> None:
    prompts = PROMPTS[:count]
    result, manifest, out = pipeline(prompts)

    assert result.state == "success"
    assert result.ti("report").state == "success"
    entries = manifest["generations"]
    assert manifest["total"] == len(entries) == count
    assert manifest["counts"] == ({"completed": count} if count else {})
    assert [e["prompt"] for e in entries] == [p["prompt"] for p in prompts]
    ids = [result.xcom("generate.submit", map_index=i) for i in range(count)]
    assert [e["generation_id"] for e in entries] == ids
    for entry in entries:
        gen_id = entry["generation_id"]
        assert entry["state"] == "completed" and entry["failure_reason"] is None
        # The one-video case used to say "video": null although the file was downloaded.
        assert entry["video"] == f"{gen_id}.mp4"
        assert entry["thumbnail"] == f"{gen_id}.jpg"
        assert entry["video_uri"] == f"file://{out}/{gen_id}.mp4"
        assert (out / entry["video"]).read_bytes()[4:8] == b"ftyp"
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(f"{i}.mp4" for i in ids)

    videos = parse_gallery(out / "index.html")
    assert [(v["src"], v["poster"]) for v in videos] == [(f"{i}.mp4", f"{i}.jpg") for i in ids]
    html = (out / "index.html").read_text(encoding="utf-8")
    assert f"{count} prompts" in html
    assert 'class="missing"' not in html
    assert gateway.submissions == count


def test_report_with_one_video_and_one_failure(pipeline, gateway) -> None:
    """Exactly one download result in a batch of two: the good video is shown, the failure explained."""
    prompts = [PROMPTS[0], {"prompt": f"A flamingo in a pool #fail:{FAIL_REASON}", "aspect_ratio": "9:16"}]
    result, manifest, out = pipeline(prompts)

    assert [t.state for t in result.mapped("generate.download")] == ["success", "upstream_failed"]
    assert result.ti("report").state == "success"
    good, bad = manifest["generations"]
    assert manifest["counts"] == {"completed": 1, "failed": 1}
    assert good["video"] == f"{good['generation_id']}.mp4"
    assert (out / good["video"]).is_file()
    assert (bad["state"], bad["video"], bad["failure_reason"]) == ("failed", None, FAIL_REASON)
    assert [v["src"] for v in parse_gallery(out / "index.html")] == [good["video"]]
    assert FAIL_REASON in (out / "index.html").read_text(encoding="utf-8")


def test_mapped_instances_are_labelled_by_prompt(pipeline) -> None:
    """submit, wait and download of one prompt all carry that prompt's label, not an index or a UUID."""
    result, _, _ = pipeline(PROMPTS)

    labels = [p["prompt"] if len(p["prompt"]) <= 48 else p["prompt"][:47] + "…" for p in PROMPTS]
    for task_id in ("generate.submit", "generate.wait", "generate.download"):
        tis = result.mapped(task_id)
        assert [t.map_index for t in tis] == [0, 1, 2]
        assert [t.rendered_map_index for t in tis] == labels, task_id
