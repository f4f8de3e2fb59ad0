"""Asset-triggered batch: render a prompts file whenever it is updated, then announce the batch.

What it shows:

* **data-aware scheduling**: the DAG runs when the ``Asset`` for the prompts file gets an
  event, not on a clock. Update the asset from any DAG with ``outlets=[Asset(<uri>)]``, or from
  outside Airflow (REST API ``POST /api/v2/assets/events``, or "Materialize" in the UI). The URI
  is ``$LUMA_PROMPTS_ASSET`` (default ``file://$AIRFLOW_HOME/luma_prompts/incoming.yaml``). An
  event may point at another file with ``extra={"prompts_file": "s3://.../prompts.yaml"}``;
* the same mapped **submit -> wait (deferred) -> download** group as ``luma_daily_content``
  (from ``luma_common.py``), one per prompt, into ``{output_root}/batches/<run time>/``.
  Asset-triggered runs have no logical date, so the folder is named from ``dag_run.run_after``;
* ``report`` (runs whatever happened) writes ``manifest.json`` and the ``index.html`` gallery,
  and emits the **batch asset** ``luma://batches/incoming`` with the manifest location and the
  counts in the asset event's ``extra``, e.g.
  ``{"manifest": "file:///.../manifest.json", "total": 4, "completed": 3, "failed": 1, ...}``,
  so a downstream DAG scheduled on ``Asset("luma://batches/incoming")`` can publish, review or
  transcode the batch (read ``triggering_asset_events`` to find it);
* ``check`` fails the run afterwards if any prompt produced no video.

Try it with ``airflow dags test luma_asset_pipeline -c '{"prompts_file": "/path/prompts.yaml"}'``.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, Asset, Param, task
from luma_common import AIRFLOW_HOME, OUTPUT_ROOT, raise_if_any_failed, video_group

#: The prompts file this DAG watches (YAML list or CSV, see ``luma_provider.prompts``).
PROMPTS_ASSET = Asset(
    os.environ.get(
        "LUMA_PROMPTS_ASSET", f"file://{os.path.join(AIRFLOW_HOME, 'luma_prompts', 'incoming.yaml')}"
    )
)
#: Emitted once per batch; the event's ``extra`` says where the manifest is and how it went.
BATCH_ASSET = Asset("luma://batches/incoming")

# Asset-triggered runs have no logical date: name the batch folder after the run's time.
BATCH_DIR = "{{ params.output_root }}/batches/{{ dag_run.run_after | ts_nodash }}"
# The prompts file the run read (load_prompts's rule: an event's extra overrides the param),
# the input dataset of each submit's OpenLineage events.
PROMPTS_FILE_READ = (
    "{% set ns = namespace(path=params.prompts_file) %}"
    "{% for events in triggering_asset_events.values() %}{% for event in events %}"
    "{% set ns.path = (event.extra or {}).get('prompts_file', ns.path) %}"
    "{% endfor %}{% endfor %}{{ ns.path }}"
)

with DAG(
    dag_id="luma_asset_pipeline",
    description="Render a prompts file into videos whenever its Asset updates; emit a batch Asset",
    schedule=[PROMPTS_ASSET],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["luma", "example", "assets"],
    params={
        "prompts_file": Param(PROMPTS_ASSET.uri, type="string", description="YAML or CSV file of prompts"),
        "output_root": Param(OUTPUT_ROOT, type="string", description="ObjectStoragePath URI for outputs"),
    },
    doc_md=__doc__,
) as dag:

    @task
    def load_prompts(params: dict, triggering_asset_events=None) -> list[dict]:
        """Read the prompts file; a triggering event's ``extra["prompts_file"]`` overrides the param."""
        from luma_provider.prompts import load_prompt_file

        path = params["prompts_file"]
        for events in (triggering_asset_events or {}).values():
            for event in events:
                path = (event.extra or {}).get("prompts_file", path)
        print(f"Reading prompts from {path}")
        return load_prompt_file(path)

    @task(trigger_rule="all_done", outlets=[BATCH_ASSET], templates_dict={"batch_dir": BATCH_DIR})
    def report(run_id: str, templates_dict: dict, ti=None, outlet_events=None) -> dict:
        """Manifest + gallery for every prompt, then describe the batch in the asset event."""
        from luma_common import write_run_report

        from luma_provider.gallery import GALLERY_NAME, MANIFEST_NAME

        batch_dir = templates_dict["batch_dir"]
        manifest = write_run_report(ti=ti, run_id=run_id, output_dir=batch_dir, group_id="generate")
        outlet_events[BATCH_ASSET].extra = {
            "run_id": run_id,
            "manifest": f"{batch_dir}/{MANIFEST_NAME}",
            "gallery": f"{batch_dir}/{GALLERY_NAME}",
            "total": manifest["total"],
            "completed": manifest["counts"].get("completed", 0),
            "failed": manifest["total"] - manifest["counts"].get("completed", 0),
        }
        return manifest

    @task
    def check(summary: dict) -> None:
        """Fail the run (after the report and the asset event) if any prompt produced no video."""
        raise_if_any_failed(summary)

    groups = video_group(f"{BATCH_DIR}/", prompt_source=PROMPTS_FILE_READ).expand_kwargs(load_prompts())
    summary = report()
    groups >> summary
    check(summary)
