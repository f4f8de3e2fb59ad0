"""Budget guards: ``max_generations`` (any flavour) and the credit floor ``min_credits`` (official API).

Both are enforced before anything is paid: the sandbox counts what reached it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import airflow_helpers
import pytest

from luma_provider.sandbox import LumaSandbox


@pytest.fixture
def official(monkeypatch: pytest.MonkeyPatch) -> Iterator[LumaSandbox]:
    """An official-flavour sandbox with 1,000 cents of credits, wired to ``luma_default``."""
    with LumaSandbox(
        port=0,
        api_key=airflow_helpers.SANDBOX_KEY,
        api_flavour="official",
        queue_seconds=0.2,
        process_seconds=0.3,
        starting_credits=1000,
    ) as sb:
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", sb.connection_json)
        yield sb


def routes(sb: LumaSandbox) -> dict[str, int]:
    return dict(sb.stats()["by_route"])


def test_max_generations_submits_the_first_prompts_and_skips_the_rest(run_dag, gateway) -> None:
    result = run_dag.run("""
        LumaGenerateOperator(task_id="chunk", prompts=["one", "two", "three", "four"],
                             max_generations=2, wait_for_completion=True, poll_interval=0.2)
    """)
    assert result.state == "success"  # skipping by budget is not a failure
    batch = result.xcom("chunk")
    assert [e["state"] for e in batch["prompts"]] == ["completed", "completed", "skipped", "skipped"]
    assert batch["prompts"][2]["skip_reason"] == "budget: max_generations=2"
    assert (batch["completed"], batch["failed"], batch["skipped"]) == (2, 0, 2)
    assert gateway.submissions == 2
    assert "Budget: submitting 2 of 4 prompts (max_generations=2); 2 skipped" in result.log


def test_max_generations_zero_submits_nothing(run_dag, gateway) -> None:
    result = run_dag.run("""
        LumaGenerateOperator(task_id="chunk", prompts=["one", "two"], max_generations=0)
    """)
    assert result.state == "success"
    assert result.xcom("chunk")["skipped"] == 2
    assert gateway.stats()["requests"] == 0


@pytest.mark.parametrize("value", [-1, 1.5, "3", True])
def test_max_generations_is_validated(run_dag, gateway, value) -> None:
    from luma_provider.exceptions import LumaValidationError

    with pytest.raises(LumaValidationError, match="max_generations"):
        run_dag.run(f"""
            LumaGenerateOperator(task_id="chunk", prompts=["one"], max_generations={value!r})
        """)


def test_a_balance_below_the_floor_stops_the_batch_before_spending(run_dag, official) -> None:
    result = run_dag.run("""
        LumaGenerateOperator(task_id="chunk", prompts=["one", "two"], min_credits=5000, retries=2,
                             retry_delay=timedelta(seconds=0))
    """)
    ti = result.ti("chunk")
    assert ti.state == "failed"
    assert ti.try_number == 1  # a budget stop is not retried: it would stop again
    assert "Credit balance 1000 is below the floor 5000 (USD cents, min_credits)" in result.log
    assert official.submissions == 0
    assert routes(official) == {"credits": 1}


def test_the_floor_from_the_connection_is_read_once_per_task(run_dag, official, monkeypatch) -> None:
    conn = json.loads(official.connection_json)
    conn["extra"] = {**conn.get("extra", {}), "min_credits": 10}
    monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", json.dumps(conn))
    result = run_dag.run("""
        LumaGenerateOperator(task_id="chunk", prompts=[f"clip {i}" for i in range(5)])
    """)
    assert result.state == "success"
    assert "Credit balance 1000 is above the floor 10 (USD cents)" in result.log
    assert official.submissions == 5
    assert routes(official)["credits"] == 1  # once per task, not once per prompt


def test_one_prompt_checks_the_floor_too(run_dag, official) -> None:
    result = run_dag.run("""
        LumaGenerateOperator(task_id="one", prompt="a fox", min_credits=1001)
    """)
    assert result.ti("one").state == "failed"
    assert "LumaBudgetError" in result.log
    assert official.submissions == 0


def test_a_floor_on_a_gateway_is_refused_before_any_http(run_dag, gateway) -> None:
    result = run_dag.run("""
        LumaGenerateOperator(task_id="chunk", prompts=["one"], min_credits=10)
    """)
    assert result.ti("chunk").state == "failed"
    assert "Invalid 'min_credits': needs Luma's official API" in result.log
    assert gateway.stats()["requests"] == 0
