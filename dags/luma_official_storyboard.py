"""Storyboard on Luma's official API: a photon still, animated, extended, upscaled, with sound.

What it shows:

* ``LumaGenerateImageOperator``: a **photon** image (``photon-1``) for the opening shot;
* ``LumaGenerateOperator`` with that image as its start keyframe: ``image_url`` is the
  completed image generation's ``image_url``, **pulled from XCom**;
* **extend** the clip (``extend_generation_id``), then ``LumaUpscaleVideoOperator`` to
  **1080p** and ``LumaAddAudioOperator`` to give the upscaled clip a **sound track**;
* every step submits once and waits deferred (``wait_for_completion=True``; the triggerer
  polls, no worker slot is held), and each builds on the previous step's *completed* result;
* ``LumaDownloadVideoOperator`` saves the final video (``<id>.mp4``) and the still
  (``<id>.jpg``), and ``storyboard.json`` lists every step's generation.

**It needs a connection to Luma's official API** (``luma_default``):
extra ``{"api_flavour": "official"}`` or a host ending in ``/dream-machine/v1``. Images,
upscales and audio do not exist on the gateways; on a gateway connection the first task fails
before any request is sent. To try it offline::

    python -m luma_provider.sandbox --api-flavour official --port 8000 --api-key sandbox-key
    export AIRFLOW_CONN_LUMA_DEFAULT='{"conn_type": "luma", "host": "http://127.0.0.1:8000",
        "password": "sandbox-key", "extra": {"api_flavour": "official", "allow_private_downloads": true}}'
    airflow dags test luma_official_storyboard

Outputs go to ``{output_root}/storyboard/<run time>/`` (``LUMA_OUTPUT_ROOT``, default
``$AIRFLOW_HOME/luma_output``).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Param, task
from luma_common import OUTPUT_ROOT, POLL_INTERVAL, POOL

from luma_provider.operators.luma import (
    LumaAddAudioOperator,
    LumaDownloadVideoOperator,
    LumaGenerateImageOperator,
    LumaGenerateOperator,
    LumaUpscaleVideoOperator,
)

OUTPUT_DIR = "{{ params.output_root }}/storyboard/{{ dag_run.run_after | ts_nodash }}"
#: Each step submits once (a retry reconnects to the generation it paid for) and waits deferred.
STEP = {
    "pool": POOL,
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "wait_for_completion": True,
    "poll_interval": POLL_INTERVAL,
    "timeout": 60 * 60,
}


def generation_id(task_id: str) -> str:
    """Template: the id of ``task_id``'s (completed) generation."""
    return f"{{{{ ti.xcom_pull(task_ids='{task_id}', key='generation')['id'] }}}}"


with DAG(
    dag_id="luma_official_storyboard",
    description="Photon image -> video -> extend -> 1080p upscale -> audio, on Luma's official API",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["luma", "example"],
    params={
        "image_prompt": Param(
            "A lighthouse on a basalt cliff at golden hour, cinematic wide shot", type="string"
        ),
        "video_prompt": Param(
            "Waves crash below the lighthouse, the camera slowly pushes in, gulls circle", type="string"
        ),
        "extend_prompt": Param(
            "The sun sets and the lighthouse beam sweeps across the dark sea", type="string"
        ),
        "audio_prompt": Param("Crashing waves, distant gulls, a low wind", type="string"),
        "audio_negative_prompt": Param("music, voices", type=["null", "string"]),
        "resolution": Param("1080p", enum=["720p", "1080p", "4k"]),
        "output_root": Param(OUTPUT_ROOT, type="string", description="ObjectStoragePath URI for outputs"),
    },
    doc_md=__doc__,
) as dag:
    image = LumaGenerateImageOperator(
        task_id="image", prompt="{{ params.image_prompt }}", aspect_ratio="16:9", **STEP
    )
    # The still's URL is the video's start keyframe: Luma fetches it from its own CDN.
    video = LumaGenerateOperator(
        task_id="video",
        prompt="{{ params.video_prompt }}",
        aspect_ratio="16:9",
        image_url="{{ ti.xcom_pull(task_ids='image', key='generation')['image_url'] }}",
        **STEP,
    )
    extend = LumaGenerateOperator(
        task_id="extend",
        prompt="{{ params.extend_prompt }}",
        extend_generation_id=generation_id("video"),
        **STEP,
    )
    upscale = LumaUpscaleVideoOperator(
        task_id="upscale", generation_id=generation_id("extend"), resolution="{{ params.resolution }}", **STEP
    )
    audio = LumaAddAudioOperator(
        task_id="audio",
        generation_id=generation_id("upscale"),
        prompt="{{ params.audio_prompt }}",
        negative_prompt="{{ params.audio_negative_prompt or '' }}",
        **STEP,
    )
    download_video = LumaDownloadVideoOperator(
        task_id="download_video",
        generation_id=audio.output,
        destination=f"{OUTPUT_DIR}/",
        pool=POOL,
        retries=2,
    )
    download_image = LumaDownloadVideoOperator(
        task_id="download_image",
        generation_id=image.output,
        destination=f"{OUTPUT_DIR}/",
        pool=POOL,
        retries=2,
    )
    image >> video >> extend >> upscale >> audio

    @task(templates_dict={"output_dir": OUTPUT_DIR})
    def storyboard(templates_dict: dict, ti=None) -> dict:
        """Write ``storyboard.json``: each step's generation id, and the downloaded files."""
        import json

        from airflow.sdk import ObjectStoragePath

        steps = {
            step: ti.xcom_pull(task_ids=step, key="generation")["id"]
            for step in ("image", "video", "extend", "upscale", "audio")
        }
        summary = {
            "steps": steps,
            "video": ti.xcom_pull(task_ids="download_video"),
            "image": ti.xcom_pull(task_ids="download_image"),
        }
        target = ObjectStoragePath(templates_dict["output_dir"]) / "storyboard.json"
        target.write_text(json.dumps(summary, indent=2), encoding="utf-8")
        return summary

    [download_video, download_image] >> storyboard()
