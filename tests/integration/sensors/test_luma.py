"""LumaTaskSensor run for real with ``dag.test()``: deferrable, poke and reschedule modes, failures, timeouts.

Each test runs in both API flavours (``dag_sandbox``: ``[gateway]`` and ``[official]``).
"""

from __future__ import annotations

from flavours import status_route

DEFERRED = "[DAG TEST] running trigger in line"


def _submit(prompt: str = "a red fox", task_id: str = "submit") -> str:
    return f'LumaGenerateOperator(task_id="{task_id}", prompt={prompt!r})'


class TestSensor:
    def test_deferrable_success_returns_generation_and_sets_link(self, run_dag, dag_sandbox) -> None:
        # The first two status answers say "still rendering" whatever the clock (the submit task
        # may look once): the sensor's first look sees a generation not done, so it must wait.
        dag_sandbox.add_fault(route=status_route(dag_sandbox), kind="unknown_state", times=2)
        result = run_dag.run(f"""
            submit = {_submit()}
            LumaTaskSensor(task_id="wait", generation_id=submit.output, poll_interval=0.3)
        """)
        assert result.state == "success"
        assert DEFERRED in result.log
        gen_id = result.xcom("submit")
        done = result.xcom("wait")
        assert done["id"] == gen_id
        assert done["state"] == "completed"
        assert done["video_url"].startswith(f"{dag_sandbox.url}/media/{gen_id}.mp4")
        # LumaVideoLink reads this key: set once the sensor saw the video.
        assert result.xcom("wait", "luma_video_url") == done["video_url"]
        assert dag_sandbox.submissions == 1

    def test_poke_mode(self, run_dag, dag_sandbox) -> None:
        # The first two status answers say "still rendering" whatever the clock (the submit task
        # may look once): the sensor's first look sees a generation not done, so it must wait.
        dag_sandbox.add_fault(route=status_route(dag_sandbox), kind="unknown_state", times=2)
        result = run_dag.run(f"""
            submit = {_submit()}
            LumaTaskSensor(task_id="wait", generation_id=submit.output, poll_interval=0.2, deferrable=False,
                           mode="poke")
        """)
        assert result.state == "success"
        assert DEFERRED not in result.log
        assert result.xcom("wait")["state"] == "completed"
        assert result.ti("wait").try_number == 1
        assert (
            dag_sandbox.stats()["by_route"][status_route(dag_sandbox)] >= 2
        )  # it really poked more than once

    def test_reschedule_mode(self, run_dag, dag_sandbox) -> None:
        result = run_dag.run(f"""
            submit = {_submit()}
            LumaTaskSensor(task_id="wait", generation_id=submit.output, poll_interval=0.2, deferrable=False,
                           mode="reschedule")
        """)
        assert result.state == "success"
        assert DEFERRED not in result.log
        assert result.xcom("wait")["id"] == result.xcom("submit")
        assert result.xcom("wait", "luma_video_url") == result.xcom("wait")["video_url"]

    def test_failed_generation_fails_with_id_and_reason(self, run_dag, dag_sandbox) -> None:
        result = run_dag.run(f"""
            submit = {_submit("a forbidden scene #fail")}
            LumaTaskSensor(task_id="wait", generation_id=submit.output, poll_interval=0.3)
        """)
        gen_id = result.xcom("submit")
        assert result.ti("wait").state == "failed"
        assert result.state == "failed"
        assert "LumaGenerationFailed" in result.log
        assert gen_id in result.log and "Advanced prompt moderation failed" in result.log
        assert "luma_video_url" not in result.ti("wait").xcom

    def test_failed_generation_in_poke_mode(self, run_dag, dag_sandbox) -> None:
        result = run_dag.run(f"""
            submit = {_submit("bad #fail:Prompt names a real person")}
            LumaTaskSensor(task_id="wait", generation_id=submit.output, poll_interval=0.2, deferrable=False)
        """)
        assert result.ti("wait").state == "failed"
        assert result.xcom("submit") in result.log and "Prompt names a real person" in result.log

    def test_timeout_fails_with_sensor_timeout(self, run_dag, dag_sandbox) -> None:
        dag_sandbox.configure(process_seconds=30)  # still rendering at the deadline
        result = run_dag.run(f"""
            submit = {_submit("a slow glacier #slow")}
            LumaTaskSensor(task_id="wait", generation_id=submit.output, poll_interval=0.3, timeout=0.8,
                           retries=2, retry_delay=timedelta(seconds=0))
        """)
        ti = result.ti("wait")
        assert ti.state == "failed"
        assert ti.try_number == 1  # a sensor timeout is final: retries are not used
        assert DEFERRED in result.log
        assert "AirflowSensorTimeout" in result.log
        assert f"Timed out waiting for {result.xcom('submit')}" in result.log

    def test_timeout_soft_fail_skips(self, run_dag, dag_sandbox) -> None:
        dag_sandbox.configure(process_seconds=30)  # still rendering at the deadline
        result = run_dag.run(f"""
            submit = {_submit("a slow glacier #slow")}
            LumaTaskSensor(task_id="wait", generation_id=submit.output, poll_interval=0.3, timeout=0.8,
                           soft_fail=True)
        """)
        assert result.ti("wait").state == "skipped"
        assert result.state == "success"
        assert "soft_fail" in result.log
        assert DEFERRED in result.log

    def test_poke_mode_timeout(self, run_dag, dag_sandbox) -> None:
        dag_sandbox.configure(process_seconds=30)  # still rendering at the deadline
        result = run_dag.run(f"""
            submit = {_submit("a slow glacier #slow")}
            LumaTaskSensor(task_id="wait", generation_id=submit.output, poll_interval=0.2, timeout=0.7,
                           deferrable=False)
        """)
        assert result.ti("wait").state == "failed"
        assert "AirflowSensorTimeout" in result.log

    def test_list_of_ids(self, run_dag, dag_sandbox) -> None:
        result = run_dag.run(f"""
            a = {_submit("a red fox", "a")}
            b = {_submit("a blue whale", "b")}
            LumaTaskSensor(task_id="wait", generation_id=[a.output, b.output], poll_interval=0.3)
        """)
        assert result.state == "success"
        done = result.xcom("wait")
        assert [g["id"] for g in done] == [result.xcom("a"), result.xcom("b")]
        assert [g["state"] for g in done] == ["completed", "completed"]
        assert "luma_video_url" not in result.ti("wait").xcom  # one link per task: only for a single video

    def test_generation_dict_input(self, run_dag, dag_sandbox) -> None:
        result = run_dag.run(f"""
            submit = {_submit()}
            # A template pull carries no dependency: it must be declared.
            submit >> LumaTaskSensor(task_id="wait", poll_interval=0.3,
                                     generation_id="{{{{ ti.xcom_pull('submit', key='generation')['id'] }}}}")
        """)
        assert result.state == "success"
        assert result.xcom("wait")["id"] == result.xcom("submit")

    def test_invalid_id_fails_before_any_http(self, run_dag, dag_sandbox) -> None:
        result = run_dag.run("""
            LumaTaskSensor(task_id="wait", generation_id="not a valid id!", poll_interval=0.3)
        """)
        assert result.ti("wait").state == "failed"
        assert "generation_id" in result.log and "LumaValidationError" in result.log
        assert dag_sandbox.stats()["requests"] == 0

    def test_already_completed_needs_no_trigger(self, run_dag, dag_sandbox) -> None:
        result = run_dag.run("""
            submit = LumaGenerateOperator(task_id="submit", prompt="a fox", wait_for_completion=True,
                                          deferrable=False, poll_interval=0.2)
            LumaTaskSensor(task_id="wait", generation_id=submit.output, poll_interval=0.3)
        """)
        assert result.state == "success"
        assert DEFERRED not in result.log  # the one look before deferring found it done
        assert result.xcom("wait")["id"] == result.xcom("submit")["id"]
