"""Daily content pipeline: one Luma video per prompt, every day, into your object storage.

What it shows:

* prompts for the run come from ``prompts/daily_prompts.yaml`` beside this file (or the
  ``prompts_file`` param), read at run time, never at parse time;
* prompts run in **chunks** of ``chunk_size`` (param, default 100): one mapped task group per
  chunk, ``submit`` (``LumaGenerateOperator(prompts=[...])``: a few submits at a time, every
  accepted id recorded at once) -> ``wait`` (``LumaTaskSensor`` on the whole chunk, deferred: no
  worker slot held while Luma renders) -> ``download`` (videos and thumbnails, a few at a time)
  into ``{output_root}/<run date>/``. 10,000 prompts are 300 task instances, not 30,000:
  Airflow's cost per task instance, not HTTP, is what limits big batches;
* ``output_root`` is any ``ObjectStoragePath`` URI (``s3://bucket/videos``, ``gs://...``,
  ``file:///...``; default ``$AIRFLOW_HOME/luma_output``);
* ``report`` runs whatever happened (``trigger_rule=all_done``) and writes ``manifest.json`` and a
  playable ``index.html`` gallery next to the videos, one entry per prompt, failed prompts
  included with their reason; ``check`` then fails the run if any prompt has no video *file*
  (states alone are not enough: a lost download must not pass), so one bad prompt neither sinks
  the batch nor goes unnoticed;
* a per-run budget: ``max_generations`` (param) submits at most that many prompts; the rest
  are listed in the manifest as ``skipped`` (budget), and the log of ``load_prompts`` says so.
  On the official API each submit also honours the connection's credit floor (``min_credits``),
  and the manifest records the credit balance before and after the run;
* retries (``retries=2``) never pay twice: a retried ``submit`` reuses every prompt already
  accepted and submits only the rest; a retried ``wait`` re-attaches to the same ids;
* concurrency against the gateway: ``LUMA_CHUNK_CONCURRENCY`` submits/downloads per chunk
  (default 4) times the chunks running at once, which the Airflow pool named in ``LUMA_POOL``
  caps (``airflow pools set luma 5 "Luma gateway"``; default: ``default_pool``). Deferred
  waits take no pool slot.

For a handful of prompts where you want one grid row (and per-prompt retries) per prompt,
``luma_asset_pipeline`` shows the mapped one-prompt-per-task shape (``luma_common.video_group``).
The building blocks live in ``luma_common.py`` beside this file; copy both files together.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param, task
from luma_common import OUTPUT_ROOT, RUN_DATE, chunk_group, raise_if_any_failed

PROMPTS_FILE = str(Path(__file__).parent / "prompts" / "daily_prompts.yaml")

with DAG(
    dag_id="luma_daily_content",
    description="Generate one Luma video per prompt every day, in chunks; manifest + HTML gallery per run",
    schedule="0 6 * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["luma", "example"],
    params={
        "prompts_file": Param(PROMPTS_FILE, type="string", description="YAML or CSV file of prompts"),
        "output_root": Param(OUTPUT_ROOT, type="string", description="ObjectStoragePath URI for outputs"),
        "chunk_size": Param(
            100, type="integer", minimum=1, maximum=1000, description="Prompts per submit/wait/download task"
        ),
        "max_generations": Param(
            None,
            type=["null", "integer"],
            minimum=0,
            description="Budget: submit at most this many prompts this run (the rest are listed as skipped)",
        ),
    },
    doc_md=__doc__,
) as dag:

    @task
    def load_prompts(params: dict, ti=None) -> list[dict]:
        """Read the prompt file (YAML list or CSV with a header); chunks within the run's budget."""
        from luma_common import plan_run

        from luma_provider.prompts import load_prompt_file

        rows = load_prompt_file(params["prompts_file"])
        return plan_run(rows, int(params["chunk_size"]), params.get("max_generations"), ti=ti)

    @task(trigger_rule="all_done", templates_dict={"run_date": RUN_DATE})
    def report(params: dict, run_id: str, templates_dict: dict, ti=None) -> dict:
        """Manifest + gallery for every prompt of the run, whatever state each ended in."""
        from luma_common import write_chunk_report

        return write_chunk_report(
            ti=ti,
            run_id=run_id,
            output_dir=f"{params['output_root']}/{templates_dict['run_date']}",
        )

    @task
    def check(summary: dict) -> None:
        """Fail the run (after the report is written) if any prompt has no video on storage."""
        raise_if_any_failed(summary)

    # One submit -> wait -> download group per chunk of prompts (see luma_common.chunk_group).
    chunks = chunk_group(
        f"{{{{ params.output_root }}}}/{RUN_DATE}/",
        idempotency_key=RUN_DATE,
        prompt_source="{{ params.prompts_file }}",  # the OpenLineage input of each submit
    ).expand_kwargs(load_prompts())
    summary = report()
    chunks >> summary
    check(summary)
