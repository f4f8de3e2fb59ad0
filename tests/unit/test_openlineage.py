"""luma_provider.openlineage: dataset naming and what the operators report (no sockets, no DB).

The real emission (listener, transport, events on disk) is tested in tests/system/test_openlineage.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path, PurePosixPath
from types import SimpleNamespace
from typing import Any

import pytest

from luma_provider import openlineage as ol
from luma_provider.openlineage import DatasetName

# ---------------------------------------------------------------------------------- naming


@pytest.mark.parametrize(
    ("base_url", "namespace"),
    [
        ("http://127.0.0.1:8000", "luma://127.0.0.1:8000"),
        ("https://api.lumalabs.ai/dream-machine/v1", "luma://api.lumalabs.ai"),
        ("https://Gateway.Example.COM", "luma://gateway.example.com"),
        ("https://gateway.example:8443/", "luma://gateway.example:8443"),
    ],
)
def test_a_generation_is_named_after_the_connection_host(base_url: str, namespace: str) -> None:
    name = ol.generation_dataset(base_url, "4a1b-77")
    assert name == DatasetName(namespace, "generations/4a1b-77")
    assert name.uri == f"{namespace}/generations/4a1b-77"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        # Local files: namespace "file", the absolute path as name (as Airflow's file Assets).
        ("file:///data/out/2026-11-25/a.mp4", ("file", "/data/out/2026-11-25/a.mp4")),
        ("file:/data/prompts.yaml", ("file", "/data/prompts.yaml")),
        ("/data/prompts.yaml", ("file", "/data/prompts.yaml")),
        ("file://nas01/share/a.mp4", ("file://nas01", "/share/a.mp4")),
        # Buckets: namespace scheme://bucket, the key as name; a connection id (conn@bucket) dropped.
        ("s3://videos/2026-11-25/a.mp4", ("s3://videos", "2026-11-25/a.mp4")),
        ("s3://aws_luma@videos/daily/a.jpg", ("s3://videos", "daily/a.jpg")),
        ("s3a://videos/a.mp4", ("s3://videos", "a.mp4")),
        ("s3://videos", ("s3://videos", "/")),
        ("s3://videos/", ("s3://videos", "/")),
        ("gs://media-bucket/luma/a.mp4", ("gs://media-bucket", "luma/a.mp4")),
        ("gcs://media-bucket/luma/a.mp4", ("gs://media-bucket", "luma/a.mp4")),
        # http(s): namespace scheme://host[:port], the path as name; never the query or fragment.
        ("https://cdn.example.com/frames/a.png", ("https://cdn.example.com", "/frames/a.png")),
        ("https://CDN.Example.com/a.png?X-Amz-Signature=abc#top", ("https://cdn.example.com", "/a.png")),
        ("http://frames.example:8080/b.png", ("http://frames.example:8080", "/b.png")),
        ("https://user:pa55@cdn.example.com/a.png", ("https://cdn.example.com", "/a.png")),
        ("https://cdn.example.com", ("https://cdn.example.com", "/")),
        # Anything else: scheme://authority + path.
        ("luma://batches/incoming", ("luma://batches", "incoming")),
        (
            "abfss://media@account.dfs.core.windows.net/luma/a.mp4",
            ("abfss://media@account.dfs.core.windows.net", "luma/a.mp4"),
        ),
        ("ftp://bob:hunter2@files.example/a.mp4", ("ftp://files.example", "a.mp4")),
    ],
)
def test_uris_follow_the_openlineage_naming_conventions(uri: str, expected: tuple[str, str]) -> None:
    assert ol.uri_dataset(uri) == DatasetName(*expected)


def test_a_relative_path_is_the_local_file_the_task_read() -> None:
    assert ol.uri_dataset("prompts/daily.yaml") == DatasetName("file", os.path.abspath("prompts/daily.yaml"))


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", 42, ["s3://b/k"], "data:image/png;base64,iVBORw0KGgo=", "DATA:image/png;base64,AAAA"],
)
def test_no_dataset_for_inline_data_or_non_uris(value: Any) -> None:
    assert ol.uri_dataset(value) is None


def test_keyframes_are_http_urls_only() -> None:
    assert ol.keyframe_dataset("https://cdn.example.com/k.png?token=1") == DatasetName(
        "https://cdn.example.com", "/k.png"
    )
    assert ol.keyframe_dataset("data:image/png;base64,iVBORw0KGgo=") is None
    assert ol.keyframe_dataset("s3://bucket/k.png") is None
    assert ol.keyframe_dataset(None) is None


@pytest.mark.parametrize(
    "url",
    [
        "https://cdn.example.com/k.png?X-Amz-Credential=SECRET&X-Amz-Signature=SECRET",
        "https://cdn.example.com/k.png?token=SECRET#SECRET",
        "https://SECRET:SECRET@cdn.example.com/k.png",
        "http://cdn.example.com:9000/k.png;SECRET?SECRET",
        "s3://SECRET:SECRET@bucket/k.png?versionId=SECRET",
    ],
)
def test_query_strings_and_credentials_never_reach_a_dataset(url: str) -> None:
    name = ol.uri_dataset(url)
    assert name is not None
    assert "SECRET" not in name.namespace + name.name


def test_inlets_give_their_uris() -> None:
    from airflow.sdk import Asset, AssetAlias, ObjectStoragePath

    assert ol.inlet_uri(Asset("s3://prompts/daily.csv")) == "s3://prompts/daily.csv"
    assert ol.inlet_uri(ObjectStoragePath("file:///data/prompts.yaml")) == "file:///data/prompts.yaml"
    assert ol.inlet_uri(PurePosixPath("/data/prompts.yaml")) == "/data/prompts.yaml"
    assert ol.inlet_uri("gs://b/prompts.yaml") == "gs://b/prompts.yaml"
    assert ol.inlet_uri(AssetAlias("daily-prompts")) is None
    assert ol.inlet_uri(object()) is None


# ---------------------------------------------------------------------------------- task results

BATCH_RESULT = {
    "total": 4,
    "completed": 1,
    "failed": 1,
    "pending": 1,
    "prompts": [
        {
            "index": 0,
            "prompt": "a",
            "generation_id": "g-0",
            "state": "completed",
            "generation": {"id": "g-0"},
        },
        {"index": 1, "prompt": "b", "generation_id": "g-1", "state": "failed", "generation": {"id": "g-1"}},
        {"index": 2, "prompt": "c", "generation_id": None, "state": "refused", "generation": None},
        {"index": 3, "prompt": "d", "generation_id": "g-3", "state": "dreaming", "generation": None},
    ],
}


@pytest.mark.parametrize(
    ("value", "ids"),
    [
        ("g-0", ["g-0"]),
        ({"id": "g-0", "state": "completed"}, ["g-0"]),
        ({"generation_id": "g-0", "video": "file:///o/g-0.mp4", "thumbnail": None}, ["g-0"]),
        (["g-0", {"id": "g-1"}, "g-0"], ["g-0", "g-1"]),
        (BATCH_RESULT, ["g-0", "g-1", "g-3"]),
        (None, []),
        ("", []),
        ({"total": 0, "prompts": []}, []),
    ],
)
def test_generation_ids_of_every_result_shape(value: Any, ids: list[str]) -> None:
    assert ol.generation_ids(value) == ids


def test_a_batch_downloads_only_its_completed_prompts() -> None:
    assert ol.generation_ids(BATCH_RESULT, completed_only=True) == ["g-0"]


def test_written_uris_of_every_download_result_shape() -> None:
    assert ol.written_uris("s3://b/g-0.mp4") == ["s3://b/g-0.mp4"]
    assert ol.written_uris(
        [
            {"generation_id": "g-0", "video": "s3://b/g-0.mp4", "thumbnail": "s3://b/g-0.jpg"},
            {"generation_id": "g-1", "video": "s3://b/g-1.mp4", "thumbnail": None},
        ]
    ) == ["s3://b/g-0.mp4", "s3://b/g-0.jpg", "s3://b/g-1.mp4"]
    assert ol.written_uris(None) == []


def test_keyframe_urls_of_a_single_prompt_and_of_a_batch() -> None:
    assert ol.keyframe_urls("https://k/a.png", None) == ["https://k/a.png"]
    assert ol.keyframe_urls(None, None) == []
    shared = "https://k/shared.png"
    prompts: list[Any] = [
        "plain prompt",  # uses the shared keyframe
        {"prompt": "own", "image_url": "https://k/own.png", "image_end_url": "https://k/end.png"},
        {"prompt": "none", "image_url": None},  # None: the shared one
    ]
    assert ol.keyframe_urls(shared, None, prompts) == [shared, "https://k/own.png", "https://k/end.png"]
    # Every prompt overrides the shared keyframe: it was never sent.
    assert ol.keyframe_urls(shared, None, [{"prompt": "x", "image_url": "https://k/x.png"}]) == [
        "https://k/x.png"
    ]


# ---------------------------------------------------------------------------------- lineage

BASE = "https://gateway.example"


def test_generate_lineage_of_a_batch() -> None:
    inputs, outputs = ol.generate_datasets(
        base_url=BASE,
        result=BATCH_RESULT,
        prompt_source="s3://prompts/daily.yaml",
        inlets=[SimpleNamespace(uri="s3://prompts/daily.yaml"), SimpleNamespace(uri="gs://ref/style.json")],
        keyframes=[
            "https://cdn.example/a.png?sig=1",
            "data:image/png;base64,iVBORw0KGgo=",
            "https://cdn.example/a.png",
        ],
    )
    assert inputs == [
        DatasetName("s3://prompts", "daily.yaml"),  # prompt_source and the same inlet: once
        DatasetName("gs://ref", "style.json"),
        DatasetName("https://cdn.example", "/a.png"),
    ]
    assert outputs == [DatasetName("luma://gateway.example", f"generations/g-{i}") for i in (0, 1, 3)]


def test_an_extension_reads_the_generation_it_extends() -> None:
    inputs, outputs = ol.generate_datasets(base_url=BASE, result="g-9", extend_generation_id="g-0")
    assert inputs == [DatasetName("luma://gateway.example", "generations/g-0")]
    assert outputs == [DatasetName("luma://gateway.example", "generations/g-9")]


def test_download_lineage_names_the_generations_it_read_and_the_files_it_wrote() -> None:
    result = [
        {"generation_id": "g-0", "video": "s3://media/d/g-0.mp4", "thumbnail": "s3://media/d/g-0.jpg"},
    ]
    inputs, outputs = ol.download_datasets(base_url=BASE, requested=BATCH_RESULT, result=result)
    assert inputs == [DatasetName("luma://gateway.example", "generations/g-0")]
    assert outputs == [DatasetName("s3://media", "d/g-0.mp4"), DatasetName("s3://media", "d/g-0.jpg")]

    # Bare URIs (no thumbnails) do not name their generation: the requested ones are the inputs.
    inputs, outputs = ol.download_datasets(
        base_url=BASE, requested={"id": "g-5"}, result="file:///out/g-5.mp4"
    )
    assert inputs == [DatasetName("luma://gateway.example", "generations/g-5")]
    assert outputs == [DatasetName("file", "/out/g-5.mp4")]


def test_operator_lineage_is_the_openlineage_providers_type() -> None:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.event_v2 import Dataset

    lineage = ol.operator_lineage(
        [DatasetName("file", "/p.yaml")], [DatasetName("luma://h", "generations/g")]
    )
    assert isinstance(lineage, OperatorLineage)
    assert lineage.inputs == [Dataset(namespace="file", name="/p.yaml")]
    assert lineage.outputs == [Dataset(namespace="luma://h", name="generations/g")]


class RecordingTI:
    """What ``own_xcom`` needs of a task instance: identity and ``xcom_pull``."""

    task_id = "chunks.submit"
    map_index = 3

    def __init__(self, xcoms: dict[str, Any]) -> None:
        self.xcoms = xcoms
        self.pulls: list[dict[str, Any]] = []

    def xcom_pull(self, **kwargs: Any) -> Any:
        self.pulls.append(kwargs)
        return self.xcoms.get(kwargs["key"])


def test_own_xcom_reads_this_instances_first_pushed_key() -> None:
    ti = RecordingTI({"batch_submitted": [{"generation_id": "g-1"}]})
    assert ol.own_xcom(ti, "return_value", "batch_result", "batch_submitted") == [{"generation_id": "g-1"}]
    assert [p["key"] for p in ti.pulls] == ["return_value", "batch_result", "batch_submitted"]
    assert all(p["task_ids"] == "chunks.submit" and p["map_indexes"] == 3 for p in ti.pulls)
    assert ol.own_xcom(RecordingTI({}), "return_value") is None


# ---------------------------------------------------------------------------------- the operators


def with_settings(op: Any, base_url: str = BASE) -> Any:
    """The operator with its hook's connection settings given (no connection lookup)."""
    op.__dict__["hook"] = SimpleNamespace(settings=SimpleNamespace(base_url=base_url))
    return op


def test_generate_operator_reports_prompt_source_inlets_keyframes_and_its_generations() -> None:
    from airflow.sdk import Asset

    from luma_provider.operators.luma import LumaGenerateOperator

    op = with_settings(
        LumaGenerateOperator(
            task_id="submit",
            prompts=["a", {"prompt": "b", "image_url": "https://cdn.example/b.png?token=t"}],
            image_end_url="data:image/png;base64,iVBORw0KGgo=",
            prompt_source="/data/prompts.yaml",
            inlets=[Asset("s3://prompts/extra.csv")],
        )
    )
    lineage = op.get_openlineage_facets_on_complete(RecordingTI({"return_value": BATCH_RESULT}))
    assert [(d.namespace, d.name) for d in lineage.inputs] == [
        ("file", "/data/prompts.yaml"),
        ("s3://prompts", "extra.csv"),
        ("https://cdn.example", "/b.png"),
    ]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [
        ("luma://gateway.example", f"generations/g-{i}") for i in (0, 1, 3)
    ]


def test_generate_operator_single_prompt_uses_the_id_it_submitted() -> None:
    from luma_provider.operators.luma import LumaGenerateOperator

    op = with_settings(LumaGenerateOperator(task_id="submit", prompt="a", image_url="https://k/a.png"))
    op._submitted_id = "g-7"
    ti = RecordingTI({})
    lineage = op.get_openlineage_facets_on_complete(ti)
    assert ti.pulls == []  # no XCom round trip when the operator knows
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("https://k", "/a.png")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("luma://gateway.example", "generations/g-7")]

    # Resumed after a deferral: a fresh operator, the id comes from the `generation` XCom.
    op = with_settings(LumaGenerateOperator(task_id="submit", prompt="a"))
    lineage = op.get_openlineage_facets_on_complete(RecordingTI({"generation": {"id": "g-8"}}))
    assert [d.name for d in lineage.outputs] == ["generations/g-8"]


def test_download_operator_reports_generations_in_and_files_out() -> None:
    from luma_provider.operators.luma import LumaDownloadVideoOperator

    op = with_settings(
        LumaDownloadVideoOperator(task_id="download", generation_id=BATCH_RESULT, destination="s3://media/d/")
    )
    result = ["s3://media/d/g-0.mp4"]
    lineage = op.get_openlineage_facets_on_complete(RecordingTI({"return_value": result}))
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("luma://gateway.example", "generations/g-0")]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("s3://media", "d/g-0.mp4")]


def test_the_provider_imports_and_builds_operators_without_openlineage_installed(tmp_path: Path) -> None:
    """Block the OpenLineage client and the provider's lineage code: importing the provider,
    building operators (DAG parsing) and naming still work, and load none of it.

    (The provider's ``get_provider_info`` stays importable: Airflow's provider discovery reads
    every installed provider's, which a missing package simply would not have.)
    """
    code = """
import sys
BLOCKED = ("openlineage", "airflow.providers.openlineage.extractors", "airflow.providers.openlineage.plugins")
def blocked(name):
    return any(name == b or name.startswith(b + ".") for b in BLOCKED)
class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NotInstalled())
import luma_provider, luma_provider.openlineage as ol
from luma_provider.operators.luma import LumaDownloadVideoOperator, LumaGenerateOperator
LumaGenerateOperator(task_id="g", prompt="p", prompt_source="s3://b/p.yaml")
LumaDownloadVideoOperator(task_id="d", generation_id="x", destination="/tmp/")
assert ol.uri_dataset("s3://b/p.yaml") == ol.DatasetName("s3://b", "p.yaml")
try:
    ol.operator_lineage([], [])
except ModuleNotFoundError:
    pass
else:
    raise AssertionError("operator_lineage needs the OpenLineage provider")
loaded = [m for m in sys.modules if blocked(m)]
assert not loaded, loaded
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env["AIRFLOW_HOME"] = str(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), (
        proc.stdout[-2000:] + proc.stderr[-3000:]
    )
