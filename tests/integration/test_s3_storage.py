"""Outputs and the ledger on a real S3 API: moto's standalone server, in its own process.

The provider reaches the bucket only through ``ObjectStoragePath("s3://...")`` and an Airflow
``aws`` connection whose extra points at the server (``endpoint_url``), over HTTP, as it would
reach AWS or MinIO; nothing is mocked in-process. Everything asserted about the bucket is read
back with a separate boto3 client (or plain HTTP), never through the provider.

The DAGs have the daily pipeline's shape (``load_prompts`` -> mapped chunk group submit -> wait
-> download -> ``report`` (all_done) -> ``check``) and run under ``dag.test()`` against the
sandbox gateway. One uses the shipped ``luma_common.chunk_group`` with the connection in the URI
(``s3://<conn>@bucket/...``, what the daily pipeline's ``output_root`` takes); the others a copy
of that group with ``storage_conn_id``/``ledger_path``/``ledger_conn_id`` set on the operators.
"""

from __future__ import annotations

import hashlib
import json
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import boto3
import pytest
import requests
from botocore.config import Config

from luma_provider.sandbox import media

DAGS = Path(__file__).resolve().parents[2] / "dags"
PROMPTS = [f"A paper boat on a rain puddle, shot {i}" for i in range(3)]
REGION = "us-east-1"
DUMMY_KEY_ID = "moto-dummy-access-key"
DUMMY_SECRET = "moto-dummy-secret-key"


@dataclass
class Bucket:
    client: Any
    name: str
    conn_id: str
    endpoint: str

    def keys(self, prefix: str = "") -> dict[str, int]:
        """Every object under ``prefix`` and its size, read with boto3."""
        found: dict[str, int] = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix):
            found.update({o["Key"]: int(o["Size"]) for o in page.get("Contents", [])})
        return found

    def history(self, prefix: str = "") -> tuple[list[tuple[str, int]], set[str]]:
        """Every version ever written under ``prefix`` as (key, size), and the deleted keys.

        With versioning on, S3 keeps each write and turns a delete into a delete marker: this is
        every object anyone could ever have seen, not just what is left at the end.
        """
        versions: list[tuple[str, int]] = []
        deleted: set[str] = set()
        pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.name, Prefix=prefix)
        for page in pages:
            versions += [(v["Key"], int(v["Size"])) for v in page.get("Versions", [])]
            deleted |= {m["Key"] for m in page.get("DeleteMarkers", []) if m["IsLatest"]}
        return versions, deleted

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def uri(self, path: str, *, with_conn: bool = False) -> str:
        """``s3://bucket/path``, or ``s3://<conn>@bucket/path`` (the connection in the URI)."""
        return f"s3://{self.conn_id}@{self.name}/{path}" if with_conn else f"s3://{self.name}/{path}"

    def allow_public_reads(self) -> None:
        """A bucket policy letting anyone GET its objects (how a gallery is published)."""
        statement = {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{self.name}/*",
        }
        policy = {"Version": "2012-10-17", "Statement": [statement]}
        self.client.put_bucket_policy(Bucket=self.name, Policy=json.dumps(policy))

    def http_url(self, key: str) -> str:
        """The object's path-style URL on the server, as a browser opening the gallery would use."""
        return f"{self.endpoint}/{self.name}/{key}"


@pytest.fixture
def bucket(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A fresh bucket and an Airflow ``aws`` connection (env var) pointing at the server."""
    conn_id = f"luma_s3_{uuid.uuid4().hex[:8]}"  # unique: Airflow caches a store per connection id
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "aws",
                "login": DUMMY_KEY_ID,
                "password": DUMMY_SECRET,
                "extra": {"endpoint_url": moto_server, "region_name": REGION},
            }
        ),
    )
    client = boto3.client(
        "s3",
        endpoint_url=moto_server,
        region_name=REGION,
        aws_access_key_id=DUMMY_KEY_ID,
        aws_secret_access_key=DUMMY_SECRET,
        config=Config(retries={"max_attempts": 2}),
    )
    name = f"luma-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=name)
    return Bucket(client, name, conn_id, moto_server)


# ----------------------------------------------------------------------------- the pipeline
@pytest.fixture
def pipeline(run_dag, gateway, monkeypatch: pytest.MonkeyPatch):
    """``pipeline(body)`` -> DagResult, with ``dags/`` importable (``luma_common``)."""
    monkeypatch.syspath_prepend(str(DAGS))
    monkeypatch.setenv("LUMA_POLL_INTERVAL", "0.3")
    monkeypatch.setenv("LUMA_CHUNK_CONCURRENCY", "1")  # downloads in order: a fault hits a known one
    sys.modules.pop("luma_common", None)
    yield run_dag.run
    sys.modules.pop("luma_common", None)


def dag_body(
    prompts: list[str],
    *,
    chunk_size: int,
    report_dir: str,
    destination: str,
    shipped_group: bool = False,
    storage_conn_id: str | None = None,
    idempotency_key: str | None = None,
    ledger_path: str | None = None,
    ledger_conn_id: str | None = None,
) -> str:
    """The daily pipeline's shape: load -> chunk group (mapped) -> report (all_done) -> check."""
    rows = [{"prompt": p} for p in prompts]
    if shipped_group:
        group = f"chunk_group({destination!r})"
        define = ""
    else:  # luma_common.chunk_group, plus the storage and ledger parameters it does not expose
        group = "chunk"
        define = f"""
        @task_group(group_id="chunks")
        def chunk(prompts, label):
            submit = LumaGenerateOperator(
                task_id="submit", prompts=prompts, map_label=label, max_failed_fraction=1.0,
                idempotency_key={idempotency_key!r}, ledger_path={ledger_path!r},
                ledger_conn_id={ledger_conn_id!r},
            )
            wait = LumaTaskSensor(
                task_id="wait", generation_id=submit.output, max_failed_fraction=1.0,
                poll_interval=0.3, timeout=120, map_label=label,
            )
            return LumaDownloadVideoOperator(
                task_id="download", generation_id=wait.output, include_thumbnail=True,
                max_concurrent_downloads=1, destination={destination!r},
                storage_conn_id={storage_conn_id!r}, map_label=label,
            )
        """
    return f"""
        from airflow.sdk import task_group
        from luma_common import chunk_group, raise_if_any_failed

        @task
        def load_prompts() -> list:
            from luma_common import chunk_prompts
            return chunk_prompts({rows!r}, {chunk_size})
        {define}
        @task(trigger_rule="all_done")
        def report(run_id, ti=None):
            from luma_common import write_chunk_report
            return write_chunk_report(ti=ti, run_id=run_id, output_dir={report_dir!r})

        @task
        def check(summary):
            raise_if_any_failed(summary)

        summary = report()
        {group}.expand_kwargs(load_prompts()) >> summary
        check(summary)
    """


def content_length(url: str) -> int:
    """What the sandbox's CDN says the file's size is (plain HTTP, outside the provider)."""
    with requests.get(url, stream=True, timeout=10) as response:
        response.raise_for_status()
        return int(response.headers["Content-Length"])


def gallery_links(page: str) -> list[str]:
    from airflow_helpers import _Gallery

    parser = _Gallery()
    parser.feed(page)
    return [v[a] for v in parser.videos for a in ("src", "poster") if v.get(a)]


# ----------------------------------------------------------------------------- tests
def test_outputs_manifest_and_gallery_live_in_the_bucket(pipeline, gateway, bucket: Bucket) -> None:
    # The shipped chunk_group, as the daily pipeline runs it with output_root="s3://<conn>@bucket/..."
    run = "daily/2026-01-01"
    result = pipeline(
        dag_body(
            PROMPTS,
            chunk_size=2,
            report_dir=bucket.uri(run, with_conn=True),
            destination=bucket.uri(f"{run}/", with_conn=True),
            shipped_group=True,
        )
    )
    assert result.state == "success"
    manifest = json.loads(bucket.read(f"{run}/manifest.json"))
    entries = manifest["generations"]
    assert [e["prompt"] for e in entries] == PROMPTS
    assert all(e["state"] == "completed" for e in entries)
    ids = [e["generation_id"] for e in entries]
    assert len(set(ids)) == 3 == gateway.submissions

    # Exactly the videos, thumbnails, manifest and gallery; no temporary object left behind.
    keys = bucket.keys(f"{run}/")
    expected = {f"{run}/{i}.{ext}" for i in ids for ext in ("mp4", "jpg")}
    assert set(keys) == expected | {f"{run}/manifest.json", f"{run}/index.html"}
    for gen_id in ids:
        video, thumb = keys[f"{run}/{gen_id}.mp4"], keys[f"{run}/{gen_id}.jpg"]
        assert video == content_length(f"{gateway.url}/media/{gen_id}.mp4") == len(media.video_bytes(gen_id))
        assert (
            thumb == content_length(f"{gateway.url}/media/{gen_id}.jpg") == len(media.thumbnail_bytes(gen_id))
        )
        head = bucket.client.head_object(Bucket=bucket.name, Key=f"{run}/{gen_id}.mp4")
        assert head["ContentLength"] == video
        assert head["ContentType"] == "video/mp4"
        thumb_head = bucket.client.head_object(Bucket=bucket.name, Key=f"{run}/{gen_id}.jpg")
        assert thumb_head["ContentType"] == "image/jpeg"
        assert bucket.read(f"{run}/{gen_id}.mp4") == media.video_bytes(gen_id)

    # The manifest names files relative to itself, and those keys sit next to it.
    for entry in entries:
        assert entry["video"] == f"{entry['generation_id']}.mp4"
        assert entry["thumbnail"] == f"{entry['generation_id']}.jpg"
        assert f"{run}/{entry['video']}" in keys and f"{run}/{entry['thumbnail']}" in keys

    # The gallery works from the bucket: every src/poster is relative and, resolved against the
    # page's own URL on the S3 endpoint, fetches that very object over HTTP (anonymously, as a
    # browser would from a bucket that publishes its gallery).
    bucket.allow_public_reads()
    page_url = bucket.http_url(f"{run}/index.html")
    page = requests.get(page_url, timeout=10)
    assert page.status_code == 200
    # Served as a web page and playable media: as binary/octet-stream a browser would download them.
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    manifest_head = bucket.client.head_object(Bucket=bucket.name, Key=f"{run}/manifest.json")
    assert manifest_head["ContentType"] == "application/json"
    links = gallery_links(page.text)
    assert sorted(links) == sorted(f"{i}.{ext}" for i in ids for ext in ("mp4", "jpg"))
    for link in links:
        assert not urlsplit(link).scheme and not link.startswith("/")
        fetched = requests.get(urljoin(page_url, link), timeout=10)
        assert fetched.status_code == 200
        assert fetched.headers["Content-Type"] == ("video/mp4" if link.endswith(".mp4") else "image/jpeg")
        assert len(fetched.content) == keys[f"{run}/{link}"]


def test_a_download_that_dies_midway_leaves_nothing_under_its_final_key(
    pipeline, gateway, bucket: Bucket
) -> None:
    run, kind = "out", "reset_mid_body"  # "short_body" ends the same way for the client
    # Versioning keeps every object ever written (deletes become markers): the history below
    # is what any reader could have seen at any moment of the run, not only what is left.
    bucket.client.put_bucket_versioning(Bucket=bucket.name, VersioningConfiguration={"Status": "Enabled"})
    # Downloads go one at a time (video, thumbnail) per prompt: media requests 1-4 are the first
    # two prompts' files; every attempt at the third video (the hook retries it) dies midway.
    gateway.add_fault(route="media", kind=kind, skip=4, times=100)
    result = pipeline(
        dag_body(
            PROMPTS,
            chunk_size=3,
            report_dir=bucket.uri(run, with_conn=True),
            destination=bucket.uri(f"{run}/"),
            storage_conn_id=bucket.conn_id,
        )
    )
    attempts = gateway.stats()["faults_applied"][kind]
    assert attempts >= 2  # the first attempt and at least one retry
    gateway.clear_faults()
    assert result.ti("chunks.download", 0).state == "failed"
    assert result.ti("report").state == "success"
    assert result.ti("check").state == "failed"  # the report is there, and the run says why

    entries = json.loads(bucket.read(f"{run}/manifest.json"))["generations"]
    assert [e["prompt"] for e in entries] == PROMPTS
    assert all(e["state"] == "completed" for e in entries)
    lost_id = entries[2]["generation_id"]  # the third prompt's video: media requests 5 and on
    assert f"Download of {lost_id}.mp4 failed" in result.log
    assert not entries[2]["video"]
    lost_key = f"{run}/{lost_id}.mp4"

    # At the end: nothing under the dead download's final key; the other videos are complete.
    keys = bucket.keys(f"{run}/")
    assert lost_key not in keys
    with pytest.raises(bucket.client.exceptions.ClientError, match="404"):
        bucket.client.head_object(Bucket=bucket.name, Key=lost_key)
    for entry in entries[:2]:
        gen_id = entry["generation_id"]
        assert keys[f"{run}/{gen_id}.mp4"] == len(media.video_bytes(gen_id))
        assert keys[f"{run}/{gen_id}.jpg"] == len(media.thumbnail_bytes(gen_id))
    # No temporary object is left behind either: the hook deletes its .part when a try fails.
    assert [k for k in keys if k.endswith(".part")] == []

    # At any moment: no version of any final key was ever anything but the whole file, and the
    # dead download's final key was never written at all.
    versions, deleted = bucket.history(f"{run}/")
    full = {f"{run}/{e['generation_id']}.mp4": len(media.video_bytes(e["generation_id"])) for e in entries}
    full |= {
        f"{run}/{e['generation_id']}.jpg": len(media.thumbnail_bytes(e["generation_id"])) for e in entries
    }
    finals = [(k, size) for k, size in versions if k in full]
    assert sorted(finals) == sorted((k, full[k]) for k in keys if k in full)  # one whole write each
    assert lost_key not in {k for k, _ in versions} | deleted
    # What a reader could see meanwhile: the hook's temporary ".<name>.<hex>.part" objects (today
    # one per try, a dead try's holding the bytes it got: fsspec commits a file when its `with`
    # block raises), all deleted by now.
    temps = {k for k, _ in versions if k.endswith(".part")}
    assert temps == deleted
    assert all(Path(k).name.startswith(".") for k in temps)
    dead = [size for k, size in versions if Path(k).name.startswith(f".{lost_id}.mp4.")]
    assert len(dead) <= attempts and all(size < full[lost_key] for size in dead)


def test_the_ledger_on_s3_reuses_generations_across_runs(pipeline, gateway, bucket: Bucket) -> None:
    def run_once(prefix: str):
        return pipeline(
            dag_body(
                PROMPTS[:2],
                chunk_size=2,
                report_dir=bucket.uri(prefix, with_conn=True),
                destination=bucket.uri(f"{prefix}/"),
                storage_conn_id=bucket.conn_id,
                idempotency_key="daily-2026-01-01",
                ledger_path=bucket.uri("ledger"),
                ledger_conn_id=bucket.conn_id,
            )
        )

    first = run_once("run1")
    assert first.state == "success"
    assert gateway.submissions == 2
    ids = [e["generation_id"] for e in json.loads(bucket.read("run1/manifest.json"))["generations"]]

    # One entry per prompt on S3, under the key, and no claim or temporary object left.
    ledger = bucket.keys("ledger/")
    assert len(ledger) == 2 and all(k.endswith(".json") and not Path(k).name.startswith(".") for k in ledger)
    recorded = {k: json.loads(bucket.read(k)) for k in ledger}
    assert sorted(r["generation_id"] for r in recorded.values()) == sorted(ids)
    for k, r in recorded.items():
        assert r["key"].startswith("daily-2026-01-01:")
        assert k == f"ledger/{hashlib.sha256(r['key'].encode()).hexdigest()}.json"

    second = run_once("run2")
    assert second.state == "success"
    assert gateway.submissions == 2  # nothing submitted: both prompts reused from the S3 ledger
    for gen_id in ids:  # found in the ledger: a new run has nothing in its task state store
        assert f"Reusing generation {gen_id} recorded for idempotency key 'daily-2026-01-01:" in second.log
    again = json.loads(bucket.read("run2/manifest.json"))["generations"]
    assert [e["generation_id"] for e in again] == ids
    assert all(e["state"] == "completed" for e in again)
    keys = bucket.keys("run2/")
    for gen_id in ids:
        assert keys[f"run2/{gen_id}.mp4"] == len(media.video_bytes(gen_id))
    assert bucket.keys("ledger/") == ledger


def test_the_ledger_claim_is_exclusive_on_s3(bucket: Bucket) -> None:
    # Two runs starting the same key at once pay once only if the claim is an exclusive create:
    # on S3 that is a conditional PUT (If-None-Match: *), which s3fs makes for mode "xb".
    from luma_provider.ledger import GenerationLedger

    ledger = GenerationLedger(bucket.uri("claims"), conn_id=bucket.conn_id)
    assert ledger.claim("daily:prompt", "run-a") is None
    (claim_key,) = bucket.keys("claims/")
    assert claim_key.endswith(".claim") and json.loads(bucket.read(claim_key))["owner"] == "run-a"
    held = ledger.claim("daily:prompt", "run-b")
    assert held is not None and held.owner == "run-a"
    assert json.loads(bucket.read(claim_key))["owner"] == "run-a"  # not overwritten
    ledger.release("daily:prompt", "run-a")
    assert bucket.keys("claims/") == {}
