"""The example DAGs: they parse fast and offline, and each runs end to end under ``airflow dags test``.

Every run goes through real Airflow (scheduler loop of ``dag.test``, task runner, in-process
execution API, inline triggerer) against a sandbox gateway served from this process, and the
test then checks what a user would look at: exit code, files, manifest, gallery, task logs,
the asset event, and what the gateway saw.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from airflow_helpers import parse_gallery

from .conftest import DAGS, SANDBOX_KEY, write_prompt_file

pytestmark = pytest.mark.system

EXPECTED_DAGS = {
    "luma_daily_content.py": {"luma_daily_content"},
    "luma_asset_pipeline.py": {"luma_asset_pipeline"},
    "luma_image_to_video.py": {"luma_image_to_video"},
    "luma_official_storyboard.py": {"luma_official_storyboard"},
    "luma_reviewed_release.py": {"luma_reviewed_release"},
}
FAIL_REASON = "Content policy: no flamingos allowed"
DEFERRED = "[DAG TEST] running trigger in line"


# ---------------------------------------------------------------------------------- helpers


def sandbox_generation(sandbox: Any, generation_id: str) -> dict[str, Any]:
    """The sandbox's own view of a generation (404 -> HTTPError: the id must exist)."""
    request = urllib.request.Request(
        f"{sandbox.url}/luma/generations/{generation_id}", headers={"Authorization": f"Bearer {SANDBOX_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def check_batch(folder: Path, prompts: list[dict[str, Any]], sandbox: Any) -> dict[str, Any]:
    """Files, manifest and gallery of one batch folder agree with each other and the sandbox."""
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    entries = manifest["generations"]
    assert manifest["total"] == len(entries) == len(prompts)
    assert [e["prompt"] for e in entries] == [p["prompt"] for p in prompts]
    failing = {p["prompt"] for p in prompts if "#fail" in p["prompt"]}
    for entry in entries:
        # Every id in the manifest was really created by the gateway.
        assert sandbox_generation(sandbox, entry["generation_id"])["id"] == entry["generation_id"]
        if entry["prompt"] in failing:
            assert entry["state"] == "failed"
            assert entry["video"] is None and entry["thumbnail"] is None
        else:
            assert entry["state"] == "completed", entry
            assert entry["failure_reason"] is None
            assert entry["video"] == f"{entry['generation_id']}.mp4"
            assert entry["thumbnail"] == f"{entry['generation_id']}.jpg"
            assert (entry["width"], entry["height"]) != (None, None)
    completed = [e for e in entries if e["state"] == "completed"]
    assert manifest["counts"] == {
        k: v for k, v in {"completed": len(completed), "failed": len(entries) - len(completed)}.items() if v
    }

    # Files on disk: exactly the manifest's videos, real MP4s, with JPEG thumbnails.
    assert {p.name for p in folder.glob("*.mp4")} == {e["video"] for e in completed}
    for entry in completed:
        head = (folder / entry["video"]).read_bytes()[:12]
        assert head[4:8] == b"ftyp", f"{entry['video']} is not an MP4: {head!r}"
        assert (folder / entry["thumbnail"]).read_bytes()[:3] == b"\xff\xd8\xff"

    # The gallery plays every produced video, with its thumbnail as poster, and nothing else.
    videos = parse_gallery(folder / "index.html")
    assert sorted(v["src"] for v in videos) == sorted(e["video"] for e in completed)
    assert {v["src"]: v["poster"] for v in videos} == {e["video"]: e["thumbnail"] for e in completed}
    html = (folder / "index.html").read_text(encoding="utf-8")
    for entry in entries:
        if entry["state"] != "completed":
            assert entry["failure_reason"] in html
    return manifest


def rendered_map_indexes(airflow_home: Path, dag_id: str, run_id: str) -> dict[str, list[str | None]]:
    """What the UI shows for each mapped task instance of a run, by task id in map index order."""
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        rows = db.execute(
            "SELECT task_id, rendered_map_index FROM task_instance "
            "WHERE dag_id = ? AND run_id = ? AND map_index >= 0 ORDER BY task_id, map_index",
            (dag_id, run_id),
        ).fetchall()
    found: dict[str, list[str | None]] = {}
    for task_id, label in rows:
        found.setdefault(task_id, []).append(label)
    return found


# ---------------------------------------------------------------------------------- parsing


def load_dagbag(folder: Path) -> Any:
    """``DagBag(dag_folder=..., include_examples=False)``; Airflow 3.3 dropped ``include_examples``
    (examples are a bundle of their own there), so pass it only where it exists."""
    import inspect

    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2
        from airflow.models.dagbag import DagBag

    kwargs = {"include_examples": False} if "include_examples" in inspect.signature(DagBag).parameters else {}
    return DagBag(dag_folder=str(folder), **kwargs)


def test_every_example_dag_imports_fast_and_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access while parsing DAGs: {args!r}")

    # Airflow puts the DAGs folder on sys.path for the dag processor; do the same for `luma_common`.
    monkeypatch.syspath_prepend(str(DAGS))
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    for name in ("luma_common", *(f.removesuffix(".py") for f in EXPECTED_DAGS)):
        monkeypatch.delitem(sys.modules, name, raising=False)

    dagbag = load_dagbag(DAGS)

    assert dagbag.import_errors == {}
    assert set(dagbag.dag_ids) == set().union(*EXPECTED_DAGS.values())
    stats = {Path(s.file).name: s for s in dagbag.dagbag_stats}
    assert set(stats) == set(EXPECTED_DAGS), "luma_common.py must be skipped (.airflowignore)"
    for name, stat in stats.items():
        assert set(stat.dags.strip("[]").replace("'", "").split(", ")) == EXPECTED_DAGS[name]
        assert stat.duration.total_seconds() < 2, f"{name} took {stat.duration} to parse"
    for dag in dagbag.dags.values():
        assert dag.doc_md and "What it shows" in dag.doc_md, dag.dag_id
        assert "luma" in dag.tags and "example" in dag.tags


def test_each_dag_file_parses_alone_quickly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-parse each file on its own (warm imports): well under the 2 s budget each."""
    monkeypatch.syspath_prepend(str(DAGS))
    load_dagbag(DAGS)  # warm the imports once
    for name, dag_ids in EXPECTED_DAGS.items():
        started = time.perf_counter()
        bag = load_dagbag(DAGS / name)
        elapsed = time.perf_counter() - started
        assert bag.import_errors == {} and set(bag.dag_ids) == dag_ids
        assert elapsed < 2, f"{name}: {elapsed:.2f} s"


# ---------------------------------------------------------------------------------- end to end


def test_daily_content_end_to_end_with_a_failing_prompt(
    dags_test, sandbox, tmp_path: Path, airflow_home: Path
) -> None:
    prompts = [
        {"prompt": "A red fox trotting through fresh snow, low sun", "aspect_ratio": "16:9"},
        {"prompt": "Macro shot of dew on a spider web", "aspect_ratio": "1:1"},
        {"prompt": f"A flamingo in a pool #fail:{FAIL_REASON}", "aspect_ratio": "9:16"},
    ]
    prompts_file = write_prompt_file(tmp_path / "prompts.yaml", prompts)

    conf = {"prompts_file": str(prompts_file), "chunk_size": 2}
    run = dags_test("luma_daily_content", "2026-11-25", conf=conf)

    # The batch is reported, then `check` fails the run on purpose.
    assert run.returncode == 1, run.output[-3000:]
    assert "DagRun failed" in run.output
    manifest = check_batch(run.out_root / "2026-11-25", prompts, sandbox)
    assert manifest["counts"] == {"completed": 2, "failed": 1}
    failed = manifest["generations"][2]
    assert failed["failure_reason"] == FAIL_REASON

    # Two chunks (2 + 1 prompts). The failing prompt's wait says why and still succeeds, so
    # its chunk's download runs; `check` names the prompt and fails the run.
    second_chunk = run.task_log("chunks.wait", 1)
    assert FAIL_REASON in second_chunk and failed["generation_id"] in second_chunk
    assert FAIL_REASON in run.task_log("check")
    assert "Downloaded" in run.task_log("chunks.download", 0)

    def chunk_label(span: str, prompt: str) -> str:  # "<first>-<last>: <first prompt, 40 chars>"
        return f"{span}: {prompt if len(prompt) <= 40 else prompt[:39] + '…'}"

    labels = [chunk_label("1-2", prompts[0]["prompt"]), chunk_label("3", prompts[2]["prompt"])]
    assert [e["chunk"] for e in manifest["generations"]] == [labels[0], labels[0], labels[1]]

    # A wait defers to the (inline) triggerer unless its chunk is already done (every submit
    # runs first, so later chunks render meanwhile); nothing was paid for twice.
    assert 1 <= run.output.count(DEFERRED) <= 2
    assert sandbox.stats()["submissions"] == len(prompts)

    # Every task of a chunk is named after its prompts in the UI (not a bare index).
    labels = [label if len(label) <= 48 else label[:47] + "…" for label in labels]
    assert rendered_map_indexes(airflow_home, "luma_daily_content", manifest["run_id"]) == {
        "chunks.submit": labels,
        "chunks.wait": labels,
        "chunks.download": labels,
    }


def test_asset_pipeline_end_to_end_emits_the_batch_asset(
    dags_test, sandbox, tmp_path: Path, airflow_home: Path
) -> None:
    incoming = tmp_path / "luma_prompts" / "incoming.yaml"
    incoming.parent.mkdir()
    prompts = [
        {"prompt": "A lighthouse in a storm, waves crashing, cinematic", "aspect_ratio": "16:9"},
        {"prompt": "A paper plane gliding over rooftops at sunset", "aspect_ratio": "4:3"},
    ]
    write_prompt_file(incoming, prompts)
    asset_uri = f"file://{incoming}"

    # Still rendering when the waits start, even after a slow task start on a loaded machine: the
    # waits must defer (asserted below).
    sandbox.configure(process_seconds=4.0)
    # No conf: the prompts file defaults to the file named by the DAG's own schedule asset.
    run = dags_test("luma_asset_pipeline", LUMA_PROMPTS_ASSET=asset_uri)

    assert run.returncode == 0, run.output[-3000:]
    assert f"Reading prompts from {asset_uri}" in run.task_log("load_prompts")
    batches = list((run.out_root / "batches").iterdir())
    assert len(batches) == 1, batches
    manifest = check_batch(batches[0], prompts, sandbox)
    assert manifest["counts"] == {"completed": 2}
    assert DEFERRED in run.output
    assert sandbox.stats()["submissions"] == len(prompts)

    # The batch asset event carries the manifest location and the counts for downstream DAGs.
    with sqlite3.connect(airflow_home / "airflow.db") as db:
        events = db.execute(
            "SELECT e.extra, e.source_task_id, e.source_run_id FROM asset_event e JOIN asset a ON a.id = e.asset_id "
            "WHERE a.uri = 'luma://batches/incoming' AND e.source_dag_id = 'luma_asset_pipeline'"
        ).fetchall()
        schedule = db.execute(
            "SELECT a.uri FROM dag_schedule_asset_reference r JOIN asset a ON a.id = r.asset_id "
            "WHERE r.dag_id = 'luma_asset_pipeline'"
        ).fetchall()
    assert schedule == [(asset_uri,)]
    mine = [
        (json.loads(extra), task, run_id) for extra, task, run_id in events if run_id == manifest["run_id"]
    ]
    assert len(mine) == 1, events
    extra, task_id, _ = mine[0]
    assert task_id == "report"
    assert extra == {
        "run_id": manifest["run_id"],
        "manifest": f"{manifest['output_dir']}/manifest.json",
        "gallery": f"{manifest['output_dir']}/index.html",
        "total": 2,
        "completed": 2,
        "failed": 0,
    }
    assert extra["manifest"] == f"file://{batches[0]}/manifest.json"


def test_image_to_video_then_extend_end_to_end(dags_test, sandbox) -> None:
    run = dags_test("luma_image_to_video")

    assert run.returncode == 0, run.output[-3000:]
    folders = list((run.out_root / "image_to_video").iterdir())
    assert len(folders) == 1, folders
    folder = folders[0]
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    first, extension = manifest["generations"]
    assert [first["step"], extension["step"]] == ["keyframes", "extend"]
    assert extension["extends"] == first["generation_id"] != extension["generation_id"]
    check_batch(folder, [{"prompt": first["prompt"]}, {"prompt": extension["prompt"]}], sandbox)

    # What the gateway received: keyframes as data URIs, then an extend of the *completed* first clip.
    sent_first = sandbox_generation(sandbox, first["generation_id"])["request"]
    assert sent_first["image_url"].startswith("data:image/png;base64,")
    assert sent_first["image_end_url"].startswith("data:image/png;base64,")
    assert sent_first["image_url"] != sent_first["image_end_url"]
    assert (
        sandbox_generation(sandbox, extension["generation_id"])["request"]["extend_of"]
        == first["generation_id"]
    )
    assert sandbox.stats()["submissions"] == 2

    # Both waits deferred; the extension was submitted only after the first clip was done.
    assert run.output.count(DEFERRED) == 2
    assert run.output.index("[DAG TEST] end task task_id=wait_keyframes") < run.output.index(
        "[DAG TEST] starting task_id=extend"
    )


def test_a_clean_run_logs_no_errors(dags_test, sandbox, tmp_path: Path) -> None:
    prompts_file = write_prompt_file(tmp_path / "one.yaml", [{"prompt": "A calm lake at dawn"}])

    run = dags_test("luma_daily_content", "2026-11-26", conf={"prompts_file": str(prompts_file)})

    assert run.returncode == 0, run.output[-3000:]
    # One prompt -> one download XCom, which Airflow 3 pulls unwrapped: the video must still show.
    manifest = check_batch(run.out_root / "2026-11-26", [{"prompt": "A calm lake at dawn"}], sandbox)
    assert manifest["counts"] == {"completed": 1}
    spurious = [
        line for line in run.output.splitlines() if "XCom not found" in line and "luma_video_url" in line
    ]
    assert spurious == []


def test_daily_dag_rides_out_gateway_faults(dags_test, sandbox, tmp_path: Path) -> None:
    """The DAG layer of the fault matrix: a gateway that rate-limits, errors, drops connections
    and cuts downloads short throughout the run still yields every video, paid for once."""
    prompts = [
        {"prompt": "A lighthouse in a storm", "aspect_ratio": "16:9"},
        {"prompt": "Koi fish under lily pads", "aspect_ratio": "1:1"},
    ]
    prompts_file = write_prompt_file(tmp_path / "faulty.yaml", prompts)
    faults = [
        {"route": "submit", "kind": "status", "status": 429, "retry_after": 0, "times": 2},
        {"route": "submit", "kind": "status", "status": 503, "times": 1},
        {"route": "tasks", "kind": "status", "status": 500, "times": 2},
        {"route": "tasks", "kind": "reset", "times": 1},
        {"route": "tasks", "kind": "truncated_json", "times": 1},
        {"route": "media", "kind": "short_body", "times": 1},
        {"route": "media", "kind": "reset", "times": 1},
    ]
    sandbox.add_faults(faults)

    run = dags_test("luma_daily_content", "2026-11-28", conf={"prompts_file": str(prompts_file)})

    assert run.returncode == 0, run.output[-3000:]
    manifest = check_batch(run.out_root / "2026-11-28", prompts, sandbox)
    assert manifest["counts"] == {"completed": 2}
    stats = sandbox.stats()
    # Every injected fault really happened, and still nothing was paid for twice.
    assert sum(f["times"] for f in faults) == sum(stats["faults_applied"].values())
    assert stats["submissions"] == len(prompts)
