"""LumaGenerateOperator / LumaDownloadVideoOperator run for real with ``dag.test()`` against a sandbox.

Every DAG here is written to a temporary dags folder and run in-process (tasks through the
Task SDK, triggers inline); results are read back from the metadata DB. Each test runs in both
API flavours (``dag_sandbox``: ``[gateway]`` and ``[official]``); the official-only operators
are in ``test_official_operators.py``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flavours import is_official, status_route

DEFERRED = "[DAG TEST] running trigger in line"


def _partial_keeps_the_default_label() -> bool:
    from airflow.sdk import DAG

    from luma_provider.operators.luma import LumaGenerateOperator

    with DAG("probe_partial_defaults"):
        mapped = LumaGenerateOperator.partial(task_id="probe").expand(prompt=["a"])
    return mapped.map_index_template is not None


class TestGenerate:
    def test_submit_returns_id_and_pushes_generation(self, run_dag, dag_sandbox) -> None:
        result = run_dag.run("""
            LumaGenerateOperator(task_id="submit", prompt="a lighthouse in fog", aspect_ratio="9:16")
        """)
        assert result.state == "success"
        gen_id = result.xcom("submit")
        generation = result.xcom("submit", "generation")
        assert isinstance(gen_id, str) and len(gen_id) == 36
        assert generation["id"] == gen_id
        assert generation["state"] == "queued"
        assert dag_sandbox.submissions == 1
        assert dag_sandbox.stats()["by_route"] == {"submit": 1}
        assert f"Submitted Luma generation {gen_id} for prompt 'a lighthouse in fog'" in result.log
        assert DEFERRED not in result.log
        assert "luma_video_url" not in result.ti("submit").xcom  # no URL before completion

    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ('aspect_ratio="2:1"', "aspect_ratio"),
            ('model="ray-99"', "model"),
            ('extra="not-a-dict"', "extra"),
            ('image_url="ftp://example.com/a.png"', "image_url"),
        ],
    )
    def test_validation_fails_before_any_http(self, run_dag, dag_sandbox, kwargs: str, field: str) -> None:
        result = run_dag.run(f"""
            LumaGenerateOperator(task_id="submit", prompt="a cat", {kwargs})
        """)
        assert result.state == "failed"
        assert result.ti("submit").state == "failed"
        assert "LumaValidationError" in result.log
        assert field in result.log
        assert dag_sandbox.stats()["requests"] == 0

    def test_empty_prompt_fails_before_any_http(self, run_dag, dag_sandbox) -> None:
        result = run_dag.run("""
            LumaGenerateOperator(task_id="submit", prompt="   ")
        """)
        assert result.ti("submit").state == "failed"
        assert "prompt" in result.log and "LumaValidationError" in result.log
        assert dag_sandbox.stats()["requests"] == 0

    def test_wait_deferrable_really_defers(self, run_dag, dag_sandbox) -> None:
        result = run_dag.run("""
            LumaGenerateOperator(task_id="submit", prompt="a waterfall", wait_for_completion=True,
                                 poll_interval=0.3)
        """)
        assert result.state == "success"
        assert DEFERRED in result.log
        done = result.xcom("submit")
        assert done["state"] == "completed"
        assert done["video_url"].startswith(f"{dag_sandbox.url}/media/{done['id']}")
        assert result.xcom("submit", "generation")["state"] == "completed"
        assert result.xcom("submit", "luma_video_url") == done["video_url"]
        assert dag_sandbox.submissions == 1

    def test_wait_non_deferrable_polls_on_worker(self, run_dag, dag_sandbox) -> None:
        result = run_dag.run("""
            LumaGenerateOperator(task_id="submit", prompt="a waterfall", wait_for_completion=True,
                                 deferrable=False, poll_interval=0.2)
        """)
        assert result.state == "success"
        assert DEFERRED not in result.log
        assert result.xcom("submit")["state"] == "completed"
        assert result.xcom("submit", "luma_video_url") == result.xcom("submit")["video_url"]
        assert dag_sandbox.submissions == 1
        assert dag_sandbox.stats()["by_route"][status_route(dag_sandbox)] >= 1

    def test_wait_for_failing_generation_fails_with_reason(self, run_dag, dag_sandbox) -> None:
        result = run_dag.run("""
            LumaGenerateOperator(task_id="submit", prompt="forbidden #fail", wait_for_completion=True,
                                 poll_interval=0.3)
        """)
        assert result.ti("submit").state == "failed"
        gen_id = result.xcom("submit", "generation")["id"]
        assert gen_id in result.log
        assert "Advanced prompt moderation failed" in result.log

    def test_wait_timeout_fails(self, run_dag, dag_sandbox) -> None:
        result = run_dag.run("""
            LumaGenerateOperator(task_id="submit", prompt="a slow glacier #slow", wait_for_completion=True,
                                 poll_interval=0.3, timeout=0.8)
        """)
        assert result.ti("submit").state == "failed"
        assert DEFERRED in result.log
        assert "LumaTimeoutError" in result.log and "Timed out waiting for" in result.log

    def test_extend_generation(self, run_dag, dag_sandbox) -> None:
        result = run_dag.run("""
            first = LumaGenerateOperator(task_id="first", prompt="a kite", wait_for_completion=True,
                                         deferrable=False, poll_interval=0.2)
            more = LumaGenerateOperator(
                task_id="extend", prompt="the kite flies higher", wait_for_completion=True, poll_interval=0.2,
                deferrable=False,
                extend_generation_id="{{ ti.xcom_pull(task_ids='first', key='generation')['id'] }}",
            )
            first >> more
        """)
        assert result.state == "success"
        first, extended = result.xcom("first"), result.xcom("extend")
        assert extended["id"] != first["id"]
        assert extended["state"] == "completed"
        stats = dag_sandbox.stats()
        assert stats["submissions"] == 2
        if is_official(dag_sandbox):  # an extension is a create whose first keyframe is the source
            assert stats["by_route"]["submit"] == 2 and "extend" not in stats["by_route"]
            create_paths = [r["path"] for r in stats["recent"] if r["route"] == "submit"]
            assert create_paths == ["/dream-machine/v1/generations/video"] * 2
            sent = dag_sandbox._state.store.get(extended["id"]).request
            assert sent["keyframes"] == {"frame0": {"type": "generation", "id": first["id"]}}
            assert sent["prompt"] == "the kite flies higher"
        else:
            assert stats["by_route"]["submit"] == 1 and stats["by_route"]["extend"] == 1
            extend_paths = [r["path"] for r in stats["recent"] if r["route"] == "extend"]
            assert extend_paths == [f"/luma/generations/{first['id']}/extend"]

    def test_mapped_generate_labels_map_indexes_with_prompts(self, run_dag, dag_sandbox) -> None:
        if not _partial_keeps_the_default_label():
            pytest.skip("before Airflow 3.3, .partial() drops the operator's default map_index_template")
        long_prompt = "an extremely long prompt about a city skyline at night with neon reflections"
        result = run_dag.run(f"""
            LumaGenerateOperator.partial(task_id="submit").expand(
                prompt=["a red fox", "a  blue\\n whale", {long_prompt!r}]
            )
        """)
        assert result.state == "success"
        tis = result.mapped("submit")
        assert [t.map_index for t in tis] == [0, 1, 2]
        assert [t.rendered_map_index for t in tis] == [
            "a red fox",
            "a blue whale",
            long_prompt[:47] + "…",
        ]
        assert dag_sandbox.submissions == 3
        assert len({result.xcom("submit", map_index=i) for i in range(3)}) == 3

    def test_mapped_generate_user_template_wins(self, run_dag, dag_sandbox) -> None:
        """A map_index_template given to partial() replaces the default prompt label."""
        result = run_dag.run("""
            LumaGenerateOperator.partial(task_id="submit", map_index_template="{{ task.prompt | upper }}").expand(
                prompt=["a red fox", "a blue whale"]
            )
        """)
        assert result.state == "success"
        assert [t.rendered_map_index for t in result.mapped("submit")] == ["A RED FOX", "A BLUE WHALE"]
        assert dag_sandbox.submissions == 2


class TestNeverPayTwice:
    def test_idempotency_key_reuses_across_runs_and_resubmits_what_the_gateway_forgot(
        self, run_dag, dag_sandbox, tmp_path
    ) -> None:
        body = f'''
            LumaGenerateOperator(task_id="submit", prompt="a lighthouse at dusk",
                                 idempotency_key="batch-1", ledger_path="{tmp_path / "ledger"}")
        '''
        first = run_dag.run(body)
        second = run_dag.run(body)
        assert first.state == second.state == "success"
        gen_id = first.xcom("submit")
        assert second.xcom("submit") == gen_id
        assert "recorded for idempotency key 'batch-1:" in second.log and "not submitting again" in second.log
        assert dag_sandbox.submissions == 1

        # Same key and prompt after the gateway forgot the id (expired, restarted sandbox): a fresh submit.
        dag_sandbox.reset()
        third = run_dag.run(body)
        assert third.state == "success"
        assert third.xcom("submit") != gen_id
        assert f"Generation {gen_id} recorded for idempotency key" in third.log
        assert "unknown to the gateway; not reusing it" in third.log
        assert dag_sandbox.submissions == 1  # counted since the reset

    def test_retry_reuses_the_recorded_generation(self, run_dag, dag_sandbox) -> None:
        result = run_dag.run("""
            class FlakyAfterSubmit(LumaGenerateOperator):
                def execute(self, context):
                    value = super().execute(context)
                    if context["ti"].try_number == 1:
                        raise RuntimeError("worker lost right after submit")
                    return value

            FlakyAfterSubmit(task_id="submit", prompt="an expensive shot", retries=1,
                             retry_delay=timedelta(seconds=0))
        """)
        ti = result.ti("submit")
        assert ti.try_number == 2
        assert ti.state == "success"
        assert "worker lost right after submit" in result.log
        gen_id = result.xcom("submit")
        assert f"Submitted Luma generation {gen_id}" in result.log
        assert f"Reusing generation {gen_id} recorded for an earlier try" in result.log
        assert "not submitting again" in result.log
        assert dag_sandbox.submissions == 1

    def test_retry_after_failed_generation_submits_again(self, run_dag, dag_sandbox) -> None:
        result = run_dag.run("""
            class WaitThenFlaky(LumaGenerateOperator):
                def execute(self, context):
                    if context["ti"].try_number == 1:
                        gen_id = super().execute(context)
                        import time
                        time.sleep(0.7)  # let the #fail generation reach "failed"
                        raise RuntimeError(f"crashed after submitting {gen_id}")
                    return super().execute(context)

            WaitThenFlaky(task_id="submit", prompt="will fail #fail", retries=1,
                          retry_delay=timedelta(seconds=0))
        """)
        ti = result.ti("submit")
        assert (ti.try_number, ti.state) == (2, "success")
        first_id = re.search(r"crashed after submitting ([0-9a-f-]{36})", result.log).group(1)
        assert re.search(
            rf"Generation {first_id} recorded for an earlier try.*failed "
            r"\(Advanced prompt moderation failed\)",
            result.log,
        )
        assert result.xcom("submit") != first_id  # a fresh generation replaced the failed one
        assert dag_sandbox.submissions == 2


class TestDownload:
    def _completed(self, run_dag, body: str):
        return run_dag.run(
            """
            submit = LumaGenerateOperator(task_id="submit", prompt="a sunset", wait_for_completion=True,
                                          deferrable=False, poll_interval=0.2)
        """
            + body
        )

    def test_to_folder(self, run_dag, dag_sandbox, tmp_path: Path) -> None:
        result = self._completed(
            run_dag,
            f'''
            LumaDownloadVideoOperator(task_id="download", generation_id="{{{{ ti.xcom_pull('submit')['id'] }}}}",
                                      destination="{tmp_path}/videos/")
            submit >> dag.task_dict["download"]
        ''',
        )
        assert result.state == "success"
        gen_id = result.xcom("submit")["id"]
        target = tmp_path / "videos" / f"{gen_id}.mp4"
        assert result.xcom("download") == f"file://{target}"
        assert target.read_bytes()[4:8] == b"ftyp"
        assert list((tmp_path / "videos").iterdir()) == [target]  # no .part files left behind

    def test_to_file_path_from_generation_dict(self, run_dag, dag_sandbox, tmp_path: Path) -> None:
        result = self._completed(
            run_dag,
            f'''
            @task
            def gets_so_far():  # the sandbox's GET count once the submit task is done (admin API)
                from luma_provider.sandbox import SandboxAdmin
                admin = SandboxAdmin("{dag_sandbox.url}", api_key="{dag_sandbox.api_key}")
                return admin.stats()["by_route"].get("get", 0)

            download = LumaDownloadVideoOperator(task_id="download", generation_id=submit.output,
                                                 destination="{tmp_path}/clip.mp4")
            submit >> gets_so_far() >> download
        ''',
        )
        assert result.state == "success"
        assert result.xcom("download") == f"file://{tmp_path}/clip.mp4"
        assert (tmp_path / "clip.mp4").read_bytes()[4:8] == b"ftyp"
        # The dict from XCom already had the URL: no status refetch, just the media download.
        gets = dag_sandbox.stats()["by_route"].get("get", 0)
        assert gets == result.xcom("gets_so_far")  # none by the download task
        if not is_official(dag_sandbox):
            assert gets == 0  # a gateway is polled through /luma/tasks; the official API by GETs

    def test_include_thumbnail(self, run_dag, dag_sandbox, tmp_path: Path) -> None:
        result = self._completed(
            run_dag,
            f'''
            LumaDownloadVideoOperator(task_id="download", generation_id=submit.output, include_thumbnail=True,
                                      destination="{tmp_path}/out/")
        ''',
        )
        gen_id = result.xcom("submit")["id"]
        assert result.xcom("download") == {
            "generation_id": gen_id,
            "video": f"file://{tmp_path}/out/{gen_id}.mp4",
            "thumbnail": f"file://{tmp_path}/out/{gen_id}.jpg",
        }
        assert (tmp_path / "out" / f"{gen_id}.mp4").read_bytes()[4:8] == b"ftyp"
        assert (tmp_path / "out" / f"{gen_id}.jpg").read_bytes()[:3] == b"\xff\xd8\xff"

    def test_mapped_submit_wait_download_pipeline(self, run_dag, dag_sandbox, tmp_path: Path) -> None:
        result = run_dag.run(f'''
            submit = LumaGenerateOperator.partial(task_id="submit").expand(
                prompt=["a red fox", "a blue whale", "a green forest"])
            wait = LumaTaskSensor.partial(task_id="wait", poll_interval=0.3).expand(generation_id=submit.output)
            LumaDownloadVideoOperator.partial(task_id="download", destination="{tmp_path}/run/").expand(
                generation_id=wait.output)
        ''')
        assert result.state == "success"
        assert [t.state for t in result.mapped("download")] == ["success"] * 3
        ids = [result.xcom("submit", map_index=i) for i in range(3)]
        files = sorted(p.name for p in (tmp_path / "run").iterdir())
        assert files == sorted(f"{i}.mp4" for i in ids)
        for gen_id in ids:
            assert (tmp_path / "run" / f"{gen_id}.mp4").read_bytes()[4:8] == b"ftyp"
        assert dag_sandbox.submissions == 3
