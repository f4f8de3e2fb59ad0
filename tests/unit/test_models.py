"""Parsing of every response shape in ``luma-api.md`` into ``LumaGeneration`` (pure functions)."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import ClassVar

import pytest

from luma_provider.models import (
    LumaGeneration,
    LumaResponseShapeError,
    LumaState,
    normalize_state,
    parse_generation,
    parse_generations,
)

APIFOX_VIDEO = (
    "https://storage.cdn-luma.com/dream-machine/b0d67582-c6f0-4973-a89c-3fea9d46d5e9/"
    "35049450-c008-4607-b1d0-0b025599f15d/video0b6619468da8e409da860706bbf26bbad.mp4"
)
APIFOX_THUMB = "https://imagedelivery.net/1KomXrSWiTojGGip43n0SQ/e4268de5-4a74-45ff-67b8-dc46df12de00/public"
APIFOX_LAST = (
    "https://storage.cdn-luma.com/dream-machine/b0d67582-c6f0-4973-a89c-3fea9d46d5e9/"
    "606108d9-9daf-4265-84fb-595f18240ac5/video_0_last_frame.jpg"
)
OLD_BASE = "https://storage.cdn-luma.com/lit_lite_inference_v1.6-xl/88f92809-9f0b-4a53-80c0-3b77403c9d30/"
OLD_DOWNLOAD = OLD_BASE + "825f16cb-2459-4a0a-974a-52ecf49bfa35_video0e8a3e398836447a1a33bd589ff5d56dd.mp4"
OLD_THUMB = OLD_BASE + "a9b314cb-78d2-4004-939f-effae13fc9e6_video_0_thumb.jpg"
OLD_LAST = OLD_BASE + "3cd218c2-f53a-4334-bb66-d29f2ed6be32_video_0_last_frame.jpg"

_PENDING = dict(
    state=LumaState.QUEUED,
    raw_state="pending",
    video_url=None,
    thumbnail_url=None,
    last_frame_url=None,
    width=None,
    height=None,
    duration=None,
    failure_reason=None,
)

# fixture name -> every normalized field we expect (``raw`` aside).
EXPECTED: dict[str, dict] = {
    "submit_v98store": dict(
        _PENDING,
        id="4665a07c-7641-4809-a133-10786201bb56",
        prompt=None,  # "" prompt normalizes to None
        created_at="2024-12-22T13:38:40.139409Z",
    ),
    "submit_gpt_best": dict(
        _PENDING,
        id="9d4b7516-77e5-481a-b015-48313946f33b",
        prompt="cat dance",
        created_at="2024-07-01T07:35:13.498660Z",
    ),
    "submit_apiai_201": dict(
        _PENDING,
        id="fc7fb008-7a5e-40ad-a7ff-dbb63db61be8",
        prompt="cat dance",
        created_at="2024-07-22T12:47:28.553735Z",
    ),
    "submit_luma_api_readme": dict(
        _PENDING,
        id="a4a8f1ff-e59b-4969-abcb-98b3e16f003e",
        prompt="Increase dynamic",
        created_at="2024-06-18T14:47:43.318498Z",
    ),
    "submit_array": dict(
        _PENDING,
        id="a4a8f1ff-e59b-4969-abcb-98b3e16f003e",
        prompt="Increase dynamic",
        created_at="2024-06-18T14:47:43.318498Z",
    ),
    "submit_crazyrouter": dict(
        _PENDING,
        id="luma_gen_abc123",
        raw_state="queued",
        prompt=None,
        created_at="2024-03-01T12:00:00Z",
    ),
    "submit_yescale_2025": dict(
        _PENDING,
        id="eec2fa50-22dd-4ce9-8f8b-f61e84567f85",
        prompt=None,
        created_at="2025-05-23T07:05:23.342674Z",
    ),
    "submit_kling_wrapper": dict(
        _PENDING,
        id="867283741759111202",
        raw_state="submitted",
        prompt=None,
        created_at="2026-03-29T17:24:36.166000Z",  # 1774805076166 ms
    ),
    "extend_v98store": dict(
        _PENDING,
        id="749d328e-4fd0-43a8-8c89-32394d60da69",
        prompt=None,
        created_at="2024-12-22T14:48:39.947851Z",
    ),
    "get_completed_apifox": dict(
        id="4665a07c-7641-4809-a133-10786201bb56",
        state=LumaState.COMPLETED,
        raw_state="completed",
        video_url=APIFOX_VIDEO,
        thumbnail_url=APIFOX_THUMB,
        last_frame_url=APIFOX_LAST,
        width=1360,
        height=752,
        duration=5.041667,
        prompt="cat dance",  # from request.prompt
        created_at="2024-12-22T13:38:40.139Z",
        failure_reason=None,
    ),
    "tasks_array": dict(
        id="4665a07c-7641-4809-a133-10786201bb56",
        state=LumaState.COMPLETED,
        raw_state="completed",
        video_url=APIFOX_VIDEO,
        thumbnail_url=APIFOX_THUMB,
        last_frame_url=APIFOX_LAST,
        width=1360,
        height=752,
        duration=5.041667,
        prompt="cat dance",
        created_at="2024-12-22T13:38:40.139Z",
        failure_reason=None,
    ),
    "get_completed_2024": dict(
        id="77aae5b1-7e0e-4038-9e8d-d59a0dd79b5e",
        state=LumaState.COMPLETED,
        raw_state="completed",
        video_url=OLD_DOWNLOAD,  # download_url beats the watermarked video.url
        thumbnail_url=OLD_THUMB,
        last_frame_url=OLD_LAST,
        width=656,
        height=1552,
        duration=None,
        prompt="In a modern airport, travelers rush to check in.",
        created_at="2024-11-01T10:20:34.197000Z",
        failure_reason=None,
    ),
    "tasks_newapi_wrapper": dict(
        id="9d4b7516-77e5-481a-b015-48313946f33b",
        state=LumaState.RUNNING,
        raw_state="processing",
        video_url=None,
        thumbnail_url=None,
        last_frame_url=None,
        width=None,
        height=None,
        duration=None,
        prompt="cat dance",
        created_at="2024-07-01T07:35:13.498000Z",
        failure_reason=None,
    ),
    "official_queued": dict(
        _PENDING,
        id="7ca76429-99d1-46ab-bb2e-84baa4acdb04",
        raw_state="queued",
        prompt="A serene lake surrounded by mountains at sunset",
        created_at="2024-11-27T13:50:56.313494Z",
    ),
    "official_completed": dict(
        id="123e4567-e89b-12d3-a456-426614174000",
        state=LumaState.COMPLETED,
        raw_state="completed",
        video_url="https://example.com/video.mp4",
        thumbnail_url=None,
        last_frame_url=None,
        width=None,
        height=None,
        duration=None,
        prompt="A serene lake surrounded by mountains at sunset",
        created_at="2023-06-01T12:00:00Z",
        failure_reason=None,
    ),
    "official_completed_current": dict(
        id="123e4567-e89b-12d3-a456-426614174000",
        state=LumaState.COMPLETED,
        raw_state="completed",
        video_url="https://example.com/video.mp4",
        thumbnail_url="https://example.com/thumb.jpg",
        last_frame_url=None,
        width=None,
        height=None,
        duration=5.0,  # request.duration "5s"
        prompt="A tiger walking in snow",
        created_at="2025-06-01T12:00:00.000000Z",
        failure_reason=None,
        generation_type="video",
        model="ray-2",
    ),
}
GENERATION_FIXTURES = sorted(EXPECTED)
ERROR_FIXTURES = [
    "error_401_invalid_token",
    "error_403_quota",
    "error_429_saturated",
    "error_429_upstream",
    "error_503_no_channel",
    "error_task_not_exist",
    "error_luma_api_detail",
    "error_fastapi_not_authenticated",
    "error_422_validation",
    "download_video_url",
]


class TestParseGeneration:
    @pytest.mark.parametrize("name", GENERATION_FIXTURES)
    def test_every_fixture_parses_to_expected_fields(self, name, load_fixture):
        payload = load_fixture(name)
        gen = parse_generation(payload)
        actual = {k: v for k, v in gen.to_dict().items() if k != "playable_url"}
        expected = {k: (v.value if isinstance(v, LumaState) else v) for k, v in EXPECTED[name].items()}
        expected.setdefault("estimate_wait_seconds", None)
        # Official-only fields: None for gateway shapes unless a fixture's EXPECTED names them.
        for field_name in ("generation_type", "model", "image_url", "progress_video_url"):
            expected.setdefault(field_name, None)
        assert actual == expected
        assert gen.state is EXPECTED[name]["state"]

    @pytest.mark.parametrize("name", GENERATION_FIXTURES)
    def test_parse_generations_gives_one_item_for_every_fixture(self, name, load_fixture):
        gens = parse_generations(load_fixture(name))
        assert [g.id for g in gens] == [EXPECTED[name]["id"]]

    def test_array_form_equals_object_form(self, load_fixture):
        assert parse_generation(load_fixture("submit_array")) == parse_generation(
            load_fixture("submit_luma_api_readme")
        )

    def test_completed_apifox_is_terminal_and_submit_is_not(self, load_fixture):
        assert parse_generation(load_fixture("get_completed_apifox")).is_terminal is True
        assert parse_generation(load_fixture("submit_v98store")).is_terminal is False

    def test_raw_keeps_native_payload(self, load_fixture):
        payload = load_fixture("submit_yescale_2025")
        gen = parse_generation(payload)
        assert gen.raw == payload
        assert gen.raw["message"] == "YEScale - Luma Video Generation - Submit"

    def test_kling_wrapper_raw_is_whole_envelope(self, load_fixture):
        payload = load_fixture("submit_kling_wrapper")
        assert parse_generation(payload).raw["request_id"] == "c0656403-1e6e-4b7e-b8f8-2cdd2595f2b9"

    def test_kling_failed_reason(self):
        payload = {
            "code": 0,
            "message": "SUCCEED",
            "request_id": "r",
            "data": {
                "task_id": "k1",
                "task_status": "failed",
                "task_status_msg": "risk control",
                "created_at": 1774805076166,
                "updated_at": 1774805076166,
            },
        }
        gen = parse_generation(payload)
        assert (gen.id, gen.state, gen.raw_state, gen.failure_reason) == (
            "k1",
            LumaState.FAILED,
            "failed",
            "risk control",
        )

    def test_native_failed_with_failure_reason(self):
        gen = parse_generation(
            {"id": "g1", "state": "failed", "failure_reason": "Advanced prompt moderation failed"}
        )
        assert gen.state is LumaState.FAILED
        assert gen.failure_reason == "Advanced prompt moderation failed"
        assert gen.is_terminal is True

    def test_fail_reason_alias(self):
        gen = parse_generation(
            {"id": "g1", "state": "failed", "failure_reason": None, "fail_reason": "Job error"}
        )
        assert gen.failure_reason == "Job error"

    def test_estimate_wait_seconds_number(self):
        assert (
            parse_generation(
                {"id": "g1", "state": "pending", "estimate_wait_seconds": 42}
            ).estimate_wait_seconds
            == 42.0
        )

    def test_integer_id_becomes_string(self):
        assert parse_generation({"id": 123, "state": "pending"}).id == "123"


class TestVideoUrlFallback:
    BASE: ClassVar[dict[str, str]] = {"id": "g1", "state": "completed"}

    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            pytest.param(
                {
                    "video": {"url": "U", "download_url": "D"},
                    "video_raw": {"url": "R"},
                    "artifact": {"video": {"url": "A"}},
                    "assets": {"video": "S"},
                },
                "D",
                id="download_url-first",
            ),
            pytest.param(
                {"video": {"url": "U", "download_url": ""}, "video_raw": {"url": "R"}},
                "U",
                id="empty-download_url-skipped",
            ),
            pytest.param(
                {"video": {"url": "U", "download_url": "   "}}, "U", id="blank-download_url-skipped"
            ),
            pytest.param({"video": {"url": "U", "download_url": None}}, "U", id="null-download_url"),
            pytest.param(
                {"video": None, "video_raw": {"url": "R"}, "artifact": {"video": {"url": "A"}}},
                "R",
                id="video_raw",
            ),
            pytest.param(
                {
                    "video": {"url": ""},
                    "video_raw": None,
                    "artifact": {"video": {"url": "A"}},
                    "assets": {"video": "S"},
                },
                "A",
                id="artifact.video",
            ),
            pytest.param(
                {"video": None, "artifact": {"video": None}, "assets": {"video": "S"}}, "S", id="assets.video"
            ),
            pytest.param(
                {"video": None, "video_raw": None, "artifact": {}, "assets": None}, None, id="nothing"
            ),
            pytest.param({"video": "not-an-object", "assets": {"video": "S"}}, "S", id="video-not-a-dict"),
        ],
    )
    def test_chain(self, fields, expected):
        assert parse_generation({**self.BASE, **fields}).video_url == expected

    def test_empty_download_url_on_completed_fixture(self, load_fixture):
        payload = load_fixture("get_completed_2024")
        payload["video"]["download_url"] = ""
        assert parse_generation(payload).video_url == OLD_BASE + (
            "d4c505f0-c8c8-417d-910e-a015ed54faa1_watermarked_video0e8a3e398836447a1a33bd589ff5d56dd.mp4"
        )

    def test_thumbnail_string_in_2024_video_object(self):
        gen = parse_generation({**self.BASE, "video": {"url": "U", "thumbnail": "T"}})
        assert gen.thumbnail_url == "T"

    def test_thumbnail_and_last_frame_from_artifact(self):
        gen = parse_generation(
            {
                **self.BASE,
                "artifact": {
                    "thumbnail": {"url": "T"},
                    "last_frame": {"url": "L"},
                    "video_raw": {"url": "R", "width": 10, "height": 20, "duration": 9.5},
                },
            }
        )
        assert (gen.thumbnail_url, gen.last_frame_url, gen.width, gen.height, gen.duration) == (
            "T",
            "L",
            10,
            20,
            9.5,
        )
        assert gen.video_url is None  # artifact.video_raw is not in the video URL chain


class TestNormalizeState:
    @pytest.mark.parametrize(
        ("word", "state"),
        [
            ("pending", LumaState.QUEUED),
            ("queued", LumaState.QUEUED),
            ("NOT_START", LumaState.QUEUED),
            ("SUBMITTED", LumaState.QUEUED),
            ("QUEUED", LumaState.QUEUED),
            ("submitted", LumaState.QUEUED),
            ("processing", LumaState.RUNNING),
            ("dreaming", LumaState.RUNNING),
            ("IN_PROGRESS", LumaState.RUNNING),
            ("completed", LumaState.COMPLETED),
            ("SUCCESS", LumaState.COMPLETED),
            ("succeed", LumaState.COMPLETED),
            ("failed", LumaState.FAILED),
            ("FAILURE", LumaState.FAILED),
            # case and whitespace variants
            ("Pending", LumaState.QUEUED),
            ("PROCESSING", LumaState.RUNNING),
            ("Completed", LumaState.COMPLETED),
            (" failed ", LumaState.FAILED),
            ("in_progress", LumaState.RUNNING),
            ("Dreaming", LumaState.RUNNING),
            ("Success", LumaState.COMPLETED),
            ("Not_Start", LumaState.QUEUED),
        ],
    )
    def test_known_words(self, word, state):
        assert normalize_state(word) is state

    @pytest.mark.parametrize("word", ["UNKNOWN", "unknown", "cancelled", "", "   ", None, 3, ["pending"]])
    def test_unknown_words_are_unknown_and_not_terminal(self, word):
        state = normalize_state(word)
        assert state is LumaState.UNKNOWN
        assert state.is_terminal is False

    @pytest.mark.parametrize(
        ("state", "terminal"),
        [
            (LumaState.QUEUED, False),
            (LumaState.RUNNING, False),
            (LumaState.COMPLETED, True),
            (LumaState.FAILED, True),
            (LumaState.UNKNOWN, False),
        ],
    )
    def test_is_terminal(self, state, terminal):
        assert state.is_terminal is terminal

    def test_unknown_state_in_payload_keeps_raw_state(self):
        gen = parse_generation({"id": "g1", "state": "paused"})
        assert (gen.state, gen.raw_state, gen.is_terminal) == (LumaState.UNKNOWN, "paused", False)

    def test_non_string_state_has_no_raw_state(self):
        gen = parse_generation({"id": "g1", "state": 7})
        assert (gen.state, gen.raw_state) == (LumaState.UNKNOWN, None)


def _wrapper(row: dict) -> dict:
    return {"code": "success", "message": "", "data": [row]}


class TestNewApiTaskRow:
    @pytest.mark.parametrize(
        ("row_status", "inner_state", "state", "raw_state"),
        [
            ("FAILURE", "processing", LumaState.FAILED, "FAILURE"),
            ("FAILURE", "completed", LumaState.FAILED, "FAILURE"),  # failure wins even over completed
            ("IN_PROGRESS", "failed", LumaState.FAILED, "failed"),
            ("SUCCESS", "failed", LumaState.FAILED, "failed"),
            ("IN_PROGRESS", "completed", LumaState.COMPLETED, "completed"),  # more advanced wins
            ("SUCCESS", "processing", LumaState.COMPLETED, "SUCCESS"),
            ("QUEUED", "processing", LumaState.RUNNING, "processing"),
            ("IN_PROGRESS", "pending", LumaState.RUNNING, "IN_PROGRESS"),
            ("UNKNOWN", "pending", LumaState.QUEUED, "pending"),
            ("NOT_START", "gibberish", LumaState.QUEUED, "NOT_START"),
            ("IN_PROGRESS", "processing", LumaState.RUNNING, "processing"),  # agreement: inner word kept
        ],
    )
    def test_disagreement(self, load_fixture, row_status, inner_state, state, raw_state):
        payload = load_fixture("tasks_newapi_wrapper")
        payload["data"][0]["status"] = row_status
        payload["data"][0]["data"]["state"] = inner_state
        gen = parse_generation(payload)
        assert (gen.state, gen.raw_state) == (state, raw_state)

    def test_row_fail_reason_used_when_inner_has_none(self, load_fixture):
        payload = load_fixture("tasks_newapi_wrapper")
        payload["data"][0].update(status="FAILURE", fail_reason="Contains blacklisted words")
        gen = parse_generation(payload)
        assert (gen.state, gen.failure_reason) == (LumaState.FAILED, "Contains blacklisted words")

    def test_inner_failure_reason_preferred(self, load_fixture):
        payload = load_fixture("tasks_newapi_wrapper")
        payload["data"][0].update(status="FAILURE", fail_reason="row reason")
        payload["data"][0]["data"].update(state="failed", failure_reason="inner reason")
        assert parse_generation(payload).failure_reason == "inner reason"

    def test_empty_fail_reason_is_none(self, load_fixture):
        assert parse_generation(load_fixture("tasks_newapi_wrapper")).failure_reason is None

    def test_row_without_inner_data_uses_status_and_submit_time(self):
        gen = parse_generation(
            _wrapper(
                {
                    "task_id": "t1",
                    "status": "SUCCESS",
                    "fail_reason": "",
                    "submit_time": 1719819313,
                    "data": None,
                }
            )
        )
        assert (gen.id, gen.state, gen.raw_state, gen.created_at) == (
            "t1",
            LumaState.COMPLETED,
            "SUCCESS",
            "2024-07-01T07:35:13Z",
        )

    def test_row_raw_is_the_row(self, load_fixture):
        payload = load_fixture("tasks_newapi_wrapper")
        assert parse_generation(payload).raw["platform"] == "luma_free"

    def test_several_rows_keep_order(self, load_fixture):
        payload = load_fixture("tasks_newapi_wrapper")
        second = copy.deepcopy(payload["data"][0])
        second["task_id"] = second["data"]["id"] = "second"
        payload["data"].insert(0, second)
        assert [g.id for g in parse_generations(payload)] == [
            "second",
            "9d4b7516-77e5-481a-b015-48313946f33b",
        ]

    def test_empty_wrapper_is_empty_list(self):
        assert parse_generations({"code": "success", "message": "", "data": []}) == []


class TestTimestamps:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (1719819313, "2024-07-01T07:35:13Z"),  # Unix seconds
            (1719819313.5, "2024-07-01T07:35:13.500000Z"),
            (1774805076166, "2026-03-29T17:24:36.166000Z"),  # milliseconds
            ("2024-12-22T13:38:40.139Z", "2024-12-22T13:38:40.139Z"),  # ISO passes through
            (0, None),  # "not yet" in new-api rows
            ("", None),
            (None, None),
        ],
    )
    def test_created_at(self, value, expected):
        assert parse_generation({"id": "g1", "state": "pending", "created_at": value}).created_at == expected

    def test_kling_ms(self):
        gen = parse_generation(
            {"code": 0, "data": {"task_id": "k", "task_status": "submitted", "created_at": 1719819313000}}
        )
        assert gen.created_at == "2024-07-01T07:35:13Z"


class TestSerialization:
    @pytest.mark.parametrize("name", GENERATION_FIXTURES)
    def test_round_trip(self, name, load_fixture):
        gen = parse_generation(load_fixture(name))
        data = gen.to_dict()
        assert data["state"] == EXPECTED[name]["state"].value
        text = json.dumps(data)
        back = LumaGeneration.from_dict(json.loads(text))
        assert back == gen
        assert back.state is gen.state
        assert "raw" not in data  # XCom holds the normalized fields, never the (maybe huge) reply

    def test_playable_url_is_the_inline_video_not_the_download(self, load_fixture):
        gen = parse_generation(load_fixture("get_completed_2024"))
        assert gen.playable_url == gen.raw["video"]["url"]
        assert gen.video_url == gen.raw["video"]["download_url"]
        assert gen.playable_url != gen.video_url

    def test_from_dict_ignores_unknown_keys(self):
        gen = LumaGeneration.from_dict({"id": "g1", "state": "running", "future_field": 1})
        assert (gen.id, gen.state) == ("g1", LumaState.RUNNING)

    def test_from_dict_missing_state_is_unknown(self):
        assert LumaGeneration.from_dict({"id": "g1"}).state is LumaState.UNKNOWN

    def test_raw_not_compared(self):
        assert LumaGeneration("g1", LumaState.QUEUED, raw={"a": 1}) == LumaGeneration("g1", LumaState.QUEUED)

    @pytest.mark.parametrize(
        ("attr", "value"), [("id", "other"), ("state", LumaState.FAILED), ("video_url", "x")]
    )
    def test_frozen(self, load_fixture, attr, value):
        gen = parse_generation(load_fixture("get_completed_apifox"))
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(gen, attr, value)
        assert gen.id == "4665a07c-7641-4809-a133-10786201bb56"


class TestShapeErrors:
    @pytest.mark.parametrize(
        "payload",
        [
            pytest.param("4665a07c-7641-4809-a133-10786201bb56", id="string"),
            pytest.param(42, id="int"),
            pytest.param(None, id="none"),
            pytest.param({"state": "pending"}, id="no-id"),
            pytest.param({"id": "", "state": "pending"}, id="empty-id"),
            pytest.param({"id": None, "state": "pending"}, id="null-id"),
            pytest.param(["just-a-string"], id="array-of-string"),
            pytest.param([], id="empty-array"),
        ],
    )
    def test_parse_generation_raises(self, payload):
        with pytest.raises(LumaResponseShapeError):
            parse_generation(payload)

    def test_shape_error_is_value_error(self):
        with pytest.raises(ValueError, match="no usable id"):
            parse_generation({"state": "pending"})

    def test_two_items_is_not_one_generation(self, load_fixture):
        payload = load_fixture("tasks_array") * 2
        with pytest.raises(LumaResponseShapeError, match="expected one generation, got 2"):
            parse_generation(payload)
        assert len(parse_generations(payload)) == 2

    @pytest.mark.parametrize("name", ERROR_FIXTURES)
    def test_error_bodies_are_not_generations(self, name, load_fixture):
        with pytest.raises(LumaResponseShapeError):
            parse_generations(load_fixture(name))

    def test_kling_wrapper_null_task_id(self):
        with pytest.raises(LumaResponseShapeError):
            parse_generation(
                {"code": 0, "message": "SUCCEED", "data": {"task_id": None, "task_status": "submitted"}}
            )

    def test_task_row_null_task_id(self):
        with pytest.raises(LumaResponseShapeError):
            parse_generations(_wrapper({"task_id": None, "status": "SUCCESS", "data": None}))
