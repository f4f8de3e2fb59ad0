"""Bodies of the official modify / reframe creates, pinned exactly, and checked against the SDK.

``POST /generations/video/modify``, ``POST /generations/video/reframe`` and
``POST /generations/image/reframe`` as ``lumaai`` 1.21.0 defines them (``VideoModifyParams``,
``VideoReframeParams``, ``ImageReframeParams``).
"""

from __future__ import annotations

import typing
from typing import Any

import pytest
import typing_extensions
from lumaai.types.generations import image_reframe_params, video_modify_params, video_reframe_params

from luma_provider import api
from luma_provider.exceptions import LumaValidationError
from luma_provider.models import parse_generation
from luma_provider.sandbox import official as sandbox_official

SOURCE = "https://cdn.example/source.mp4"
IMAGE = "https://cdn.example/source.jpg"
FRAME = "https://cdn.example/first.jpg"
HOOK = "https://hooks.example/luma"
RATIOS = "1:1, 4:3, 3:4, 16:9, 9:16, 21:9, 9:21"
GEOMETRY = "grid_position_x, grid_position_y, resized_width, resized_height, x_start, x_end, y_start, y_end"


def refused(call: Any, *args: Any, **kwargs: Any) -> LumaValidationError:
    with pytest.raises(LumaValidationError) as info:
        call(*args, **kwargs)
    return info.value


def required_keys(params: Any) -> set[str]:
    """The ``Required[...]`` fields (the SDK's modules postpone annotations, so the TypedDict's
    own ``__required_keys__`` is empty)."""
    hints = typing.get_type_hints(params, include_extras=True)
    return {name for name, hint in hints.items() if typing.get_origin(hint) is typing_extensions.Required}


def literal_values(params: Any, name: str) -> tuple[str, ...]:
    """The values of a ``Required[Literal[...]]`` field of an SDK params TypedDict."""
    hint = typing.get_type_hints(params, include_extras=True)[name]
    while typing.get_origin(hint) is not typing.Literal:
        (hint,) = typing.get_args(hint)[:1]
    return typing.get_args(hint)


class TestAgainstTheSdk:
    def test_modes_are_the_sdks(self):
        sdk = literal_values(video_modify_params.VideoModifyParams, "mode")
        assert api.MODIFY_MODES == sdk == sandbox_official.MODIFY_MODES
        assert len(sdk) == 9

    @pytest.mark.parametrize(
        "params", [video_reframe_params.VideoReframeParams, image_reframe_params.ImageReframeParams]
    )
    def test_geometry_fields_are_the_sdks_integer_fields(self, params):
        hints = typing.get_type_hints(params)
        ints = {name for name, hint in hints.items() if hint is int}
        assert set(api.REFRAME_GEOMETRY) == ints == set(sandbox_official.REFRAME_GEOMETRY)

    @pytest.mark.parametrize(
        ("params", "models", "required"),
        [
            (
                video_modify_params.VideoModifyParams,
                tuple(api.OFFICIAL_MODELS),
                {"generation_type", "media", "mode", "model"},
            ),
            (
                video_reframe_params.VideoReframeParams,
                tuple(api.OFFICIAL_MODELS),
                {"generation_type", "media", "aspect_ratio", "model"},
            ),
            (
                image_reframe_params.ImageReframeParams,
                api.IMAGE_MODELS,
                {"generation_type", "media", "aspect_ratio", "model"},
            ),
        ],
    )
    def test_models_and_required_fields(self, params, models, required):
        assert literal_values(params, "model") == models
        assert required_keys(params) == required

    def test_reframe_ratios_are_the_sdks(self):
        for params in (video_reframe_params.VideoReframeParams, image_reframe_params.ImageReframeParams):
            assert set(literal_values(params, "aspect_ratio")) == set(api.OFFICIAL_ASPECT_RATIOS)
            assert "aspect_ratio" in required_keys(params)

    def test_every_body_key_is_a_field_of_the_sdk_params(self):
        bodies = [
            (
                video_modify_params.VideoModifyParams,
                api.modify_video_body(SOURCE, "p", mode="adhere_1", first_frame_url=FRAME, callback_url=HOOK),
            ),
            (
                video_reframe_params.VideoReframeParams,
                api.reframe_video_body(
                    SOURCE,
                    "9:16",
                    prompt="p",
                    first_frame_url=FRAME,
                    callback_url=HOOK,
                    **{name: 1 for name in ("grid_position_x", "grid_position_y")},
                    resized_width=10,
                    resized_height=10,
                    x_start=0,
                    x_end=5,
                    y_start=0,
                    y_end=5,
                ),
            ),
            (
                image_reframe_params.ImageReframeParams,
                api.reframe_image_body(IMAGE, "1:1", prompt="p", format="png", callback_url=HOOK, x_start=1),
            ),
        ]
        for params, body in bodies:
            hints = typing.get_type_hints(params)
            assert set(body) <= set(hints), set(body) - set(hints)
            assert required_keys(params) <= set(body)
            assert literal_values(params, "generation_type") == (body["generation_type"],)


# ----------------------------------------------------------------------------- modify
class TestModifyVideoBody:
    def test_minimal_body(self):
        body = api.modify_video_body(SOURCE)
        assert body == {
            "generation_type": "modify_video",
            "media": {"url": SOURCE},
            "mode": "flex_1",
            "model": "ray-2",
        }

    def test_every_option(self):
        body = api.modify_video_body(
            f"  {SOURCE} ",
            "  neon city at night ",
            mode="reimagine_3",
            model="ray-flash-2",
            first_frame_url=FRAME,
            callback_url=HOOK,
        )
        assert body == {
            "generation_type": "modify_video",
            "media": {"url": SOURCE},
            "mode": "reimagine_3",
            "model": "ray-flash-2",
            "prompt": "neon city at night",
            "first_frame": {"url": FRAME},
            "callback_url": HOOK,
        }

    @pytest.mark.parametrize("mode", api.MODIFY_MODES)
    def test_every_mode(self, mode):
        assert api.modify_video_body(SOURCE, mode=mode)["mode"] == mode

    def test_empty_options_are_left_out(self):
        body = api.modify_video_body(SOURCE, "", mode="", model="", first_frame_url="", callback_url="")
        assert body == api.modify_video_body(SOURCE)

    @pytest.mark.parametrize(
        ("args", "options", "field", "message"),
        [
            (
                (SOURCE,),
                {"mode": "adhere_4"},
                "mode",
                "'adhere_4' is not one of adhere_1, adhere_2, adhere_3, flex_1, flex_2, flex_3, "
                "reimagine_1, reimagine_2, reimagine_3",
            ),
            ((SOURCE,), {"model": "photon-1"}, "model", "'photon-1' is not one of ray-2, ray-flash-2"),
            ((SOURCE,), {"model": "ray-1-6"}, "model", "'ray-1-6' is not one of ray-2, ray-flash-2"),
            ((None,), {}, "media_url", "is required: the http(s) URL of the source media"),
            (("",), {}, "media_url", "is required: the http(s) URL of the source media"),
            (
                ("ftp://h.example/a.mp4",),
                {},
                "media_url",
                "must be a plain http(s) URL, got 'ftp://h.example/a.mp4'",
            ),
            (("data:video/mp4;base64,AAAA",), {}, "media_url", "must be a plain http(s) URL"),
            ((SOURCE, "   "), {}, "prompt", "must be a non-empty string"),
            ((SOURCE,), {"first_frame_url": "file:///etc/passwd"}, "first_frame_url", "plain http(s) URL"),
            ((SOURCE,), {"callback_url": "ftp://h.example/x"}, "callback_url", "plain http(s) URL"),
            (
                (SOURCE,),
                {"seed": 1, "aspect_ratio": "1:1"},
                "aspect_ratio",
                "is not a modify option; allowed: prompt, mode, model, first_frame_url, callback_url",
            ),
        ],
    )
    def test_refusals_name_the_field(self, args, options, field, message):
        err = refused(api.modify_video_body, *args, **options)
        assert err.field == field
        assert str(err).startswith(f"Invalid {field!r}: ")
        assert message in str(err)


# ----------------------------------------------------------------------------- reframe
class TestReframeVideoBody:
    def test_minimal_body(self):
        assert api.reframe_video_body(SOURCE, "9:16") == {
            "generation_type": "reframe_video",
            "media": {"url": SOURCE},
            "aspect_ratio": "9:16",
            "model": "ray-2",
        }

    def test_every_option_in_the_documented_order(self):
        body = api.reframe_video_body(
            SOURCE,
            "21:9",
            prompt="more sky",
            model="ray-flash-2",
            first_frame_url=FRAME,
            callback_url=HOOK,
            y_end="720",  # a templated value
            y_start=0,
            x_end=1280,
            x_start=0,
            resized_height=540,
            resized_width=960,
            grid_position_y=-20,
            grid_position_x=160,
        )
        assert body == {
            "generation_type": "reframe_video",
            "media": {"url": SOURCE},
            "aspect_ratio": "21:9",
            "model": "ray-flash-2",
            "grid_position_x": 160,
            "grid_position_y": -20,
            "resized_width": 960,
            "resized_height": 540,
            "x_start": 0,
            "x_end": 1280,
            "y_start": 0,
            "y_end": 720,
            "prompt": "more sky",
            "first_frame": {"url": FRAME},
            "callback_url": HOOK,
        }
        assert list(body)[4:12] == list(api.REFRAME_GEOMETRY)

    @pytest.mark.parametrize("ratio", api.OFFICIAL_ASPECT_RATIOS)
    def test_every_ratio(self, ratio):
        assert api.reframe_video_body(SOURCE, ratio)["aspect_ratio"] == ratio

    def test_empty_geometry_is_left_out(self):
        assert api.reframe_video_body(SOURCE, "1:1", x_start=None, y_end="") == api.reframe_video_body(
            SOURCE, "1:1"
        )

    @pytest.mark.parametrize(
        ("args", "options", "field", "message"),
        [
            ((SOURCE, None), {}, "aspect_ratio", f"is required; one of {RATIOS}"),
            ((SOURCE, ""), {}, "aspect_ratio", f"is required; one of {RATIOS}"),
            ((SOURCE, "2:1"), {}, "aspect_ratio", f"'2:1' is not one of {RATIOS}"),
            ((None, "1:1"), {}, "media_url", "is required"),
            ((SOURCE, "1:1"), {"model": "photon-1"}, "model", "'photon-1' is not one of ray-2, ray-flash-2"),
            (
                (SOURCE, "1:1"),
                {"x_start": True},
                "x_start",
                "whole number of pixels from 0 to 16384, got True",
            ),
            ((SOURCE, "1:1"), {"x_start": 1.5}, "x_start", "got 1.5"),
            ((SOURCE, "1:1"), {"y_start": -1}, "y_start", "from 0 to 16384, got -1"),
            ((SOURCE, "1:1"), {"resized_width": 16385}, "resized_width", "got 16385"),
            ((SOURCE, "1:1"), {"resized_width": "wide"}, "resized_width", "got 'wide'"),
            ((SOURCE, "1:1"), {"grid_position_x": -16385}, "grid_position_x", "from -16384 to 16384"),
            ((SOURCE, "1:1"), {"resized_height": 0}, "resized_height", "must be at least 1 pixel, got 0"),
            (
                (SOURCE, "1:1"),
                {"x_start": 10, "x_end": 10},
                "x_end",
                "must be greater than x_start (10), got 10",
            ),
            (
                (SOURCE, "1:1"),
                {"y_start": 10, "y_end": 5},
                "y_end",
                "must be greater than y_start (10), got 5",
            ),
            (
                (SOURCE, "1:1"),
                {"mode": "flex_1"},
                "mode",
                "is not a reframe option; allowed: prompt, model, first_frame_url, callback_url, " + GEOMETRY,
            ),
            ((SOURCE, "1:1"), {"format": "png"}, "format", "is not a reframe option"),
        ],
    )
    def test_refusals_name_the_field(self, args, options, field, message):
        err = refused(api.reframe_video_body, *args, **options)
        assert err.field == field
        assert str(err).startswith(f"Invalid {field!r}: ")
        assert message in str(err)


class TestReframeImageBody:
    def test_minimal_body_defaults_to_photon_1(self):
        assert api.reframe_image_body(IMAGE, "4:3") == {
            "generation_type": "reframe_image",
            "media": {"url": IMAGE},
            "aspect_ratio": "4:3",
            "model": "photon-1",
        }

    @pytest.mark.parametrize("fmt", ["jpg", "png"])
    def test_every_option(self, fmt):
        body = api.reframe_image_body(
            IMAGE,
            "3:4",
            prompt="a wider beach",
            model="photon-flash-1",
            format=fmt,
            callback_url=HOOK,
            x_end=9,
        )
        assert body == {
            "generation_type": "reframe_image",
            "media": {"url": IMAGE},
            "aspect_ratio": "3:4",
            "model": "photon-flash-1",
            "x_end": 9,
            "format": fmt,
            "prompt": "a wider beach",
            "callback_url": HOOK,
        }

    @pytest.mark.parametrize(
        ("options", "field", "message"),
        [
            ({"model": "ray-2"}, "model", "'ray-2' is not one of photon-1, photon-flash-1"),
            ({"format": "gif"}, "format", "'gif' is not one of jpg, png"),
            (
                {"first_frame_url": FRAME},
                "first_frame_url",
                "is not a reframe option; allowed: prompt, model, format, callback_url, " + GEOMETRY,
            ),
            ({"x_start": "-3"}, "x_start", "from 0 to 16384, got '-3'"),
        ],
    )
    def test_refusals_name_the_field(self, options, field, message):
        err = refused(api.reframe_image_body, IMAGE, "1:1", **options)
        assert err.field == field
        assert message in str(err)

    def test_aspect_ratio_is_required(self):
        err = refused(api.reframe_image_body, IMAGE, None)
        assert (err.field, str(err)) == (
            "aspect_ratio",
            f"Invalid 'aspect_ratio': is required; one of {RATIOS}",
        )


# ----------------------------------------------------------------------------- flows
@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("modify", "/generations/video/modify"),
        ("reframe_video", "/generations/video/reframe"),
        ("reframe_image", "/generations/image/reframe"),
    ],
)
def test_the_creates_are_paid_posts_never_resubmitted_blindly(name, path):
    body = api.reframe_video_body(SOURCE, "1:1")
    flow = api.official_post_flow(name, path, body)
    request = next(flow)
    assert (request.name, request.method, request.path, request.json) == (name, "POST", path, body)
    assert (request.idempotent, request.parse) == (False, parse_generation)
    with pytest.raises(StopIteration) as stop:
        flow.send(parse_generation({"id": "gen-2", "state": "queued", "generation_type": "video"}))
    assert stop.value.value.id == "gen-2"
