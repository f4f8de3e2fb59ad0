"""Edges of response parsing that mutation testing showed unguarded.

Fallback chains are checked with payloads where every candidate holds a DIFFERENT value, so
a reordered or dropped candidate changes the result. Bounds use literal numbers, never the
constant under test.
"""

from __future__ import annotations

import pytest

from luma_provider.models import (
    LumaGeneration,
    LumaResponseShapeError,
    LumaState,
    is_generation_id,
    parse_generation,
    parse_generations,
)


def native(**fields):
    return parse_generation({"id": "gen-1", "state": "completed", **fields})


FULL_VIDEO = {
    "video": {"download_url": "https://cdn/dl.mp4", "url": "https://cdn/video.mp4"},
    "video_raw": {"url": "https://cdn/raw.mp4"},
    "artifact": {"video": {"url": "https://cdn/art.mp4"}},
    "assets": {"video": "https://cdn/assets.mp4"},
}


class TestVideoUrlChain:
    def test_order(self):
        payload = {k: dict(v) for k, v in FULL_VIDEO.items()}
        seen = []
        seen.append(native(**payload).video_url)
        del payload["video"]["download_url"]
        seen.append(native(**payload).video_url)
        del payload["video"]
        seen.append(native(**payload).video_url)
        del payload["video_raw"]
        seen.append(native(**payload).video_url)
        del payload["artifact"]
        seen.append(native(**payload).video_url)
        del payload["assets"]
        seen.append(native(**payload).video_url)
        assert seen == [
            "https://cdn/dl.mp4",
            "https://cdn/video.mp4",
            "https://cdn/raw.mp4",
            "https://cdn/art.mp4",
            "https://cdn/assets.mp4",
            None,
        ]

    def test_playable_order(self):
        gen = native(
            video={"url": "https://cdn/video.mp4", "download_url": "https://cdn/dl.mp4"},
            assets={"video": "https://cdn/assets.mp4"},
            artifact={"video": {"url": "https://cdn/art.mp4"}},
        )
        assert gen.playable_url == "https://cdn/video.mp4"
        gen = native(
            assets={"video": "https://cdn/assets.mp4"}, artifact={"video": {"url": "https://cdn/art.mp4"}}
        )
        assert gen.playable_url == "https://cdn/assets.mp4"
        gen = native(artifact={"video": {"url": "https://cdn/art.mp4"}})
        assert gen.playable_url == "https://cdn/art.mp4"
        # download_url is never "playable"
        assert native(video={"download_url": "https://cdn/dl.mp4"}).playable_url is None

    def test_empty_download_url_skipped(self):
        gen = native(video={"download_url": "  ", "url": "https://cdn/video.mp4"})
        assert gen.video_url == "https://cdn/video.mp4"

    def test_url_length_bound(self):
        ok = "https://cdn/" + "a" * (8192 - len("https://cdn/"))
        assert len(ok) == 8192
        assert native(video={"url": ok}).video_url == ok
        too_long = ok + "b"
        assert native(
            video={"url": too_long, "download_url": None}, assets={"video": "https://x/y"}
        ).video_url == ("https://x/y")


class TestThumbnailChain:
    def test_order(self):
        payload = {
            "thumbnail": {"url": "https://cdn/t1.jpg"},
            "video": {"thumbnail": "https://cdn/t2.jpg"},
            "artifact": {"thumbnail": {"url": "https://cdn/t3.jpg"}},
            "assets": {"image": "https://cdn/t4.jpg"},
        }
        seen = [native(**payload).thumbnail_url]
        del payload["thumbnail"]
        seen.append(native(**payload).thumbnail_url)
        del payload["video"]
        seen.append(native(**payload).thumbnail_url)
        del payload["artifact"]
        seen.append(native(**payload).thumbnail_url)
        assert seen == [
            "https://cdn/t1.jpg",
            "https://cdn/t2.jpg",
            "https://cdn/t3.jpg",
            "https://cdn/t4.jpg",
        ]

    def test_last_frame_order(self):
        gen = native(
            last_frame={"url": "https://cdn/lf1.jpg"}, artifact={"last_frame": {"url": "https://cdn/lf2.jpg"}}
        )
        assert gen.last_frame_url == "https://cdn/lf1.jpg"
        gen = native(artifact={"last_frame": {"url": "https://cdn/lf2.jpg"}})
        assert gen.last_frame_url == "https://cdn/lf2.jpg"


class TestDurationChain:
    def test_order(self):
        payload = {
            "video_raw": {"duration": 1.5},
            "artifact": {"video_raw": {"duration": 2.5}},
            "video": {"duration": 3.5},
            "request": {"duration": "4s"},
        }
        seen = [native(**payload).duration]
        del payload["video_raw"]
        seen.append(native(**payload).duration)
        del payload["artifact"]
        seen.append(native(**payload).duration)
        del payload["video"]
        seen.append(native(**payload).duration)
        assert seen == [1.5, 2.5, 3.5, 4.0]

    def test_unusable_first_candidate_falls_through(self):
        assert native(video_raw={"duration": "n/a"}, video={"duration": 3.5}).duration == 3.5

    @pytest.mark.parametrize(("raw", "expected"), [("5s", 5.0), (" 9s ", 9.0), ("5X", None), ("7", 7.0)])
    def test_string_durations(self, raw, expected):
        assert native(request={"duration": raw}).duration == expected


class TestSizeChain:
    def test_first_with_width_wins(self):
        gen = native(
            video={"url": "https://cdn/v.mp4"},  # no width: skipped
            video_raw={"width": 1280, "height": 720},
            artifact={"video": {"width": 640, "height": 360}},
        )
        assert (gen.width, gen.height) == (1280, 720)
        gen = native(
            artifact={"video": {"width": 640, "height": 360}, "video_raw": {"width": 320, "height": 180}}
        )
        assert (gen.width, gen.height) == (640, 360)
        gen = native(artifact={"video_raw": {"width": 320, "height": 180}})
        assert (gen.width, gen.height) == (320, 180)
        gen = native(video={"width": 1920, "height": 1080}, video_raw={"width": 1, "height": 1})
        assert (gen.width, gen.height) == (1920, 1080)


class TestPromptAndFailureChain:
    def test_prompt_order(self):
        payload = {"prompt": "p-top", "request": {"prompt": "p-request"}, "user_prompt": "p-user"}
        seen = [native(**payload).prompt]
        del payload["prompt"]
        seen.append(native(**payload).prompt)
        del payload["request"]
        seen.append(native(**payload).prompt)
        assert seen == ["p-top", "p-request", "p-user"]

    def test_blank_prompt_falls_through(self):
        assert native(prompt="   ", user_prompt="p-user").prompt == "p-user"

    def test_failure_reason_order(self):
        assert native(failure_reason="a", fail_reason="b").failure_reason == "a"
        assert native(fail_reason="b").failure_reason == "b"

    def test_text_bound(self):
        exact = "x" * 4000
        assert native(prompt=exact).prompt == exact
        long = "y" * 4001
        clipped = native(prompt=long).prompt
        assert clipped == "y" * 3999 + "…"
        assert len(clipped) == 4000


class TestNumbers:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            (True, None),
            (False, None),
            (12, 12.0),
            ("12.5", 12.5),
            ("NaN", None),
            ("inf", None),
            (1e15, 1e15),
            (-1e15, -1e15),
            (1e15 + 1, None),
            (1e16, None),
            ("0" * 39 + "5", 5.0),  # 40 characters: still parsed
            ("0" * 40 + "5", None),  # 41 characters: dropped unread
            ([5], None),
            ({"v": 5}, None),
            (None, None),
        ],
    )
    def test_estimate_wait_seconds(self, raw, expected):
        assert native(estimate_wait_seconds=raw).estimate_wait_seconds == expected

    def test_width_truncated_to_int(self):
        gen = native(video={"width": "1280.9", "height": 720.2})
        assert (gen.width, gen.height) == (1280, 720)
        assert type(gen.width) is int


class TestTimestamps:
    @pytest.mark.parametrize(
        ("raw", "expected"),
        [
            ("2024-05-01T00:00:00Z", "2024-05-01T00:00:00Z"),
            ("", None),
            (0, None),
            (-5, None),
            (0.5, "1970-01-01T00:00:00.500000Z"),
            (1700000000, "2023-11-14T22:13:20Z"),
            (1700000000000, "2023-11-14T22:13:20Z"),  # milliseconds
            (1e11, "5138-11-16T09:46:40Z"),  # exactly 1e11: still seconds
            (100000000000.5, "1973-03-03T09:46:40.000500Z"),  # just above: milliseconds
            (1e15, None),  # year > 9999 even as milliseconds
            (True, None),
        ],
    )
    def test_created_at(self, raw, expected):
        assert native(created_at=raw).created_at == expected

    def test_string_clipped_to_64(self):
        assert native(created_at="2" * 70).created_at == "2" * 64


class TestIds:
    def test_double_dot_rejected(self):
        assert is_generation_id("a.b") is True
        assert is_generation_id("a..b") is False

    @pytest.mark.parametrize("good", [0, 7, 401, 10**40 - 1])
    def test_integer_ids_accepted(self, good):
        assert parse_generation({"id": good, "state": "queued"}).id == str(good)

    @pytest.mark.parametrize("bad", [-1, 10**40, True])
    def test_integer_ids_out_of_range(self, bad):
        with pytest.raises(LumaResponseShapeError, match="generation object has no usable id"):
            parse_generation({"id": bad})

    def test_message_names_type_of_non_string(self):
        with pytest.raises(LumaResponseShapeError) as info:
            parse_generation({"id": ["x"]})
        assert str(info.value) == "generation object has no usable id: list"

    def test_message_shows_bad_string(self):
        with pytest.raises(LumaResponseShapeError) as info:
            parse_generation({"id": "a/b"})
        assert str(info.value) == "generation object has no usable id: 'a/b'"

    def test_message_bound(self):
        exact = "/" + "a" * 77  # repr is 80 characters: shown whole
        with pytest.raises(LumaResponseShapeError) as info:
            parse_generation({"id": exact})
        assert str(info.value) == f"generation object has no usable id: {exact!r}"
        longer = "/" + "a" * 78  # repr is 81 characters: clipped to 80
        with pytest.raises(LumaResponseShapeError) as info:
            parse_generation({"id": longer})
        assert str(info.value) == f"generation object has no usable id: {repr(longer)[:80]}..."


class TestShapes:
    def test_scalar_payload_message(self):
        with pytest.raises(LumaResponseShapeError) as info:
            parse_generations("oops")
        assert str(info.value) == "expected a JSON object or array, got str"

    def test_non_object_item_message(self):
        with pytest.raises(LumaResponseShapeError) as info:
            parse_generations([3])
        assert str(info.value) == "expected a generation object, got int"

    def test_task_id_alone_is_not_a_task_row(self):
        gen = parse_generation({"id": "native-id", "task_id": "other", "state": "queued"})
        assert gen.id == "native-id"
        assert gen.state is LumaState.QUEUED

    def test_status_alone_is_not_a_task_row(self):
        gen = parse_generation({"id": "native-id", "status": "failed", "state": "queued"})
        assert gen.id == "native-id"
        assert gen.state is LumaState.QUEUED


class TestTaskRow:
    def test_row_id_wins_over_inner_id(self):
        gen = parse_generation(
            {"task_id": "row-id", "status": "IN_PROGRESS", "data": {"id": "inner-id", "state": "dreaming"}}
        )
        assert gen.id == "row-id"
        assert gen.state is LumaState.RUNNING

    def test_inner_without_id_uses_row_id(self):
        gen = parse_generation(
            {"task_id": "row-id", "data": {"state": "completed", "video": {"url": "https://v"}}}
        )
        assert gen.id == "row-id"
        assert gen.video_url == "https://v"

    def test_bad_row_id_message(self):
        with pytest.raises(LumaResponseShapeError) as info:
            parse_generation({"task_id": "a/b", "status": "queued"})
        assert str(info.value) == "task row has no usable id: 'a/b'"

    def test_created_at_fallbacks(self):
        row = {"task_id": "t1", "status": "queued", "submit_time": 1700000000, "created_at": 1600000000}
        assert parse_generation(row).created_at == "2023-11-14T22:13:20Z"
        del row["submit_time"]
        assert parse_generation(row).created_at == "2020-09-13T12:26:40Z"
        row["data"] = {"created_at": "2024-01-01T00:00:00Z"}
        assert parse_generation(row).created_at == "2024-01-01T00:00:00Z"

    def test_failure_reason_fallback(self):
        row = {"task_id": "t1", "status": "failure", "fail_reason": "row reason"}
        assert parse_generation(row).failure_reason == "row reason"
        row["data"] = {"failure_reason": "inner reason"}
        assert parse_generation(row).failure_reason == "inner reason"


class TestKling:
    def test_fields(self):
        gen = parse_generation(
            {"code": 0, "data": {"task_id": "k1", "task_status": 5, "fail_reason": "nope"}}
        )
        assert gen.id == "k1"
        assert gen.raw_state is None
        assert gen.state is LumaState.UNKNOWN
        assert gen.failure_reason == "nope"

    def test_status_msg_wins(self):
        gen = parse_generation(
            {"data": {"task_id": "k1", "task_status": "failed", "task_status_msg": "msg", "fail_reason": "r"}}
        )
        assert gen.failure_reason == "msg"
        assert gen.raw_state == "failed"

    def test_bad_id_message(self):
        with pytest.raises(LumaResponseShapeError) as info:
            parse_generation({"data": {"task_id": "a/b"}})
        assert str(info.value) == "wrapper data has no usable id: 'a/b'"


class TestFromDict:
    def test_bad_id_message(self):
        with pytest.raises(LumaResponseShapeError) as info:
            LumaGeneration.from_dict({"id": "a/b", "state": "queued"})
        assert str(info.value) == "not a generation id: 'a/b'"

    @pytest.mark.parametrize("state", ["bogus", None])
    def test_unknown_state(self, state):
        gen = LumaGeneration.from_dict({"id": "g1", "state": state})
        assert gen.state is LumaState.UNKNOWN

    def test_missing_state(self):
        assert LumaGeneration.from_dict({"id": "g1"}).state is LumaState.UNKNOWN

    def test_round_trip(self):
        gen = native(video={"url": "https://cdn/v.mp4"}, duration=None)
        assert LumaGeneration.from_dict(gen.to_dict()) == gen


class TestClippedLabels:
    def test_generation_type_clipped_to_40(self):
        assert native(generation_type="v" * 41).generation_type == "v" * 40
        assert native(generation_type="v" * 40).generation_type == "v" * 40

    def test_model_clipped_to_80(self):
        assert native(model="m" * 81).model == "m" * 80
        assert native(model="m" * 80).model == "m" * 80
        assert native(model="  ").model is None
