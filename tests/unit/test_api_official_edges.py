"""Edges of the official Dream Machine dialect, pinned exactly (bodies, requests, errors).

Sans-IO: flows are driven with ``api.drive`` and a plain function answering ``api.Request``s.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
from typing import Any

import pytest

from luma_provider import api
from luma_provider.exceptions import (
    LumaAPIError,
    LumaAuthError,
    LumaNotFoundError,
    LumaTransportError,
    LumaValidationError,
)
from luma_provider.models import LumaResponseShapeError, LumaState, parse_generation

GEN = {"id": "gen-1", "state": "queued", "generation_type": "video", "model": "ray-2"}
HOOK = "https://hooks.example/luma"


def official(prompt: Any = "a fox", **options: Any) -> api.GenerationOptions:
    return api.GenerationOptions.build(prompt, flavour="official", **options)


def refused(call: Any, *args: Any, **kwargs: Any) -> LumaValidationError:
    with pytest.raises(LumaValidationError) as info:
        call(*args, **kwargs)
    return info.value


def fields(request: api.Request) -> tuple[Any, ...]:
    return (
        request.name,
        request.method,
        request.path,
        request.json,
        request.parse,
        request.idempotent,
        request.retry,
        request.empty_ok,
    )


def run(flow: api.Flow[Any], answers: dict[str, Any]) -> tuple[list[api.Request], Any]:
    """Drive ``flow``; ``answers`` maps "METHOD path" to a payload or a LumaError to raise."""
    seen: list[api.Request] = []

    def send(request: api.Request) -> Any:
        seen.append(request)
        answer = answers[f"{request.method} {request.path}"]
        if isinstance(answer, Exception):
            raise answer
        return request.parse(answer)

    return seen, api.drive(flow, send)


def json_error(value: Any) -> str:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as err:
        return str(err)
    raise AssertionError("serializable")


# ----------------------------------------------------------------------------- image_body
class TestImageBody:
    def test_minimal_body_defaults_to_photon_1_and_strips_the_prompt(self):
        body = api.image_body("  a cat  ")
        assert body == {"prompt": "a cat", "model": "photon-1"}
        assert list(body) == ["prompt", "model"]

    def test_every_option(self):
        refs = {
            "image_ref": [{"url": "https://i.example/a.png", "weight": 0.5}],
            "style_ref": [{"url": "https://i.example/s.png", "weight": 0.8}],
            "character_ref": {"identity0": {"images": ["https://i.example/c.png"]}},
            "modify_image_ref": {"url": "https://i.example/m.png", "weight": 1.0},
        }
        body = api.image_body(
            "a cat", model="photon-flash-1", aspect_ratio="21:9", format="png", callback_url=HOOK, **refs
        )
        assert body == {
            "prompt": "a cat",
            "model": "photon-flash-1",
            "aspect_ratio": "21:9",
            "format": "png",
            "callback_url": HOOK,
            **refs,
        }

    @pytest.mark.parametrize("fmt", ["jpg", "png"])
    def test_both_formats(self, fmt):
        assert api.image_body("p", format=fmt) == {"prompt": "p", "model": "photon-1", "format": fmt}

    @pytest.mark.parametrize("ratio", ["1:1", "9:21"])
    def test_official_ratios(self, ratio):
        assert api.image_body("p", aspect_ratio=ratio)["aspect_ratio"] == ratio

    def test_empty_options_are_left_out(self):
        body = api.image_body("p", model="", aspect_ratio="", format="", callback_url="")
        assert body == {"prompt": "p", "model": "photon-1"}

    @pytest.mark.parametrize("ref", ["image_ref", "style_ref", "character_ref", "modify_image_ref"])
    def test_a_none_ref_is_left_out(self, ref):
        assert api.image_body("p", **{ref: None}) == {"prompt": "p", "model": "photon-1"}

    @pytest.mark.parametrize(
        ("options", "field", "message"),
        [
            ({"model": "ray-2"}, "model", "'ray-2' is not one of photon-1, photon-flash-1"),
            (
                {"aspect_ratio": "2:1"},
                "aspect_ratio",
                "'2:1' is not one of 1:1, 4:3, 3:4, 16:9, 9:16, 21:9, 9:21",
            ),
            ({"format": "gif"}, "format", "'gif' is not one of jpg, png"),
            (
                {"callback_url": "ftp://h.example/x"},
                "callback_url",
                "must be a plain http(s) URL, got 'ftp://h.example/x'",
            ),
            (
                {"zeta": 1, "alpha": 2},
                "alpha",
                "is not an image option; allowed: model, aspect_ratio, format, callback_url, "
                "image_ref, style_ref, character_ref, modify_image_ref",
            ),
        ],
    )
    def test_refusals_name_the_field_exactly(self, options, field, message):
        err = refused(api.image_body, "p", **options)
        assert (err.field, str(err)) == (field, f"Invalid {field!r}: {message}")

    def test_an_unknown_option_next_to_a_valid_one(self):
        err = refused(api.image_body, "p", format="jpg", callback_url=HOOK, image_ref=[], seed=3)
        assert (err.field, str(err)) == (
            "seed",
            "Invalid 'seed': is not an image option; allowed: model, aspect_ratio, format, "
            "callback_url, image_ref, style_ref, character_ref, modify_image_ref",
        )

    def test_prompt_is_validated(self):
        err = refused(api.image_body, "   ")
        assert (err.field, str(err)) == ("prompt", "Invalid 'prompt': must be a non-empty string")

    @pytest.mark.parametrize("bad", [math.nan, math.inf, {1, 2}, b"x"])
    def test_unserializable_refs_are_refused(self, bad):
        err = refused(api.image_body, "p", image_ref=bad)
        assert err.field == "options"
        assert str(err) == (
            f"Invalid 'options': must be JSON-serializable, without NaN or Infinity ({json_error(bad)})"
        )
        assert err.__cause__ is None and err.__suppress_context__ is True


# ----------------------------------------------------------------------------- upscale & audio
class TestUpscaleBody:
    @pytest.mark.parametrize("resolution", ["540p", "720p", "1080p", "4k"])
    def test_body(self, resolution):
        body = api.upscale_body(resolution)
        assert body == {"generation_type": "upscale_video", "resolution": resolution}

    def test_callback(self):
        assert api.upscale_body("4k", callback_url=HOOK) == {
            "generation_type": "upscale_video",
            "resolution": "4k",
            "callback_url": HOOK,
        }
        assert api.upscale_body("4k", callback_url="") == {
            "generation_type": "upscale_video",
            "resolution": "4k",
        }

    @pytest.mark.parametrize("missing", [None, ""])
    def test_resolution_is_required(self, missing):
        err = refused(api.upscale_body, missing)
        assert (err.field, str(err)) == (
            "resolution",
            "Invalid 'resolution': is required; one of 540p, 720p, 1080p, 4k",
        )

    def test_unknown_resolution(self):
        err = refused(api.upscale_body, "8k")
        assert (err.field, str(err)) == (
            "resolution",
            "Invalid 'resolution': '8k' is not one of 540p, 720p, 1080p, 4k",
        )

    def test_bad_callback(self):
        err = refused(api.upscale_body, "720p", callback_url="not a url")
        assert (err.field, str(err)) == (
            "callback_url",
            "Invalid 'callback_url': must be a plain http(s) URL, got 'not a url'",
        )


class TestAudioBody:
    def test_minimal(self):
        assert api.audio_body("  rain  ") == {"generation_type": "add_audio", "prompt": "rain"}

    def test_every_option(self):
        body = api.audio_body("rain", negative_prompt="  music ", callback_url=HOOK)
        assert body == {
            "generation_type": "add_audio",
            "prompt": "rain",
            "negative_prompt": "music",
            "callback_url": HOOK,
        }

    @pytest.mark.parametrize("empty", [None, ""])
    def test_empty_extras_are_left_out(self, empty):
        assert api.audio_body("rain", negative_prompt=empty, callback_url=empty) == {
            "generation_type": "add_audio",
            "prompt": "rain",
        }

    def test_prompts_are_validated_under_their_own_names(self):
        err = refused(api.audio_body, "")
        assert (err.field, str(err)) == ("prompt", "Invalid 'prompt': must be a non-empty string")
        err = refused(api.audio_body, "rain", negative_prompt="   ")
        assert (err.field, str(err)) == (
            "negative_prompt",
            "Invalid 'negative_prompt': must be a non-empty string",
        )
        err = refused(api.audio_body, "rain", negative_prompt="x" * 5001)
        assert (err.field, str(err)) == (
            "negative_prompt",
            "Invalid 'negative_prompt': is 5001 characters; the maximum is 5000",
        )

    def test_bad_callback(self):
        err = refused(api.audio_body, "rain", callback_url="file:///etc/passwd")
        assert (err.field, str(err)) == (
            "callback_url",
            "Invalid 'callback_url': must be a plain http(s) URL, got 'file:///etc/passwd'",
        )


# ----------------------------------------------------------------------------- flows
class TestOfficialFlowRequests:
    def test_submit_request_fields(self):
        body = {"prompt": "p", "model": "ray-2"}
        seen, gen = run(api.official_submit_flow(body), {"POST /generations/video": GEN})
        assert [fields(r) for r in seen] == [
            ("submit", "POST", "/generations/video", body, parse_generation, False, True, False)
        ]
        assert (gen.id, gen.state) == ("gen-1", LumaState.QUEUED)

    def test_submit_fallback_logs_and_keeps_every_field(self, caplog):
        body = {"prompt": "p"}
        answers = {"POST /generations/video": LumaNotFoundError(404, "Not Found"), "POST /generations": GEN}
        with caplog.at_level(logging.INFO, logger=api.log.name):
            seen, gen = run(api.official_submit_flow(body), answers)
        assert [fields(r) for r in seen] == [
            ("submit", "POST", "/generations/video", body, parse_generation, False, True, False),
            ("submit", "POST", "/generations", body, parse_generation, False, True, False),
        ]
        assert gen.id == "gen-1"
        assert [r.getMessage() for r in caplog.records if r.name == api.log.name] == [
            "POST /generations/video answered 404; trying the older route /generations"
        ]
        assert [r.levelno for r in caplog.records if r.name == api.log.name] == [logging.INFO]

    @pytest.mark.parametrize("path", ["/generations", "/generations/image"])
    def test_another_path_has_no_fallback(self, path):
        not_found = LumaNotFoundError(404, "Not Found")
        seen: list[api.Request] = []

        def send(request: api.Request) -> Any:
            seen.append(request)
            raise not_found

        with pytest.raises(LumaNotFoundError) as info:
            api.drive(api.official_submit_flow({"prompt": "p"}, path), send)
        assert info.value is not_found
        assert [(r.name, r.method, r.path, r.idempotent) for r in seen] == [("submit", "POST", path, False)]

    def test_another_path_answers(self):
        seen, gen = run(api.official_submit_flow({"prompt": "p"}, "/generations"), {"POST /generations": GEN})
        assert [r.path for r in seen] == ["/generations"]
        assert gen.id == "gen-1"

    def test_a_404_on_the_older_route_is_the_one_raised(self):
        first, second = LumaNotFoundError(404, "first"), LumaNotFoundError(404, "second")
        answers = {"POST /generations/video": first, "POST /generations": second}
        with pytest.raises(LumaNotFoundError) as info:
            run(api.official_submit_flow({"prompt": "p"}), answers)
        assert info.value is second

    def test_get(self):
        seen, gen = run(api.official_get_flow("gen-1"), {"GET /generations/gen-1": GEN})
        assert [fields(r) for r in seen] == [
            ("get", "GET", "/generations/gen-1", None, parse_generation, True, True, False)
        ]
        assert (gen.id, gen.state, gen.model) == ("gen-1", LumaState.QUEUED, "ray-2")

    def test_cancel(self):
        seen, result = run(api.official_cancel_flow("gen-1"), {"DELETE /generations/gen-1": None})
        assert result is None
        (request,) = seen
        assert (request.name, request.method, request.path, request.json) == (
            "cancel",
            "DELETE",
            "/generations/gen-1",
            None,
        )
        assert (request.idempotent, request.retry, request.empty_ok) == (True, True, True)
        assert request.parse({"x": 1}) == {"x": 1}

    @pytest.mark.parametrize(
        ("name", "path"),
        [
            ("image", "/generations/image"),
            ("upscale", "/generations/gen-1/upscale"),
            ("audio", "/generations/gen-1/audio"),
        ],
    )
    def test_post(self, name, path):
        body = {"prompt": "p"}
        seen, gen = run(api.official_post_flow(name, path, body), {f"POST {path}": GEN})
        assert [fields(r) for r in seen] == [(name, "POST", path, body, parse_generation, False, True, False)]
        assert gen.id == "gen-1"

    def test_list_request_and_page(self):
        page = {"generations": [GEN, {**GEN, "id": "gen-2"}], "has_more": True}
        seen, (gens, more) = run(
            api.official_list_flow(20, 40), {"GET /generations?limit=20&offset=40": page}
        )
        (request,) = seen
        assert (request.name, request.method, request.path, request.json) == (
            "list",
            "GET",
            "/generations?limit=20&offset=40",
            None,
        )
        assert (request.idempotent, request.retry, request.empty_ok) == (True, True, False)
        assert ([g.id for g in gens], more) == (["gen-1", "gen-2"], True)

    def test_list_truncates_numbers(self):
        seen, _ = run(
            api.official_list_flow(2.9, 1.5), {"GET /generations?limit=2&offset=1": {"generations": []}}
        )
        assert [r.path for r in seen] == ["/generations?limit=2&offset=1"]

    @pytest.mark.parametrize(
        ("has_more", "more"), [(True, True), (False, False), ("true", False), (1, False), (None, False)]
    )
    def test_has_more_must_be_exactly_true(self, has_more, more):
        page = {"generations": [], "has_more": has_more}
        _, (gens, got) = run(api.official_list_flow(1, 0), {"GET /generations?limit=1&offset=0": page})
        assert (gens, got) == ([], more)

    def test_has_more_missing(self):
        _, (gens, more) = run(
            api.official_list_flow(1, 0), {"GET /generations?limit=1&offset=0": {"generations": [GEN]}}
        )
        assert ([g.id for g in gens], more) == (["gen-1"], False)

    @pytest.mark.parametrize("bad", [[], {"generations": {"a": 1}}, {"items": []}, None])
    def test_list_shape_error_message(self, bad):
        with pytest.raises(LumaResponseShapeError) as info:
            run(api.official_list_flow(1, 0), {"GET /generations?limit=1&offset=0": bad})
        assert str(info.value) == "expected {generations: [...]} from GET /generations"


# ----------------------------------------------------------------------------- GenerationOptions (official)
class TestOfficialBuild:
    def test_flavour_and_defaults(self):
        options = official()
        assert (options.flavour, options.prompt, options.model, options.concepts, dict(options.extra)) == (
            "official",
            "a fox",
            None,
            (),
            {},
        )
        assert options.body() == {"prompt": "a fox", "model": "ray-2"}

    @pytest.mark.parametrize("value", [True, False, "yes", 0])
    def test_expand_prompt_is_refused(self, value):
        err = refused(official, expand_prompt=value)
        assert (err.field, str(err)) == (
            "expand_prompt",
            "Invalid 'expand_prompt': is not available in the official API flavour",
        )

    def test_a_none_expand_prompt_is_no_option(self):
        assert official(expand_prompt=None).body() == {"prompt": "a fox", "model": "ray-2"}

    def test_an_empty_expand_prompt_is_no_option(self):
        assert official(expand_prompt="").body() == {"prompt": "a fox", "model": "ray-2"}

    def test_concepts_and_callback_are_official(self):
        body = official(concepts="orbit_left", callback_url=HOOK).body()
        assert body == {
            "prompt": "a fox",
            "model": "ray-2",
            "concepts": [{"key": "orbit_left"}],
            "callback_url": HOOK,
        }

    @pytest.mark.parametrize("ratio", ["21:9", "9:21", "16:9"])
    def test_official_ratios(self, ratio):
        assert official(aspect_ratio=ratio).body()["aspect_ratio"] == ratio

    def test_official_models(self):
        assert official(model="ray-flash-2").body()["model"] == "ray-flash-2"
        assert official(model="ray-2").body()["model"] == "ray-2"
        err = refused(official, model="ray-v2")
        assert (err.field, str(err)) == (
            "model",
            "Invalid 'model': 'ray-v2' is not one of ray-2, ray-flash-2",
        )

    def test_gateway_ratios_and_models_differ(self):
        err = refused(api.GenerationOptions.build, "p", aspect_ratio="21:9")
        assert (err.field, str(err)) == (
            "aspect_ratio",
            "Invalid 'aspect_ratio': '21:9' is not one of 1:1, 4:3, 3:4, 16:9, 9:16",
        )
        err = refused(api.GenerationOptions.build, "p", model="ray-flash-2")
        assert err.field == "model"

    @pytest.mark.parametrize(
        "key",
        [
            "prompt",
            "model",
            "aspect_ratio",
            "loop",
            "keyframes",
            "resolution",
            "duration",
            "concepts",
            "callback_url",
            "user_prompt",
            "model_name",
        ],
    )
    def test_reserved_official_keys(self, key):
        err = refused(official, extra={key: 1})
        assert (err.field, str(err)) == (
            "extra",
            f"Invalid 'extra': {key!r} is set through its own parameter, not extra",
        )

    @pytest.mark.parametrize("key", ["expand_prompt", "image_url", "image_end_url", "seed"])
    def test_gateway_names_pass_through_in_official(self, key):
        assert official(extra={key: "v"}).body() == {"prompt": "a fox", "model": "ray-2", key: "v"}

    def test_extra_must_be_a_dict_with_string_keys(self):
        err = refused(official, extra=[("seed", 1)])
        assert (err.field, str(err)) == ("extra", "Invalid 'extra': must be a dict, got list")
        err = refused(official, extra={1: "x"})
        assert (err.field, str(err)) == ("extra", "Invalid 'extra': keys must be strings, got 1")

    @pytest.mark.parametrize("bad", [math.nan, -math.inf, object])
    def test_extra_must_be_json(self, bad):
        err = refused(official, extra={"seed": bad})
        assert err.field == "extra"
        assert str(err) == (
            f"Invalid 'extra': must be JSON-serializable, without NaN or Infinity ({json_error(bad)})"
        )
        assert err.__cause__ is None and err.__suppress_context__ is True

    def test_official_field_errors(self):
        err = refused(official, callback_url="ftp://x")
        assert (err.field, str(err)) == (
            "callback_url",
            "Invalid 'callback_url': must be a plain http(s) URL, got 'ftp://x'",
        )
        err = refused(official, concepts=[1])
        assert (err.field, str(err)) == (
            "concepts",
            "Invalid 'concepts': must be a list of concept keys, got [1]",
        )
        err = refused(official, image_url="ftp://x")
        assert err.field == "image_url"
        err = refused(official, image_end_url="ftp://x")
        assert err.field == "image_end_url"

    def test_only_the_end_frame(self):
        assert official(image_end_url="https://i.example/b.png").body() == {
            "prompt": "a fox",
            "model": "ray-2",
            "keyframes": {"frame1": {"type": "image", "url": "https://i.example/b.png"}},
        }


# ----------------------------------------------------------------------------- official_extend_body
class TestOfficialExtendBody:
    def test_extend_is_frame0(self):
        assert api.official_extend_body(official(resolution="720p"), " gen-1 ") == {
            "prompt": "a fox",
            "model": "ray-2",
            "resolution": "720p",
            "keyframes": {"frame0": {"type": "generation", "id": "gen-1"}},
        }

    def test_reverse_is_frame1(self):
        body = api.official_extend_body(official(), "gen-1", reverse=True)
        assert body["keyframes"] == {"frame1": {"type": "generation", "id": "gen-1"}}

    def test_interpolate(self):
        body = api.official_extend_body(official(), "gen-1", end_id="gen-2")
        assert body["keyframes"] == {
            "frame0": {"type": "generation", "id": "gen-1"},
            "frame1": {"type": "generation", "id": "gen-2"},
        }
        assert list(body["keyframes"]) == ["frame0", "frame1"]

    def test_an_empty_end_id_is_no_interpolation(self):
        body = api.official_extend_body(official(image_end_url="https://i.example/b.png"), "gen-1", end_id="")
        assert body["keyframes"] == {
            "frame0": {"type": "generation", "id": "gen-1"},
            "frame1": {"type": "image", "url": "https://i.example/b.png"},
        }

    def test_reverse_keeps_the_image_start(self):
        body = api.official_extend_body(official(image_url="https://i.example/a.png"), "gen-1", reverse=True)
        assert body["keyframes"] == {
            "frame0": {"type": "image", "url": "https://i.example/a.png"},
            "frame1": {"type": "generation", "id": "gen-1"},
        }

    @pytest.mark.parametrize(
        ("options", "kwargs", "field", "frame"),
        [
            ({"image_url": "https://i.example/a.png"}, {}, "image_url", "frame0"),
            ({"image_end_url": "https://i.example/b.png"}, {"reverse": True}, "image_end_url", "frame1"),
            ({"image_end_url": "https://i.example/b.png"}, {"end_id": "gen-2"}, "image_end_url", "frame1"),
        ],
    )
    def test_an_image_on_an_extended_frame_is_refused(self, options, kwargs, field, frame):
        err = refused(api.official_extend_body, official(**options), "gen-1", **kwargs)
        assert (err.field, str(err)) == (
            field,
            f"Invalid {field!r}: {frame} is already the extended generation; give no image for it",
        )

    @pytest.mark.parametrize("kwargs", [{}, {"end_id": "../x"}])
    def test_ids_are_validated_as_generation_ids(self, kwargs):
        source = "gen-1" if kwargs else "a b"
        err = refused(api.official_extend_body, official(), source, **kwargs)
        assert err.field == "generation_id"
        assert str(err).startswith("Invalid 'generation_id': expected a Luma generation id")


# ----------------------------------------------------------------------------- BodyReader.for_reply
class TestBodyReaderForReply:
    def settings(self, **extra: Any) -> api.ConnectionSettings:
        return api.settings_from_connection(
            "c", "luma", "https://api.lumalabs.ai/dream-machine/v1", "sk-k", None, extra
        )

    def test_the_error_body_limit_is_8_kib(self):
        assert api.ERROR_BODY_LIMIT == 8192

    @pytest.mark.parametrize("status", [400, 404, 500])
    def test_an_error_reply_is_cut_at_8_kib(self, status):
        request = api.Request("get", "GET", "/generations/g")
        reader = api.BodyReader.for_reply(request, status, {}, self.settings())
        assert (reader.limit, reader.truncate, reader.what) == (8192, True, "GET /generations/g")
        assert b"".join(reader.feed(b"x" * 9000)) == b"x" * 8192

    @pytest.mark.parametrize("status", [200, 204, 399])
    def test_a_success_reply_is_capped_by_the_setting(self, status):
        settings = self.settings()
        request = api.Request("submit", "POST", "/generations/video")
        reader = api.BodyReader.for_reply(request, status, {}, settings)
        assert (reader.limit, reader.truncate, reader.what) == (
            settings.max_response_bytes,
            False,
            "POST /generations/video",
        )

    def test_the_content_encoding_header_is_honoured(self):
        request = api.Request("get", "GET", "/credits")
        data = gzip.compress(b'{"credit_balance": 1}')
        reader = api.BodyReader.for_reply(request, 200, {"Content-Encoding": "gzip"}, self.settings())
        assert b"".join([*reader.feed(data), *reader.finish()]) == b'{"credit_balance": 1}'
        assert reader.wire_bytes == len(data)


class TestFlavourEdges:
    def test_an_unknown_flavour_is_a_validation_error(self):
        err = refused(api.GenerationOptions.build, "p", flavour="dream")
        assert (err.field, str(err)) == (
            "flavour",
            "Invalid 'flavour': 'dream' is not one of gateway, official",
        )

    def test_empty_official_only_options_are_no_options_in_the_gateway(self):
        assert api.GenerationOptions.build("p", concepts="", callback_url="").body() == {"user_prompt": "p"}

    @pytest.mark.parametrize("empty", [None, ""])
    def test_an_empty_flavour_means_gateway(self, empty):
        options = api.GenerationOptions.build("p", flavour=empty)
        assert (options.flavour, options.body()) == ("gateway", {"user_prompt": "p"})


class TestCreditsAndProbe:
    def test_credits_request(self):
        seen, balance = run(api.official_credits_flow(), {"GET /credits": {"credit_balance": 12}})
        assert [(r.name, r.method, r.path, r.json, r.idempotent, r.empty_ok) for r in seen] == [
            ("credits", "GET", "/credits", None, True, False)
        ]
        assert (balance, type(balance)) == (12.0, float)

    @pytest.mark.parametrize(
        ("error", "message"),
        [
            (LumaAuthError(401, "bad key"), "Bad API key (HTTP 401): bad key"),
            (LumaTransportError("refused"), "API unreachable: refused"),
            (LumaAPIError(503, "down"), "API answered HTTP 503: down"),
        ],
    )
    def test_probe_failures(self, error, message):
        assert run(api.official_probe_flow(), {"GET /credits": error})[1] == (False, message)

    @pytest.mark.parametrize(
        "bad", [{"credit_balance": "12"}, {"credit_balance": True}, {"credit_balance": math.inf}, [1]]
    )
    def test_bad_credits_message_shows_the_payload(self, bad):
        with pytest.raises(LumaResponseShapeError) as info:
            run(api.official_credits_flow(), {"GET /credits": bad})
        assert str(info.value) == f"expected {{credit_balance: number}}, got {bad!r}"


class TestEmptyBooleans:
    @pytest.mark.parametrize("flavour", ["official", "gateway"])
    def test_an_empty_loop_is_no_option(self, flavour):
        options = api.GenerationOptions.build("p", flavour=flavour, loop="")
        assert options.loop is None
        assert "loop" not in options.body()
