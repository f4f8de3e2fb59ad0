"""Image to video, then extend: animate between two keyframes and continue the shot.

What it shows:

* ``LumaGenerateOperator`` with a **start and an end keyframe** (``image_url`` /
  ``image_end_url``): http(s) URLs, or ``data:image/...;base64,`` URIs for local images. The
  defaults are two tiny inline PNGs, so the DAG runs offline against the sandbox; pass your own
  frames as params (a real gateway may insist on public https URLs);
* a deferrable ``LumaTaskSensor`` waits for it without holding a worker slot;
* **extend** the completed video: a second ``LumaGenerateOperator`` with
  ``extend_generation_id`` set to the first one's id, **chained through XCom**
  (``keyframes.output`` is the id the operator returned). Luma only extends *completed*
  generations, hence ``wait_keyframes >> extend``;
* wait for the extension, download **both** videos with thumbnails, and write a
  ``manifest.json`` + ``index.html`` showing the clip and its extension side by side.

Outputs go to ``{output_root}/image_to_video/<run time>/`` (``LUMA_OUTPUT_ROOT``, default
``$AIRFLOW_HOME/luma_output``). Try it: ``airflow dags test luma_image_to_video``.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param, task
from luma_common import OUTPUT_ROOT, POLL_INTERVAL, POOL, raise_if_any_failed

from luma_provider.operators.luma import LumaDownloadVideoOperator, LumaGenerateOperator
from luma_provider.sensors.luma import LumaTaskSensor

# 16x9 solid-colour PNGs (dawn orange -> dusk blue), small enough to inline.
DAWN_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABAAAAAJCAIAAAC0SDtlAAAAFElEQVR42mP432NDEmIY1TAo"
    "NAAA7oUAAD0x4zoAAAAASUVORK5CYII="
)
DUSK_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABAAAAAJCAIAAAC0SDtlAAAAE0lEQVR42mOQ08gjCTGMahgU"
    "GgAPcmVBrhWERQAAAABJRU5ErkJggg=="
)

OUTPUT_DIR = "{{ params.output_root }}/image_to_video/{{ dag_run.run_after | ts_nodash }}"
RETRY = {"pool": POOL, "retries": 2, "retry_delay": timedelta(seconds=30)}

with DAG(
    dag_id="luma_image_to_video",
    description="Keyframes to video with Luma, then extend the completed clip",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["luma", "example"],
    params={
        "prompt": Param(
            "Time-lapse of a harbour from dawn to dusk, boats gliding, soft clouds", type="string"
        ),
        "image_url": Param(DAWN_PNG, type="string", description="Start frame: https URL or data:image URI"),
        "image_end_url": Param(DUSK_PNG, type=["null", "string"], description="End frame (optional)"),
        "extend_prompt": Param(
            "The harbour lights come on as night falls, camera slowly pulls back", type="string"
        ),
        "output_root": Param(OUTPUT_ROOT, type="string", description="ObjectStoragePath URI for outputs"),
    },
    doc_md=__doc__,
) as dag:
    keyframes = LumaGenerateOperator(
        task_id="keyframes",
        prompt="{{ params.prompt }}",
        aspect_ratio="16:9",
        image_url="{{ params.image_url }}",
        image_end_url="{{ params.image_end_url or '' }}",
        **RETRY,
    )
    wait_keyframes = LumaTaskSensor(
        task_id="wait_keyframes", generation_id=keyframes.output, poll_interval=POLL_INTERVAL, timeout=60 * 60
    )

    # The id returned by `keyframes` feeds the extension; it may only start once that video is done.
    extend = LumaGenerateOperator(
        task_id="extend",
        prompt="{{ params.extend_prompt }}",
        extend_generation_id=keyframes.output,
        **RETRY,
    )
    wait_keyframes >> extend
    wait_extend = LumaTaskSensor(
        task_id="wait_extend", generation_id=extend.output, poll_interval=POLL_INTERVAL, timeout=60 * 60
    )

    download_keyframes = LumaDownloadVideoOperator(
        task_id="download_keyframes",
        generation_id=wait_keyframes.output,
        include_thumbnail=True,
        destination=f"{OUTPUT_DIR}/",
        **RETRY,
    )
    download_extension = LumaDownloadVideoOperator(
        task_id="download_extension",
        generation_id=wait_extend.output,
        include_thumbnail=True,
        destination=f"{OUTPUT_DIR}/",
        **RETRY,
    )

    @task(trigger_rule="all_done", templates_dict={"output_dir": OUTPUT_DIR})
    def report(params: dict, run_id: str, templates_dict: dict, ti=None) -> dict:
        """Manifest + gallery for the clip and its extension, whatever state each ended in."""
        from luma_provider.report import write_report

        pull = ti.xcom_pull
        rows = [
            {
                "prompt": params["prompt"],
                "step": "keyframes",
                "generation_id": pull(task_ids="keyframes"),
                "download": pull(task_ids="download_keyframes"),
            },
            {
                "prompt": params["extend_prompt"],
                "step": "extend",
                "generation_id": pull(task_ids="extend"),
                "extends": pull(task_ids="keyframes"),
                "download": pull(task_ids="download_extension"),
            },
        ]
        return write_report(
            run_id=run_id,
            output_dir=templates_dict["output_dir"],
            rows=rows,
            title="Luma image to video + extend",
        )

    @task
    def check(summary: dict) -> None:
        """Fail the run (after the report is written) if either video is missing."""
        raise_if_any_failed(summary)

    summary = report()
    [download_keyframes, download_extension] >> summary
    check(summary)
