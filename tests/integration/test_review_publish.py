"""``luma_reviewed_release``'s run-time helpers on local storage and on a real S3 API.

``build_review_request`` (what the reviewer is offered) and ``publish_approved`` (copy the
approved videos to ``published/``, record the decision in the manifest) run here against a batch
folder laid out as ``report`` writes it, on ``file://`` and on moto's standalone S3 server (its
own process, reached over HTTP through an Airflow ``aws`` connection, as AWS or MinIO would be).
What is on the bucket is read back with a separate boto3 client. The whole DAG, with a reviewer
answering through the REST API, runs in ``tests/e2e/test_review_gate.py``.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

DAGS = Path(__file__).resolve().parents[2] / "dags"
REGION = "us-east-1"
KEY_ID, SECRET = "moto-review-key-id", "moto-review-secret"
FAIL_REASON = "Brand guidelines: no flamingos"
#: (prompt, state, video on storage?) as ``report`` would list them.
ENTRIES = [
    ("A lighthouse at dawn, waves crashing", "completed", True),
    ("Close-up of ink drops blooming in water", "completed", True),
    ("A flamingo preening in a pool", "failed", False),
    ("A paper plane over rooftops", "completed", False),  # its download never landed
    ("Koi under lily pads, top-down", "completed", True),
]


@pytest.fixture(scope="module")
def dag_module() -> Iterator[ModuleType]:
    """``dags/luma_reviewed_release.py`` imported as Airflow imports it (the DAGs folder on sys.path)."""
    sys.path.insert(0, str(DAGS))
    for name in ("luma_common", "luma_reviewed_release"):
        sys.modules.pop(name, None)
    try:
        import luma_reviewed_release

        yield luma_reviewed_release
    finally:
        sys.path.remove(str(DAGS))
        for name in ("luma_common", "luma_reviewed_release"):
            sys.modules.pop(name, None)


# ------------------------------------------------------------------------------- storage backends


@dataclass
class Storage:
    """A batch folder URI and a way to read it back without the code under test."""

    folder: str
    names: Callable[[str], set[str]]  # file names directly under folder/<sub>
    read: Callable[[str], bytes]  # bytes of folder/<relative path>


@pytest.fixture(params=["file", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Storage:
    if request.param == "file":
        root = tmp_path / "out" / "reviewed" / "20261125T060000"
        root.mkdir(parents=True)

        def local_names(sub: str) -> set[str]:
            return {p.name for p in (root / sub).iterdir()} if (root / sub).is_dir() else set()

        return Storage(f"file://{root}", local_names, lambda rel: (root / rel).read_bytes())

    import boto3

    moto = request.getfixturevalue("moto_server")
    conn_id = f"review_s3_{uuid.uuid4().hex[:8]}"  # Airflow caches a filesystem per connection id
    extra = {"endpoint_url": moto, "region_name": REGION}
    conn = {"conn_type": "aws", "login": KEY_ID, "password": SECRET, "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
    client = boto3.client(
        "s3", endpoint_url=moto, region_name=REGION, aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET
    )
    bucket = f"luma-review-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    prefix = "videos/reviewed/20261125T060000"

    def s3_names(sub: str) -> set[str]:
        page = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/{sub}/")
        return {o["Key"].rsplit("/", 1)[-1] for o in page.get("Contents", [])}

    def s3_read(rel: str) -> bytes:
        return client.get_object(Bucket=bucket, Key=f"{prefix}/{rel}")["Body"].read()

    return Storage(f"s3://{conn_id}@{bucket}/{prefix}", s3_names, s3_read)


def write_batch(storage: Storage) -> dict[str, Any]:
    """Videos, thumbnails and ``manifest.json`` as ``report`` leaves them; returns the manifest."""
    from airflow.sdk import ObjectStoragePath

    from luma_provider.gallery import build_manifest, render_manifest

    folder = ObjectStoragePath(storage.folder)
    entries = []
    for number, (prompt, state, on_storage) in enumerate(ENTRIES, start=1):
        gen_id = f"00000000-0000-4000-8000-00000000000{number}"
        completed = state == "completed"
        if on_storage:
            (folder / f"{gen_id}.mp4").write_bytes(f"video {number}".encode())
            (folder / f"{gen_id}.jpg").write_bytes(f"thumb {number}".encode())
        entries.append(
            {
                "prompt": prompt,
                "generation_id": gen_id,
                "state": state,
                "failure_reason": None if completed else FAIL_REASON,
                "video": f"{gen_id}.mp4" if on_storage else None,
                "thumbnail": f"{gen_id}.jpg" if on_storage else None,
                "video_uri": str(folder / f"{gen_id}.mp4") if on_storage else None,
            }
        )
    manifest = build_manifest("manual__2026-11-25T06:00:00+00:00", entries, output_dir=storage.folder)
    (folder / "manifest.json").write_text(render_manifest(manifest), encoding="utf-8")
    return manifest


def read_manifest(storage: Storage) -> dict[str, Any]:
    return json.loads(storage.read("manifest.json"))


# ------------------------------------------------------------------------------------------ tests


def test_the_reviewer_is_offered_only_videos_on_storage(dag_module: ModuleType, storage: Storage) -> None:
    manifest = write_batch(storage)
    output_root = storage.folder.rsplit("/reviewed/", 1)[0]

    request = dag_module.build_review_request(manifest, output_root, "", "2026-11-25")

    ids = {
        p: e["generation_id"]
        for p, e in zip([p for p, _, _ in ENTRIES], manifest["generations"], strict=True)
    }
    assert request["option_map"] == {
        f"1. {ENTRIES[0][0]}": ids[ENTRIES[0][0]],
        f"2. {ENTRIES[1][0]}": ids[ENTRIES[1][0]],
        f"5. {ENTRIES[4][0]}": ids[ENTRIES[4][0]],
    }
    assert request["options"] == [*request["option_map"], dag_module.PUBLISH_NONE]
    assert request["subject"] == "Publish which of 3 Luma videos of 2026-11-25?"
    assert request["manifest"] == f"{storage.folder}/manifest.json"
    body = request["body"]
    gallery = f"{storage.folder}/index.html"
    assert f"[{gallery}]({gallery})" in body
    assert f"`{storage.folder}/manifest.json`" in body
    assert f"3. {ENTRIES[2][0]}: {FAIL_REASON}" in body
    assert f"4. {ENTRIES[3][0]}: completed, but its video is not on storage" in body

    # A public base URL for output_root makes the gallery link clickable.
    https = dag_module.build_review_request(manifest, output_root, "https://cdn.example/v/", "2026-11-25")
    assert f"[{gallery}](https://cdn.example/v/reviewed/20261125T060000/index.html)" in https["body"]


def test_publish_copies_exactly_the_approved_videos_and_records_the_decision(
    dag_module: ModuleType, storage: Storage
) -> None:
    manifest = write_batch(storage)
    request = dag_module.build_review_request(manifest, storage.folder, "", "2026-11-25")
    first, second, fifth = list(request["option_map"])
    ids = [e["generation_id"] for e in manifest["generations"]]
    answered_at = dt.datetime(2026, 11, 25, 9, 30, 12, 345000, tzinfo=dt.UTC)
    alice = {"id": "alice", "name": "Alice Reviewer"}

    review = dag_module.publish_approved(
        {
            "chosen_options": [fifth, first],
            "params_input": {"note": "ink drops need a colour pass"},
            "responded_at": answered_at,
            "responded_by_user": alice,
            "timed_out": False,
        },
        request,
    )

    approved = [ids[0], ids[4]]
    assert storage.names("published") == {f"{i}.mp4" for i in approved} | {f"{i}.jpg" for i in approved}
    for number, gen_id in ((1, ids[0]), (5, ids[4])):
        assert storage.read(f"published/{gen_id}.mp4") == f"video {number}".encode()
        assert storage.read(f"published/{gen_id}.jpg") == f"thumb {number}".encode()
    after = read_manifest(storage)
    assert (
        after["review"]
        == review
        == {
            "task_id": "review",
            "decided_by": alice,
            "decided_at": "2026-11-25T09:30:12.345000+00:00",
            "timed_out": False,
            "chosen_options": [fifth, first],
            "note": "ink drops need a colour pass",
            "offered": 3,
            "approved": approved,  # in manifest order, whatever order they were ticked in
            "published_to": f"{storage.folder}/published",
        }
    )
    assert [e["published"] for e in after["generations"]] == [True, False, False, False, True]
    assert [e["published_uri"] for e in after["generations"]] == [
        f"{storage.folder}/published/{ids[0]}.mp4",
        None,
        None,
        None,
        f"{storage.folder}/published/{ids[4]}.mp4",
    ]
    # The report's own fields are untouched.
    strip = ("published", "published_uri")
    assert [{k: v for k, v in e.items() if k not in strip} for e in after["generations"]] == manifest[
        "generations"
    ]
    assert storage.read(f"{ids[1]}.mp4") == b"video 2", "originals stay where they are"

    # The review is cleared and answered again: published/ holds exactly the new choice.
    dag_module.publish_approved(
        {
            "chosen_options": [second],
            "params_input": {},
            "responded_at": answered_at,
            "responded_by_user": alice,
        },
        request,
    )
    assert storage.names("published") == {f"{ids[1]}.mp4", f"{ids[1]}.jpg"}
    again = read_manifest(storage)
    assert again["review"]["approved"] == [ids[1]] and again["review"]["note"] is None
    assert [e["published"] for e in again["generations"]] == [False, True, False, False, False]

    # Nobody answers in time: the scheduler applies the default, "publish none" (which also wins
    # over any ticked video), and publish says so.
    none = dag_module.publish_approved(
        {
            "chosen_options": [dag_module.PUBLISH_NONE, first],
            "params_input": {"note": ""},
            "responded_at": answered_at,
            "responded_by_user": None,
            "timed_out": True,
        },
        request,
    )
    assert storage.names("published") == set()
    assert none["approved"] == [] and none["timed_out"] is True and none["decided_by"] is None
    assert not any(e["published"] for e in read_manifest(storage)["generations"])
