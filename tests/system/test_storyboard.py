"""``luma_official_storyboard`` end to end under ``airflow dags test`` against an official sandbox.

Image -> image-to-video -> extend -> upscale -> audio -> downloads: the test checks what each
step sent (the sandbox's own record of every generation), what was paid, and the files on disk.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import pytest

from .conftest import SANDBOX_KEY

pytestmark = pytest.mark.system

DEFERRED = "[DAG TEST] running trigger in line"
STEPS = ("image", "video", "extend", "upscale", "audio")


def official_generation(sandbox: Any, generation_id: str) -> dict[str, Any]:
    """The sandbox's official view of a generation (404 -> HTTPError: the id must exist)."""
    request = urllib.request.Request(
        f"{sandbox.api_base_url}/generations/{generation_id}",
        headers={"Authorization": f"Bearer {SANDBOX_KEY}"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def test_official_storyboard_end_to_end(official_dags_test, official_sandbox) -> None:
    run = official_dags_test("luma_official_storyboard")

    assert run.returncode == 0, run.output[-3000:]
    folders = list((run.out_root / "storyboard").iterdir())
    assert len(folders) == 1, folders
    folder = folders[0]
    summary = json.loads((folder / "storyboard.json").read_text(encoding="utf-8"))
    ids = summary["steps"]
    assert list(ids) == list(STEPS)
    assert len(set(ids.values())) == len(STEPS), ids  # five distinct paid generations
    gens = {step: official_generation(official_sandbox, gen_id) for step, gen_id in ids.items()}
    assert all(g["state"] == "completed" for g in gens.values()), gens

    # What each step sent, as the sandbox recorded it.
    image = gens["image"]
    assert image["generation_type"] == "image"
    assert image["request"]["model"] == "photon-1"
    assert image["request"]["aspect_ratio"] == "16:9"
    assert image["request"]["prompt"].startswith("A lighthouse")

    video = gens["video"]
    assert video["generation_type"] == "video"
    assert video["request"]["keyframes"] == {"frame0": {"type": "image", "url": image["assets"]["image"]}}

    extend = gens["extend"]
    assert extend["request"]["keyframes"] == {"frame0": {"type": "generation", "id": ids["video"]}}
    assert extend["request"]["prompt"].startswith("The sun sets")

    assert gens["upscale"]["request"] == {"generation_type": "upscale_video", "resolution": "1080p"}
    assert gens["audio"]["request"] == {
        "generation_type": "add_audio",
        "prompt": "Crashing waves, distant gulls, a low wind",
        "negative_prompt": "music, voices",
    }

    # Each create went to its route, built on the previous step's generation, and was paid once.
    stats = official_sandbox.stats()
    assert stats["submissions"] == len(STEPS)
    creates = [r["path"] for r in stats["recent"] if r["method"] == "POST"]
    base = "/dream-machine/v1/generations"
    assert creates == [
        f"{base}/image",
        f"{base}/video",
        f"{base}/video",
        f"{base}/{ids['extend']}/upscale",
        f"{base}/{ids['upscale']}/audio",
    ]
    assert run.output.count(DEFERRED) == len(STEPS)  # every wait deferred

    # The final video and the still on disk.
    final = folder / f"{ids['audio']}.mp4"
    assert summary["video"] == f"file://{final}" or summary["video"].endswith(final.name)
    assert final.read_bytes()[4:8] == b"ftyp"
    still = folder / f"{ids['image']}.jpg"
    assert summary["image"].endswith(still.name)
    assert still.read_bytes()[:3] == b"\xff\xd8\xff"
    assert sorted(p.name for p in folder.iterdir()) == sorted([final.name, still.name, "storyboard.json"])
