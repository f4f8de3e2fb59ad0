"""OpenLineage events of real example-DAG runs (``airflow dags test``, the sandbox gateway).

The OpenLineage provider's own listener and file transport write every event to a JSON-lines
file; the tests read the COMPLETE events of the Luma submit and download tasks and check their
datasets against what the run really produced (manifest, files on disk, the sandbox's URL).

Extraction runs in a thread (``[openlineage] execute_in_thread``): ``airflow dags test`` serves
the execution API inside its own process, which a forked extraction process cannot reach (its
XCom reads would hang until ``execution_timeout``). Real workers talk to their supervisor over
a socket and work with the default fork as well.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from .conftest import write_prompt_file

pytestmark = pytest.mark.system

# A signed keyframe URL: the query (and its token) must never reach a lineage event.
SIGNED_KEYFRAME = "https://frames.example.com/fox/start.png?X-Amz-Signature=s3cr3t-token&Expires=1"
END_KEYFRAME = "http://frames.example.com:8080/boat/end.png#frame-1"
INLINE_KEYFRAME = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABAAAAAJCAIAAAC0SDtlAAAAFElEQVR42mP432NDEmIY1TAo"
    "NAAA7oUAAD0x4zoAAAAASUVORK5CYII="
)


def lineage_env(events: Path) -> dict[str, str]:
    return {
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "luma-system-test",
        "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "true",
    }


def complete_events(events: Path, job: str) -> dict[int, dict[str, Any]]:
    """The COMPLETE events of one task, by map index (-1: unmapped)."""
    found: dict[int, dict[str, Any]] = {}
    for line in events.read_text(encoding="utf-8").splitlines():
        event = json.loads(line)
        if event.get("eventType") != "COMPLETE" or event["job"]["name"] != job:
            continue
        map_index = event["run"]["facets"]["airflow"]["taskInstance"].get("map_index")
        index = -1 if map_index is None else map_index
        assert index not in found, f"two COMPLETE events for {job}[{index}]"
        found[index] = event
    return found


def datasets(event: dict[str, Any], side: str) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in event.get(side, [])]


def test_daily_content_lineage_prompts_file_keyframes_generations_files(
    dags_test, sandbox, tmp_path: Path
) -> None:
    prompts = [
        {
            "prompt": "A red fox trotting through fresh snow",
            "aspect_ratio": "16:9",
            "image_url": SIGNED_KEYFRAME,
        },
        {"prompt": "Macro shot of dew on a spider web", "aspect_ratio": "1:1", "image_url": INLINE_KEYFRAME},
        {"prompt": "A paper boat in the rain", "aspect_ratio": "9:16", "image_end_url": END_KEYFRAME},
    ]
    prompts_file = write_prompt_file(tmp_path / "prompts.yaml", prompts)
    events = tmp_path / "openlineage" / "events.jsonl"
    events.parent.mkdir()

    conf = {"prompts_file": str(prompts_file), "chunk_size": 2}
    run = dags_test("luma_daily_content", "2026-11-25", conf=conf, **lineage_env(events))

    assert run.returncode == 0, run.output[-3000:]
    assert "expired and will be terminated" not in run.output  # no extraction timed out
    folder = run.out_root / "2026-11-25"
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    ids = [e["generation_id"] for e in manifest["generations"]]
    assert len(ids) == 3 and all(ids)
    luma = f"luma://{urlsplit(sandbox.url).netloc}"

    # submit (one per chunk of 2): the prompts file and the http(s) keyframes in (no query, no
    # data: URI), the generations it created out.
    submits = complete_events(events, "luma_daily_content.chunks.submit")
    assert set(submits) == {0, 1}
    assert datasets(submits[0], "inputs") == [
        ("file", str(prompts_file)),
        ("https://frames.example.com", "/fox/start.png"),
    ]
    assert datasets(submits[0], "outputs") == [
        (luma, f"generations/{ids[0]}"),
        (luma, f"generations/{ids[1]}"),
    ]
    assert datasets(submits[1], "inputs") == [
        ("file", str(prompts_file)),
        ("http://frames.example.com:8080", "/boat/end.png"),
    ]
    assert datasets(submits[1], "outputs") == [(luma, f"generations/{ids[2]}")]

    # download: the generations in, exactly the files it wrote (video + thumbnail) out.
    downloads = complete_events(events, "luma_daily_content.chunks.download")
    assert set(downloads) == {0, 1}
    for index, chunk_ids in ((0, ids[:2]), (1, ids[2:])):
        assert datasets(downloads[index], "inputs") == [(luma, f"generations/{g}") for g in chunk_ids]
        written = [("file", str(folder / f"{g}.{ext}")) for g in chunk_ids for ext in ("mp4", "jpg")]
        assert datasets(downloads[index], "outputs") == written
        assert all(Path(name).is_file() for _, name in written)

    # The submit's generations are the download's inputs: one connected lineage graph.
    produced = {d for e in submits.values() for d in datasets(e, "outputs")}
    assert {d for e in downloads.values() for d in datasets(e, "inputs")} == produced

    text = events.read_text(encoding="utf-8")
    assert "s3cr3t-token" not in text and "X-Amz-Signature" not in text
    assert "iVBORw0KGgo" not in text
    assert json.loads(text.splitlines()[0])["job"]["namespace"] == "luma-system-test"


def test_asset_pipeline_lineage_of_single_prompt_tasks(dags_test, sandbox, tmp_path: Path) -> None:
    incoming = tmp_path / "luma_prompts" / "incoming.yaml"
    incoming.parent.mkdir()
    prompts = [
        {"prompt": "A lighthouse in a storm, waves crashing", "aspect_ratio": "16:9"},
        {
            "prompt": "A paper plane gliding over rooftops",
            "aspect_ratio": "4:3",
            "image_url": SIGNED_KEYFRAME,
        },
    ]
    write_prompt_file(incoming, prompts)
    events = tmp_path / "events.jsonl"

    # The prompts file is the DAG's schedule asset; its submits name it as their input.
    run = dags_test("luma_asset_pipeline", LUMA_PROMPTS_ASSET=f"file://{incoming}", **lineage_env(events))

    assert run.returncode == 0, run.output[-3000:]
    (batch,) = (run.out_root / "batches").iterdir()
    manifest = json.loads((batch / "manifest.json").read_text(encoding="utf-8"))
    ids = [e["generation_id"] for e in manifest["generations"]]
    luma = f"luma://{urlsplit(sandbox.url).netloc}"

    submits = complete_events(events, "luma_asset_pipeline.generate.submit")
    assert set(submits) == {0, 1}
    assert datasets(submits[0], "inputs") == [("file", str(incoming))]
    assert datasets(submits[1], "inputs") == [
        ("file", str(incoming)),
        ("https://frames.example.com", "/fox/start.png"),
    ]
    for index, gen_id in enumerate(ids):
        assert datasets(submits[index], "outputs") == [(luma, f"generations/{gen_id}")]

    downloads = complete_events(events, "luma_asset_pipeline.generate.download")
    assert set(downloads) == {0, 1}
    for index, gen_id in enumerate(ids):
        assert datasets(downloads[index], "inputs") == [(luma, f"generations/{gen_id}")]
        assert datasets(downloads[index], "outputs") == [
            ("file", str(batch / f"{gen_id}.mp4")),
            ("file", str(batch / f"{gen_id}.jpg")),
        ]
