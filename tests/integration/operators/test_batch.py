"""LumaGenerateOperator(prompts=[...]): a chunk of prompts in one task, run with ``dag.test()``.

What a chunk promises: every prompt validated before any HTTP call, bounded concurrent
submits that all pause on a 429, one deferral for the whole chunk, pay once per prompt across
retries, and an explicit per-prompt outcome.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from flavours import status_route

from luma_provider.exceptions import LumaValidationError

DEFERRED = "[DAG TEST] running trigger in line"


def submits(gateway) -> list[dict]:
    return [r for r in gateway.stats()["recent"] if r["route"] == "submit"]


def test_a_chunk_submits_each_prompt_once_and_defers_once(run_dag, gateway) -> None:
    result = run_dag.run("""
        LumaGenerateOperator(
            task_id="chunk",
            prompts=[
                "a lighthouse in fog",
                {"prompt": "a paper boat at night", "aspect_ratio": "9:16"},
                {"prompt": "a bee on lavender", "aspect_ratio": None, "loop": True},
                "a lighthouse in fog",
            ],
            aspect_ratio="1:1",
            wait_for_completion=True,
            poll_interval=0.2,
            max_concurrent_submits=3,
        )
    """)
    assert result.state == "success"
    batch = result.xcom("chunk")
    assert (batch["total"], batch["completed"], batch["failed"], batch["pending"]) == (4, 4, 0, 0)
    assert [e["prompt"] for e in batch["prompts"]] == [
        "a lighthouse in fog",
        "a paper boat at night",
        "a bee on lavender",
        "a lighthouse in fog",
    ]
    ids = [e["generation_id"] for e in batch["prompts"]]
    assert len(set(ids)) == 4  # a repeated prompt is a second take, not a reuse
    assert all(e["generation"]["video_url"] for e in batch["prompts"])
    assert gateway.submissions == 4
    assert result.log.count(DEFERRED) == 1


@pytest.mark.parametrize(
    ("prompts", "field"),
    [
        ('["ok", {"prompt": "bad", "aspect_ratio": "2:1"}]', "prompts[1].aspect_ratio"),
        ('["ok", {"prompt": "typo", "aspect": "16:9"}]', "prompts[1].aspect"),
        ('["ok", 42]', "prompts[1]"),
        ("[]", "prompts"),
        ('"just one string"', "prompts"),
    ],
)
def test_bad_prompts_fail_before_any_http(run_dag, gateway, prompts: str, field: str) -> None:
    result = run_dag.run(f"""
        LumaGenerateOperator(task_id="chunk", prompts={prompts})
    """)
    assert result.ti("chunk").state == "failed"
    assert f"Invalid '{field}'" in result.log
    assert gateway.stats()["requests"] == 0


def test_prompt_and_prompts_are_exclusive(run_dag, gateway) -> None:
    with pytest.raises(LumaValidationError, match="give either prompt"):
        run_dag.run("""
            LumaGenerateOperator(task_id="chunk", prompt="one", prompts=["two"])
        """)
    assert gateway.stats()["requests"] == 0


def test_a_failed_prompt_fails_the_task_after_all_finished(run_dag, gateway) -> None:
    result = run_dag.run("""
        LumaGenerateOperator(
            task_id="chunk",
            prompts=["fine one", "broken #fail", "fine two"],
            wait_for_completion=True,
            poll_interval=0.2,
        )
    """)
    assert result.ti("chunk").state == "failed"
    assert "1 of 3 prompts did not complete: 'broken #fail':" in result.log
    batch = result.xcom("chunk", "batch_result")
    assert [e["state"] for e in batch["prompts"]] == ["completed", "failed", "completed"]
    assert batch["prompts"][1]["failure_reason"]
    assert gateway.submissions == 3


def test_max_failed_fraction_tolerates_some_failures(run_dag, gateway) -> None:
    result = run_dag.run("""
        LumaGenerateOperator(
            task_id="chunk",
            prompts=["fine one", "broken #fail", "fine two", "fine three"],
            wait_for_completion=True,
            poll_interval=0.2,
            max_failed_fraction=0.25,
        )
    """)
    assert result.state == "success"
    batch = result.xcom("chunk")
    assert (batch["completed"], batch["failed"]) == (3, 1)


def test_a_retry_of_a_half_done_chunk_pays_only_for_the_rest(run_dag, gateway) -> None:
    # The gateway takes 5 submits, then refuses the key once (a 401 stops the chunk; the other
    # submit in flight may still land). The retry must reuse what landed and submit the rest.
    gateway.add_fault(route="submit", kind="status", status=401, skip=5, times=1)
    result = run_dag.run("""
        LumaGenerateOperator(
            task_id="chunk",
            prompts=[f"clip number {i}" for i in range(20)],
            max_concurrent_submits=2,
            retries=1,
            retry_delay=timedelta(seconds=0),
        )
    """)
    ti = result.ti("chunk")
    assert (ti.state, ti.try_number) == ("success", 2)
    assert "LumaAuthError" in result.log and "not started: the batch stopped early" in result.log
    assert gateway.submissions == 20
    reused = result.log.count("recorded for an earlier try of this task")
    assert 5 <= reused <= 6
    batch = result.xcom("chunk")
    assert len({e["generation_id"] for e in batch["prompts"]}) == 20
    # Try 2 checked its recorded ids with one batch lookup, not one GET per prompt (plus the
    # chunk's own status look at the end of each try).
    routes = [r["route"] for r in gateway.stats()["recent"]]
    assert routes.count("get") == 0, routes
    assert routes.count("tasks") == 3, routes


def test_a_rerun_with_a_key_reuses_the_chunk_with_one_lookup(run_dag, dag_sandbox, tmp_path) -> None:
    """A re-run of a chunk with an idempotency key: every prompt reused after one status lookup
    (gateway: one POST /luma/tasks; official: its GETs), and a forgotten id is paid again."""
    body = f"""
        LumaGenerateOperator(task_id="chunk", prompts=[f"harbour at dawn, take {{i}}" for i in range(6)],
                             idempotency_key="day-1", ledger_path="{tmp_path / "ledger"}")
    """
    first = run_dag.run(body)
    ids = [e["generation_id"] for e in first.xcom("chunk")["prompts"]]
    assert first.state == "success" and len(set(ids)) == 6 == dag_sandbox.submissions
    forgotten = ids[2]
    dag_sandbox._call(lambda: dag_sandbox._state.store.delete(forgotten))
    before = len(dag_sandbox.stats()["recent"])

    second = run_dag.run(body)
    assert second.state == "success"
    again = [e["generation_id"] for e in second.xcom("chunk")["prompts"]]
    assert again[:2] == ids[:2] and again[3:] == ids[3:] and again[2] not in ids
    assert f"Generation {forgotten} recorded for idempotency key" in second.log
    assert dag_sandbox.submissions == 7
    routes = [r["route"] for r in dag_sandbox.stats()["recent"][before:]]
    status = status_route(dag_sandbox)
    # The lookup of the 6 recorded ids, then the chunk's own look at its 6 results.
    expected = 1 + 1 if status == "tasks" else 6 + 6
    assert routes.count(status) == expected and routes.count("submit") == 1, routes


def test_one_429_pauses_every_submit_of_the_chunk(run_dag, gateway) -> None:
    gateway.add_fault(route="submit", kind="status", status=429, retry_after=1, skip=2, times=1)
    result = run_dag.run("""
        LumaGenerateOperator(task_id="chunk", prompts=[f"clip {i}" for i in range(12)],
                             max_concurrent_submits=4)
    """)
    assert result.state == "success"
    assert gateway.submissions == 12
    seen = submits(gateway)
    limited = [r["time"] for r in seen if r["status"] == 429]
    assert len(limited) == 1
    # Requests already in flight land within milliseconds; after that, nothing for ~1 s.
    quiet = [r for r in seen if limited[0] + 0.1 < r["time"] < limited[0] + 0.9]
    assert quiet == []
    assert "1 rate-limit pauses" in result.log


def test_without_waiting_the_result_lists_pending_prompts(run_dag, gateway) -> None:
    result = run_dag.run("""
        LumaGenerateOperator(task_id="chunk", prompts=["one", "two"])
    """)
    assert result.state == "success"
    batch = result.xcom("chunk")
    assert (batch["completed"], batch["failed"], batch["pending"]) == (0, 0, 2)
    assert {e["state"] for e in batch["prompts"]} <= {"queued", "dreaming"}


def test_download_takes_a_batch_result(run_dag, gateway, tmp_path: Path) -> None:
    result = run_dag.run(f"""
        chunk = LumaGenerateOperator(
            task_id="chunk",
            prompts=["one", "two #fail", "three", "four"],
            wait_for_completion=True,
            poll_interval=0.2,
            max_failed_fraction=0.5,
        )
        LumaDownloadVideoOperator(task_id="download", generation_id=chunk.output,
                                  destination="{tmp_path}/", include_thumbnail=True,
                                  max_concurrent_downloads=3)
    """)
    assert result.state == "success"
    downloads = result.xcom("download")
    assert len(downloads) == 3
    completed = [e["generation_id"] for e in result.xcom("chunk")["prompts"] if e["state"] == "completed"]
    assert [d["generation_id"] for d in downloads] == completed
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == sorted(f"{i}.mp4" for i in completed)
    assert all(p.stat().st_size > 0 for p in tmp_path.glob("*.mp4"))


def test_downloads_run_a_few_at_a_time_and_one_failure_spares_the_others(
    run_dag, gateway, tmp_path: Path
) -> None:
    # The third video request is refused (a 404 on one video of the chunk); every other one is slow.
    gateway.add_fault(route="media", kind="status", status=404, skip=2, times=1)
    gateway.add_fault(route="media", kind="delay", seconds=0.2, times=1000)
    result = run_dag.run(f"""
        chunk = LumaGenerateOperator(task_id="chunk", prompts=[f"clip {{i}}" for i in range(8)],
                                     wait_for_completion=True, poll_interval=0.2)
        LumaDownloadVideoOperator(task_id="download", generation_id=chunk.output,
                                  destination="{tmp_path}/", max_concurrent_downloads=3)
    """)
    assert result.ti("download").state == "failed"
    assert "1 of 8 downloads failed" in result.log
    assert len(list(tmp_path.glob("*.mp4"))) == 7  # every other video landed
    assert not list(tmp_path.glob(".*.part"))  # and nothing half-written is left
    # ...and is named in XCom although the task failed, so a report can still list it.
    landed = result.xcom("download", "downloaded")
    assert sorted(Path(uri.removeprefix("file://")).name for uri in landed) == sorted(
        p.name for p in tmp_path.glob("*.mp4")
    )
    assert gateway.stats()["peak_in_flight"]["media"] == 3
