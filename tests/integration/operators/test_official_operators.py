"""LumaGenerateImageOperator / LumaUpscaleVideoOperator / LumaAddAudioOperator run for real with
``dag.test()`` against an official-flavour sandbox (``AIRFLOW_CONN_LUMA_DEFAULT`` = its
``connection_json``): submit, wait (deferred or polling), pay once on retry and across runs with
an idempotency key, and fail on a bad option before any HTTP request.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import airflow_helpers
import pytest

from luma_provider.sandbox import LumaSandbox

DEFERRED = "[DAG TEST] running trigger in line"
IMPORTS = """
    from luma_provider.operators.luma import (
        LumaAddAudioOperator, LumaGenerateImageOperator, LumaUpscaleVideoOperator,
    )
"""
#: A completed video for the upscale / audio steps to build on.
SOURCE = """
    source = LumaGenerateOperator(task_id="source", prompt="a harbour at dawn", wait_for_completion=True,
                                  deferrable=False, poll_interval=0.2)
"""
SOURCE_ID = "{{ ti.xcom_pull(task_ids='source', key='generation')['id'] }}"
ANY_ID = "00000000-0000-4000-8000-000000000000"
BASE = "/dream-machine/v1/generations"


def flaky(operator: str) -> str:
    """A subclass of ``operator`` whose first try dies right after its submit (a lost worker)."""
    return f"""
    class Flaky({operator}):
        def execute(self, context):
            value = super().execute(context)
            if context["ti"].try_number == 1:
                raise RuntimeError("worker lost right after submit")
            return value
    """


def dag_body(*parts: str) -> str:
    """Join DAG body snippets written at different indentations."""
    return "\n".join(textwrap.dedent(part).strip("\n") for part in parts)


@pytest.fixture
def official(monkeypatch: pytest.MonkeyPatch) -> Iterator[LumaSandbox]:
    """An official-flavour sandbox whose jobs finish in 0.5 s, wired to ``luma_default``."""
    with LumaSandbox(
        port=0,
        api_key=airflow_helpers.SANDBOX_KEY,
        api_flavour="official",
        queue_seconds=0.2,
        process_seconds=0.3,
    ) as sb:
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", sb.connection_json)
        yield sb


def creates(sb: LumaSandbox) -> list[str]:
    return [r["path"] for r in sb.stats()["recent"] if r["method"] == "POST"]


class TestImage:
    def test_submit_returns_id(self, run_dag, official) -> None:
        result = run_dag.run(
            dag_body(
                IMPORTS,
                """
            LumaGenerateImageOperator(task_id="image", prompt="a red kite", aspect_ratio="1:1",
                                      format="png", model="photon-flash-1")
        """,
            )
        )
        assert result.state == "success"
        gen_id = result.xcom("image")
        assert isinstance(gen_id, str) and len(gen_id) == 36
        generation = result.xcom("image", "generation")
        assert (generation["id"], generation["state"]) == (gen_id, "queued")
        assert official.stats()["by_route"] == {"image": 1}
        assert creates(official) == [f"{BASE}/image"]
        sent = official._state.store.get(gen_id).request
        assert sent == {
            "generation_type": "image",
            "model": "photon-flash-1",
            "prompt": "a red kite",
            "aspect_ratio": "1:1",
            "format": "png",
        }
        assert f"Submitted Luma image generation {gen_id} for prompt 'a red kite'" in result.log
        assert DEFERRED not in result.log

    def test_wait_deferrable_with_refs(self, run_dag, official) -> None:
        result = run_dag.run(
            dag_body(
                IMPORTS,
                """
            LumaGenerateImageOperator(
                task_id="image", prompt="a red kite", wait_for_completion=True, poll_interval=0.2,
                style_ref=[{"url": "https://example.com/style.jpg", "weight": 0.5}],
                character_ref={"identity0": {"images": ["https://example.com/me.jpg"]}},
            )
        """,
            )
        )
        assert result.state == "success"
        assert DEFERRED in result.log
        done = result.xcom("image")
        assert done["state"] == "completed" and done["generation_type"] == "image"
        assert done["image_url"] == f"{official.url}/media/{done['id']}.jpg"
        assert done["video_url"] is None
        sent = official._state.store.get(done["id"]).request
        assert sent["style_ref"] == [{"url": "https://example.com/style.jpg", "weight": 0.5}]
        assert sent["character_ref"] == {"identity0": {"images": ["https://example.com/me.jpg"]}}
        assert official.submissions == 1

    def test_wait_on_worker(self, run_dag, official) -> None:
        result = run_dag.run(
            dag_body(
                IMPORTS,
                """
            LumaGenerateImageOperator(task_id="image", prompt="a red kite", wait_for_completion=True,
                                      deferrable=False, poll_interval=0.2)
        """,
            )
        )
        assert result.state == "success"
        assert DEFERRED not in result.log
        assert result.xcom("image")["state"] == "completed"
        assert result.xcom("image", "generation")["state"] == "completed"
        assert official.submissions == 1

    def test_retry_reuses_the_recorded_image(self, run_dag, official) -> None:
        result = run_dag.run(
            dag_body(
                IMPORTS,
                flaky("LumaGenerateImageOperator"),
                """
            Flaky(task_id="image", prompt="an expensive still", retries=1, retry_delay=timedelta(seconds=0))
        """,
            )
        )
        ti = result.ti("image")
        assert (ti.try_number, ti.state) == (2, "success")
        gen_id = result.xcom("image")
        assert f"Reusing generation {gen_id} recorded for an earlier try" in result.log
        assert official.submissions == 1

    def test_idempotency_key_reuses_across_runs_per_request(self, run_dag, official, tmp_path: Path) -> None:
        code = dag_body(
            IMPORTS,
            f"""
            LumaGenerateImageOperator(task_id="image", prompt="{{{{ params.p }}}}", idempotency_key="auto",
                                      ledger_path="{tmp_path}/ledger", params={{"p": "a kite"}})
        """,
        )
        first = run_dag.run(code)
        second = run_dag.run(code)
        other = run_dag.run(code, run_conf={"p": "a boat"})
        assert first.state == second.state == other.state == "success"
        assert second.xcom("image") == first.xcom("image") != other.xcom("image")
        assert "recorded for idempotency key 'auto:" in second.log
        assert official.submissions == 2


class TestUpscale:
    def test_submit_then_wait(self, run_dag, official) -> None:
        result = run_dag.run(
            dag_body(
                IMPORTS,
                SOURCE,
                f"""
            submit = LumaUpscaleVideoOperator(task_id="submit", generation_id="{SOURCE_ID}", resolution="1080p")
            wait = LumaUpscaleVideoOperator(task_id="wait", generation_id="{SOURCE_ID}", resolution="4k",
                                            wait_for_completion=True, poll_interval=0.2)
            source >> [submit, wait]
        """,
            )
        )
        assert result.state == "success"
        source_id = result.xcom("source")["id"]
        submitted = result.xcom("submit")
        assert isinstance(submitted, str) and submitted != source_id
        done = result.xcom("wait")
        assert done["state"] == "completed" and done["id"] not in (source_id, submitted)
        assert done["video_url"] == f"{official.url}/media/{done['id']}.mp4"
        assert result.xcom("wait", "luma_video_url") == done["video_url"]
        assert DEFERRED in result.log
        assert sorted(creates(official)[1:]) == [f"{BASE}/{source_id}/upscale"] * 2
        store = official._state.store
        assert store.get(submitted).request == {"generation_type": "upscale_video", "resolution": "1080p"}
        assert store.get(done["id"]).request == {"generation_type": "upscale_video", "resolution": "4k"}
        assert f"Submitted Luma upscale {submitted} of generation {source_id} to 1080p" in result.log
        assert official.submissions == 3

    def test_retry_reuses_the_recorded_upscale(self, run_dag, official) -> None:
        result = run_dag.run(
            dag_body(
                IMPORTS,
                SOURCE,
                flaky("LumaUpscaleVideoOperator"),
                f"""
            source >> Flaky(task_id="up", generation_id="{SOURCE_ID}", resolution="720p", retries=1,
                            retry_delay=timedelta(seconds=0), wait_for_completion=True, deferrable=False,
                            poll_interval=0.2)
        """,
            )
        )
        ti = result.ti("up")
        assert (ti.try_number, ti.state) == (2, "success")
        gen_id = result.xcom("up")["id"]
        assert f"Reusing generation {gen_id} recorded for an earlier try" in result.log
        assert official.submissions == 2  # the source video and one upscale


class TestAddAudio:
    def test_submit_then_wait(self, run_dag, official) -> None:
        result = run_dag.run(
            dag_body(
                IMPORTS,
                SOURCE,
                f"""
            submit = LumaAddAudioOperator(task_id="submit", generation_id="{SOURCE_ID}", prompt="waves")
            wait = LumaAddAudioOperator(task_id="wait", generation_id="{SOURCE_ID}", prompt="gulls",
                                        negative_prompt="music", wait_for_completion=True,
                                        deferrable=False, poll_interval=0.2)
            source >> [submit, wait]
        """,
            )
        )
        assert result.state == "success"
        source_id = result.xcom("source")["id"]
        submitted, done = result.xcom("submit"), result.xcom("wait")
        assert done["state"] == "completed" and done["video_url"]
        assert DEFERRED not in result.log
        store = official._state.store
        assert store.get(submitted).request == {"generation_type": "add_audio", "prompt": "waves"}
        assert store.get(done["id"]).request == {
            "generation_type": "add_audio",
            "prompt": "gulls",
            "negative_prompt": "music",
        }
        assert sorted(creates(official)[1:]) == [f"{BASE}/{source_id}/audio"] * 2
        assert official.submissions == 3

    def test_retry_reuses_the_recorded_audio(self, run_dag, official) -> None:
        result = run_dag.run(
            dag_body(
                IMPORTS,
                SOURCE,
                flaky("LumaAddAudioOperator"),
                f"""
            source >> Flaky(task_id="audio", generation_id="{SOURCE_ID}", prompt="rain", retries=1,
                            retry_delay=timedelta(seconds=0))
        """,
            )
        )
        ti = result.ti("audio")
        assert (ti.try_number, ti.state) == (2, "success")
        gen_id = result.xcom("audio")
        assert f"Reusing generation {gen_id} recorded for an earlier try" in result.log
        assert official.submissions == 2


@pytest.mark.parametrize(
    ("operator", "kwargs", "field"),
    [
        ("LumaGenerateImageOperator", 'prompt="a cat", aspect_ratio="2:1"', "aspect_ratio"),
        ("LumaGenerateImageOperator", 'prompt="a cat", model="photon-9"', "model"),
        ("LumaGenerateImageOperator", 'prompt="a cat", format="gif"', "format"),
        ("LumaGenerateImageOperator", 'prompt="   "', "prompt"),
        (
            "LumaGenerateImageOperator",
            'prompt="a cat", image_ref=[{"url": "ftp://x/a.png"}]',
            "image_ref[0].url",
        ),
        (
            "LumaGenerateImageOperator",
            'prompt="a cat", style_ref=[{"url": "https://x/a.png", "weight": 2}]',
            "style_ref[0].weight",
        ),
        ("LumaGenerateImageOperator", 'prompt="a cat", character_ref={"images": []}', "character_ref"),
        ("LumaUpscaleVideoOperator", f'generation_id="{ANY_ID}", resolution="8k"', "resolution"),
        ("LumaUpscaleVideoOperator", 'generation_id="../etc/passwd", resolution="1080p"', "generation_id"),
        ("LumaAddAudioOperator", f'generation_id="{ANY_ID}", prompt=""', "prompt"),
        ("LumaAddAudioOperator", 'generation_id="no such id", prompt="rain"', "generation_id"),
    ],
)
def test_bad_option_fails_before_any_http(run_dag, official, operator: str, kwargs: str, field: str) -> None:
    result = run_dag.run(
        dag_body(
            IMPORTS,
            f"""
        {operator}(task_id="step", {kwargs}, wait_for_completion=True)
    """,
        )
    )
    assert result.ti("step").state == "failed"
    assert "LumaValidationError" in result.log
    assert field in result.log
    assert official.stats()["requests"] == 0


@pytest.mark.parametrize(
    ("operator", "kwargs"),
    [
        ("LumaGenerateImageOperator", 'prompt="a cat"'),
        ("LumaUpscaleVideoOperator", f'generation_id="{ANY_ID}", resolution="1080p"'),
        ("LumaAddAudioOperator", f'generation_id="{ANY_ID}", prompt="rain"'),
    ],
)
def test_gateway_connection_fails_before_any_http(run_dag, gateway, operator: str, kwargs: str) -> None:
    result = run_dag.run(
        dag_body(
            IMPORTS,
            f"""
        {operator}(task_id="step", {kwargs})
    """,
        )
    )
    assert result.ti("step").state == "failed"
    assert f"{operator} needs Luma's official API" in result.log
    assert gateway.stats()["requests"] == 0
