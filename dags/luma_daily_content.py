"""Daily content pipeline: one Luma video per prompt, every day, into your object storage.

What it shows:

* prompts for the run come from ``prompts/daily_prompts.yaml`` beside this file (or the
  ``prompts_file`` param), read at run time, never at parse time;
* a **mapped task group** per prompt: submit (``LumaGenerateOperator``) -> wait
  (``LumaTaskSensor``, deferrable: no worker slot held while Luma renders) -> download the video
  and thumbnail (``LumaDownloadVideoOperator``) into ``{output_root}/<run date>/``;
  ``output_root`` is any ``ObjectStoragePath`` URI (``s3://bucket/videos``, ``gs://...``,
  ``file:///...``; default ``$AIRFLOW_HOME/luma_output``);
* ``report`` runs whatever happened (``trigger_rule=all_done``) and writes ``manifest.json`` and a
  playable ``index.html`` gallery next to the videos, failed prompts included with their reason;
  ``check`` then fails the run if any prompt failed, so one bad prompt neither sinks the batch
  nor goes unnoticed;
* concurrency against the gateway is capped by the Airflow pool named in ``LUMA_POOL``
  (create it with ``airflow pools set luma 5 "Luma gateway"``; default: ``default_pool``).
  Deferred sensors do not take pool slots, so the pool limits submissions and downloads.

The per-prompt group lives in ``luma_common.py`` beside this file (shared with
``luma_asset_pipeline``); copy both files together.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param, task
from luma_common import OUTPUT_ROOT, RUN_DATE, raise_if_any_failed, video_group

PROMPTS_FILE = str(Path(__file__).parent / "prompts" / "daily_prompts.yaml")

with DAG(
    dag_id="luma_daily_content",
    description="Generate one Luma video per prompt every day; manifest + HTML gallery per run",
    schedule="0 6 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["luma", "example"],
    params={
        "prompts_file": Param(PROMPTS_FILE, type="string", description="YAML or CSV file of prompts"),
        "output_root": Param(OUTPUT_ROOT, type="string", description="ObjectStoragePath URI for outputs"),
    },
    doc_md=__doc__,
) as dag:

    @task
    def load_prompts(params: dict) -> list[dict]:
        """Read the prompt file (YAML list or CSV with a header) into operator kwargs."""
        from luma_provider.prompts import load_prompt_file

        return load_prompt_file(params["prompts_file"])

    @task(trigger_rule="all_done", templates_dict={"run_date": RUN_DATE})
    def report(params: dict, run_id: str, templates_dict: dict, ti=None) -> dict:
        """Manifest + gallery for every prompt of the run, whatever state each ended in."""
        from luma_common import write_run_report

        return write_run_report(
            ti=ti,
            run_id=run_id,
            group_id="generate",
            output_dir=f"{params['output_root']}/{templates_dict['run_date']}",
        )

    @task
    def check(summary: dict) -> None:
        """Fail the run (after the report is written) if any prompt did not produce a video."""
        raise_if_any_failed(summary)

    # One submit -> wait -> download group per prompt (see luma_common.video_group).
    groups = video_group(f"{{{{ params.output_root }}}}/{RUN_DATE}/", idempotency_key=RUN_DATE).expand_kwargs(
        load_prompts()
    )
    summary = report()
    groups >> summary
    check(summary)
