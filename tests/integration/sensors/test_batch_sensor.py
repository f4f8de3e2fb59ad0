"""LumaTaskSensor on a batch result: waits for every prompt, failed or not, and says which is which."""

from __future__ import annotations

import pytest

DEFERRED = "[DAG TEST] running trigger in line"


@pytest.mark.parametrize("deferrable", [True, False])
def test_waits_for_every_prompt_and_reports_each(run_dag, gateway, deferrable: bool) -> None:
    # The first two status answers say "still rendering" whatever the clock (a slow task start on a
    # loaded machine must not let the batch finish before the sensor looks): the submit task's own
    # look (its batch result) and the sensor's first. So the sensor must wait.
    gateway.add_fault(route="tasks", kind="unknown_state", times=2)
    result = run_dag.run(f"""
        submit = LumaGenerateOperator(task_id="submit", prompts=["one", "two #fail:no boats", "three"])
        LumaTaskSensor(task_id="wait", generation_id=submit.output, poll_interval=0.2,
                       deferrable={deferrable}, max_failed_fraction=0.5)
    """)
    assert result.state == "success"
    batch = result.xcom("wait")
    assert [e["state"] for e in batch["prompts"]] == ["completed", "failed", "completed"]
    assert batch["prompts"][1]["failure_reason"] == "no boats"
    assert batch["prompts"][0]["generation"]["video_url"]
    assert (batch["completed"], batch["failed"]) == (2, 1)
    assert (DEFERRED in result.log) is deferrable
    # The sensor never submits: one submission per prompt, all by the submit task.
    assert gateway.submissions == 3


def test_fails_after_all_finished_when_too_many_failed(run_dag, gateway) -> None:
    result = run_dag.run("""
        submit = LumaGenerateOperator(task_id="submit", prompts=["one #fail:bad", "two"])
        LumaTaskSensor(task_id="wait", generation_id=submit.output, poll_interval=0.2)
    """)
    assert result.ti("wait").state == "failed"
    assert "1 of 2 prompts did not complete: 'one #fail:bad': bad" in result.log
    assert [e["state"] for e in result.xcom("wait", "batch_result")["prompts"]] == ["failed", "completed"]


def test_a_batch_wait_times_out_like_a_sensor(run_dag, gateway) -> None:
    gateway.configure(process_seconds=30)
    result = run_dag.run("""
        submit = LumaGenerateOperator(task_id="submit", prompts=["slow one", "slow two"])
        LumaTaskSensor(task_id="wait", generation_id=submit.output, poll_interval=0.2, timeout=1)
    """)
    assert result.ti("wait").state == "failed"
    assert "AirflowSensorTimeout" in result.log
    assert gateway.submissions == 2


def test_not_submitted_prompts_stay_in_the_result(run_dag, gateway) -> None:
    gateway.add_fault(route="submit", kind="status", status=400, skip=1, times=1)
    result = run_dag.run("""
        submit = LumaGenerateOperator(task_id="submit", prompts=["accepted", "refused"],
                                      max_failed_fraction=1.0, max_concurrent_submits=1)
        LumaTaskSensor(task_id="wait", generation_id=submit.output, poll_interval=0.2,
                       max_failed_fraction=1.0)
    """)
    assert result.state == "success"
    entries = result.xcom("wait")["prompts"]
    assert [e["state"] for e in entries] == ["completed", "not_submitted"]
    assert "LumaBadRequestError" in entries[1]["failure_reason"]
