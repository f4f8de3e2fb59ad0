"""The official Dream Machine dialect without I/O: settings, bodies, flows, parsing."""

from __future__ import annotations

from typing import Any

import pytest

from luma_provider import api
from luma_provider.exceptions import (
    LumaConfigError,
    LumaNotFoundError,
    LumaTransportError,
    LumaValidationError,
)
from luma_provider.models import LumaState, parse_generation


def settings(host: str = "https://api.lumalabs.ai/dream-machine/v1", **extra: Any) -> api.ConnectionSettings:
    return api.settings_from_connection("c", "luma", host, "sk-k", None, extra)


class TestFlavourSelection:
    def test_a_dream_machine_path_selects_official(self):
        s = settings()
        assert (s.api_flavour, s.official, s.url("/credits")) == (
            "official",
            True,
            "https://api.lumalabs.ai/dream-machine/v1/credits",
        )

    def test_explicit_official_adds_the_versioned_path(self):
        assert settings("https://api.lumalabs.ai", api_flavour="official").base_url == (
            "https://api.lumalabs.ai/dream-machine/v1"
        )

    def test_explicit_extra_wins(self):
        s = settings("https://proxy.example/dream-machine/v1", api_flavour="gateway")
        assert (s.api_flavour, s.url("/luma/tasks")) == (
            "gateway",
            "https://proxy.example/dream-machine/v1/luma/tasks",
        )

    def test_default_is_gateway(self):
        assert settings("https://gw.example").api_flavour == "gateway"

    def test_unknown_flavour_is_a_config_error_naming_the_choices(self):
        with pytest.raises(LumaConfigError, match=r"api_flavour.*gateway, official.*'dream'"):
            settings(api_flavour="dream")


def official(prompt: str = "a fox", **options: Any) -> api.GenerationOptions:
    return api.GenerationOptions.build(prompt, flavour="official", **options)


class TestOfficialBody:
    def test_minimal_body_has_the_required_model(self):
        assert official().body() == {"prompt": "a fox", "model": "ray-2"}

    def test_every_option_in_official_names(self):
        body = official(
            aspect_ratio="21:9",
            loop="yes",
            image_url="https://img.example/a.png",
            image_end_url="https://img.example/b.png",
            model="ray-flash-2",
            resolution="1080p",
            duration=9,
            concepts=["dolly_zoom", " orbit_left "],
            callback_url="https://hooks.example/luma",
            extra={"seed": 7},
        ).body()
        assert body == {
            "prompt": "a fox",
            "model": "ray-flash-2",
            "keyframes": {
                "frame0": {"type": "image", "url": "https://img.example/a.png"},
                "frame1": {"type": "image", "url": "https://img.example/b.png"},
            },
            "concepts": [{"key": "dolly_zoom"}, {"key": "orbit_left"}],
            "aspect_ratio": "21:9",
            "loop": True,
            "resolution": "1080p",
            "duration": "9s",
            "callback_url": "https://hooks.example/luma",
            "seed": 7,
        }

    @pytest.mark.parametrize(("given", "sent"), [(5, "5s"), ("9", "9s"), ("5s", "5s"), (9.0, "9s")])
    def test_duration_is_normalized(self, given, sent):
        assert official(duration=given).duration == sent

    @pytest.mark.parametrize(
        ("options", "field", "allowed"),
        [
            ({"model": "ray-1-6"}, "model", "ray-2, ray-flash-2"),
            ({"aspect_ratio": "2:1"}, "aspect_ratio", "21:9, 9:21"),
            ({"resolution": "8k"}, "resolution", "540p, 720p, 1080p, 4k"),
            ({"duration": 7}, "duration", "5s, 9s"),
            ({"concepts": [1]}, "concepts", "list of concept keys"),
            ({"callback_url": "ftp://x/y"}, "callback_url", "plain http"),
            ({"expand_prompt": True}, "expand_prompt", "not available in the official API flavour"),
            ({"extra": {"user_prompt": "x"}}, "extra", "own parameter"),
            ({"extra": {"keyframes": {}}}, "extra", "own parameter"),
        ],
    )
    def test_bad_input_names_the_field_and_allowed_values(self, options, field, allowed):
        with pytest.raises(LumaValidationError, match=field) as info:
            official(**options)
        assert info.value.field == field
        assert allowed in str(info.value)

    def test_gateway_flavour_refuses_official_only_options(self):
        for name, value in (("concepts", ["dolly_zoom"]), ("callback_url", "https://h.example/x")):
            with pytest.raises(LumaValidationError, match="not available in the gateway API flavour"):
                api.GenerationOptions.build("p", **{name: value})
        with pytest.raises(LumaValidationError, match="aspect_ratio"):
            api.GenerationOptions.build("p", aspect_ratio="21:9")

    def test_gateway_has_resolution_and_duration_first_class(self):
        body = api.GenerationOptions.build("p", resolution="720p", duration=5, model="ray-2").body()
        assert body == {"user_prompt": "p", "model_name": "ray-v2", "resolution": "720p", "duration": "5s"}
        with pytest.raises(LumaValidationError, match="own parameter"):
            api.GenerationOptions.build("p", extra={"resolution": "720p"})


class TestExtendBody:
    def test_extend_continues_the_generation_as_frame0(self):
        body = api.official_extend_body(official("more"), "gen-1")
        assert body["keyframes"] == {"frame0": {"type": "generation", "id": "gen-1"}}

    def test_reverse_leads_into_it_as_frame1(self):
        body = api.official_extend_body(official("before"), "gen-1", reverse=True)
        assert body["keyframes"] == {"frame1": {"type": "generation", "id": "gen-1"}}

    def test_reverse_keeps_an_image_start_frame(self):
        body = api.official_extend_body(
            official("x", image_url="https://i.example/a.png"), "gen-1", reverse=True
        )
        assert body["keyframes"] == {
            "frame0": {"type": "image", "url": "https://i.example/a.png"},
            "frame1": {"type": "generation", "id": "gen-1"},
        }

    def test_interpolate_uses_both_frames(self):
        body = api.official_extend_body(official("between"), "gen-a", end_id="gen-b")
        assert body["keyframes"] == {
            "frame0": {"type": "generation", "id": "gen-a"},
            "frame1": {"type": "generation", "id": "gen-b"},
        }

    def test_an_image_on_the_extended_frame_is_refused(self):
        with pytest.raises(LumaValidationError, match="frame0 is already the extended generation"):
            api.official_extend_body(official("x", image_url="https://i.example/a.png"), "gen-1")

    def test_the_source_id_is_validated(self):
        with pytest.raises(LumaValidationError, match="generation id"):
            api.official_extend_body(official("x"), "../etc")


def run(flow: api.Flow[Any], answers: dict[str, Any]) -> tuple[list[str], Any]:
    """Drive ``flow``; ``answers`` maps "METHOD path" to a result or a LumaError to raise."""
    seen: list[str] = []

    def send(request: api.Request) -> Any:
        key = f"{request.method} {request.path}"
        seen.append(key)
        answer = answers[key]
        if isinstance(answer, Exception):
            raise answer
        return request.parse(answer)

    return seen, api.drive(flow, send)


GEN = {"id": "gen-1", "state": "queued", "generation_type": "video", "model": "ray-2"}


class TestOfficialFlows:
    def test_submit_uses_the_video_route(self):
        seen, gen = run(api.official_submit_flow({"prompt": "p"}), {"POST /generations/video": GEN})
        assert seen == ["POST /generations/video"]
        assert (gen.id, gen.state, gen.model) == ("gen-1", LumaState.QUEUED, "ray-2")

    def test_submit_falls_back_to_the_older_route_on_404(self):
        answers = {
            "POST /generations/video": LumaNotFoundError(404, "Not Found"),
            "POST /generations": GEN,
        }
        seen, gen = run(api.official_submit_flow({"prompt": "p"}), answers)
        assert seen == ["POST /generations/video", "POST /generations"]
        assert gen.id == "gen-1"

    def test_submit_404_on_both_routes_raises(self):
        answers = {
            "POST /generations/video": LumaNotFoundError(404, "Not Found"),
            "POST /generations": LumaNotFoundError(404, "Not Found"),
        }
        with pytest.raises(LumaNotFoundError):
            run(api.official_submit_flow({"prompt": "p"}), answers)

    def test_submit_is_not_idempotent(self):
        flow = api.official_submit_flow({"prompt": "p"})
        request = next(flow)
        assert (request.idempotent, request.name) == (False, "submit")

    def test_list_pages(self):
        page = {
            "generations": [GEN, {**GEN, "id": "gen-2"}],
            "count": 2,
            "has_more": True,
            "limit": 2,
            "offset": 0,
        }
        _, (gens, more) = run(api.official_list_flow(2, 0), {"GET /generations?limit=2&offset=0": page})
        assert ([g.id for g in gens], more) == (["gen-1", "gen-2"], True)
        _, (_, more) = run(
            api.official_list_flow(2, 2), {"GET /generations?limit=2&offset=2": {"generations": []}}
        )
        assert more is False

    @pytest.mark.parametrize("bad", [{"items": []}, [], {"generations": "x"}])
    def test_a_list_without_generations_is_a_shape_error(self, bad):
        with pytest.raises(Exception, match="generations"):
            run(api.official_list_flow(1, 0), {"GET /generations?limit=1&offset=0": bad})

    def test_credits(self):
        _, balance = run(api.official_credits_flow(), {"GET /credits": {"credit_balance": 1234.5}})
        assert balance == 1234.5

    @pytest.mark.parametrize("bad", [{}, {"credit_balance": "lots"}, {"credit_balance": True}, []])
    def test_bad_credits_are_a_shape_error(self, bad):
        with pytest.raises(Exception, match="credit_balance"):
            run(api.official_credits_flow(), {"GET /credits": bad})

    def test_probe_reports_the_balance(self):
        _, (ok, message) = run(api.official_probe_flow(), {"GET /credits": {"credit_balance": 99}})
        assert ok is True
        assert "credit balance 99" in message


class TestDecode:
    CANCEL = api.Request("cancel", "DELETE", "/generations/g1", empty_ok=True)
    GET = api.Request("get", "GET", "/generations/g1", parse=parse_generation)

    def test_204_without_body_is_the_answer_of_a_delete(self):
        assert api.decode(self.CANCEL, 204, {}, "", settings()) is None

    def test_an_empty_body_elsewhere_is_still_a_transport_error(self):
        with pytest.raises(LumaTransportError, match="empty body"):
            api.decode(self.GET, 204, {}, "", settings())

    def test_detail_errors(self):
        with pytest.raises(LumaNotFoundError, match="Generation not found"):
            api.decode(self.GET, 404, {}, '{"detail": "Generation not found"}', settings())


class TestOtherBodies:
    def test_image_body(self):
        body = api.image_body(
            "a cat",
            aspect_ratio="9:21",
            format="png",
            image_ref=[{"url": "https://i.example/r.png", "weight": 0.5}],
        )
        assert body == {
            "prompt": "a cat",
            "model": "photon-1",
            "aspect_ratio": "9:21",
            "format": "png",
            "image_ref": [{"url": "https://i.example/r.png", "weight": 0.5}],
        }

    @pytest.mark.parametrize(
        ("options", "field"),
        [({"model": "ray-2"}, "model"), ({"format": "gif"}, "format"), ({"seed": 1}, "seed")],
    )
    def test_image_body_refuses(self, options, field):
        with pytest.raises(LumaValidationError, match=field):
            api.image_body("a cat", **options)

    def test_upscale_and_audio_bodies(self):
        assert api.upscale_body("4k") == {"generation_type": "upscale_video", "resolution": "4k"}
        with pytest.raises(LumaValidationError, match=r"resolution.*540p"):
            api.upscale_body(None)
        assert api.audio_body("rain", negative_prompt="music") == {
            "generation_type": "add_audio",
            "prompt": "rain",
            "negative_prompt": "music",
        }


class TestOfficialModel:
    def test_an_image_generation_is_complete_with_its_image(self):
        gen = parse_generation(
            {
                "id": "img-1",
                "state": "completed",
                "generation_type": "image",
                "model": "photon-1",
                "assets": {"image": "https://cdn.example/img.jpg"},
            }
        )
        assert (gen.is_image, gen.image_url, gen.result_url, gen.video_url, gen.thumbnail_url) == (
            True,
            "https://cdn.example/img.jpg",
            "https://cdn.example/img.jpg",
            None,
            None,
        )

    def test_a_dreaming_video_has_its_progress_preview(self):
        gen = parse_generation(
            {
                "id": "vid-1",
                "state": "dreaming",
                "generation_type": "video",
                "assets": {
                    "progress_video": "https://cdn.example/p.mp4",
                    "image": "https://cdn.example/t.jpg",
                },
            }
        )
        assert (gen.state, gen.progress_video_url, gen.thumbnail_url, gen.image_url, gen.result_url) == (
            LumaState.RUNNING,
            "https://cdn.example/p.mp4",
            "https://cdn.example/t.jpg",
            None,
            None,
        )
