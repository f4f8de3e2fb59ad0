"""Extra links of the Luma operators and sensor: the video (playable) and its download URL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import TaskInstanceKey

    from luma_provider.models import LumaGeneration

#: XCom key holding the video URL, pushed by the operator/sensor that knows it.
XCOM_VIDEO_URL = "luma_video_url"


class LumaVideoLink(BaseOperatorLink):
    """Extra link "Luma video": the generated video, playable in the browser, once known.

    On Airflow 3 the task runner calls ``get_link`` right after each try, on the same operator
    object the task ran with, and stores the result itself; so the URL is read from that object
    rather than looked up in XCom (a lookup before the URL exists only logs errors).
    """

    name = "Luma video"
    attribute = "_luma_video_url"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return getattr(operator, self.attribute, None) or ""


class LumaVideoDownloadLink(LumaVideoLink):
    """Extra link "Luma video (download)": the download URL (gateways serve it as an attachment)."""

    name = "Luma video (download)"
    attribute = "_luma_download_url"


def push_video_link(context: Context, generation: LumaGeneration | None) -> None:
    """Publish the video URLs for the extra links and, under ``luma_video_url``, in XCom."""
    if generation is None or not generation.video_url:
        return
    # On the operator object itself, not read back from XCom: the task runner calls get_link on
    # this very object after each try, and an XCom lookup there before the URL exists logs an
    # error line per try (seen in the example DAGs' logs).
    task: Any = context["task"]
    task._luma_video_url = generation.playable_url or generation.video_url
    task._luma_download_url = generation.video_url
    context["ti"].xcom_push(key=XCOM_VIDEO_URL, value=generation.video_url)
