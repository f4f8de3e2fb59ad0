"""The sans-IO gateway protocol: validation, request bodies, error mapping, retries, settings, flows."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from luma_provider.api import (
    ASPECT_RATIOS,
    MAX_PROMPT_LENGTH,
    MAX_RETRY_AFTER,
    PROBE_ID,
    BatchSupport,
    ConnectionSettings,
    Request,
    RetryPolicy,
    build_generation_body,
    decode,
    download_url_flow,
    drive,
    error_for_status,
    error_message,
    extend_flow,
    get_flow,
    get_many_flow,
    probe_flow,
    retry_after_seconds,
    settings_from_connection,
    submit_flow,
    validate_generation_id,
)
from luma_provider.exceptions import (
    LumaAmbiguousSubmitError,
    LumaAPIError,
    LumaAuthError,
    LumaBadRequestError,
    LumaConfigError,
    LumaError,
    LumaNotFoundError,
    LumaRateLimitError,
    LumaServerError,
    LumaTransportError,
    LumaValidationError,
)
from luma_provider.models import LumaGeneration, LumaState, parse_generations

TEST_DATA = Path(__file__).parent / "test_data"
API_KEY = "sk-SeCrEt0123456789abcdef"
SETTINGS = ConnectionSettings(base_url="https://gw.example", api_key=API_KEY)
GET = Request("get", "GET", "/luma/generations/abc")
SUBMIT = Request("submit", "POST", "/luma/generations", {"user_prompt": "x"}, idempotent=False)


def text_of(name: str) -> str:
    return (TEST_DATA / f"{name}.json").read_text(encoding="utf-8")


# ============================================================================ request bodies
class TestBuildGenerationBody:
    def test_field_mapping(self):
        body = build_generation_body(
            "  cat dance  ",
            aspect_ratio="16:9",
            loop=True,
            expand_prompt=False,
            image_url="https://example.com/reference.png",
            image_end_url="https://example.com/keyframe.png",
            model="ray-2",
            extra={"notify_hook": "https://example.com/hook"},
        )
        assert body == {
            "user_prompt": "cat dance",
            "aspect_ratio": "16:9",
            "loop": True,
            "expand_prompt": False,
            "image_url": "https://example.com/reference.png",
            "image_end_url": "https://example.com/keyframe.png",
            "model_name": "ray-v2",
            "notify_hook": "https://example.com/hook",
        }
        assert "prompt" not in body and "model" not in body

    def test_minimal_body_has_only_user_prompt(self):
        assert build_generation_body("cat dance") == {"user_prompt": "cat dance"}

    @pytest.mark.parametrize(
        ("model", "model_name"),
        [
            ("ray-2", "ray-v2"),
            ("ray-1-6", "ray-v1"),
            ("ray-v1", "ray-v1"),
            ("ray-v2", "ray-v2"),
            ("ray-v3", "ray-v3"),
        ],
    )
    def test_model_mapping(self, model, model_name):
        assert build_generation_body("p", model=model)["model_name"] == model_name

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (True, True),
            (False, False),
            ("true", True),
            ("false", False),
            ("True", True),
            (" FALSE ", False),
            ("1", True),
            ("0", False),
            ("yes", True),
            ("no", False),
        ],
    )
    def test_bools(self, value, expected):
        body = build_generation_body("p", loop=value, expand_prompt=value)
        assert body["loop"] is expected
        assert body["expand_prompt"] is expected

    @pytest.mark.parametrize("ratio", ASPECT_RATIOS)
    def test_every_aspect_ratio(self, ratio):
        assert build_generation_body("p", aspect_ratio=ratio)["aspect_ratio"] == ratio

    def test_empty_optionals_are_dropped(self):
        assert build_generation_body("p", aspect_ratio="", image_url="", image_end_url=None, model="") == {
            "user_prompt": "p"
        }

    def test_data_uri_accepted(self):
        uri = "data:image/png;base64,iVBORw0KGgo="
        assert build_generation_body("p", image_url=uri)["image_url"] == uri

    def test_prompt_at_max_length(self):
        assert len(build_generation_body("a" * MAX_PROMPT_LENGTH)["user_prompt"]) == MAX_PROMPT_LENGTH


_MODEL_LIST = ["ray-2", "ray-1-6", "ray-v1", "ray-v2", "ray-v3"]

# (id, kwargs, field named in the message, allowed values the message must list)
BAD_INPUTS = [
    ("empty-prompt", dict(prompt=""), "prompt", []),
    ("whitespace-prompt", dict(prompt=" \n\t "), "prompt", []),
    ("none-prompt", dict(prompt=None), "prompt", []),
    ("int-prompt", dict(prompt=5), "prompt", []),
    ("oversized-prompt", dict(prompt="x" * (MAX_PROMPT_LENGTH + 1)), "prompt", [str(MAX_PROMPT_LENGTH)]),
    ("bad-aspect-ratio", dict(aspect_ratio="21:9"), "aspect_ratio", list(ASPECT_RATIOS)),
    ("aspect-ratio-typo", dict(aspect_ratio="16x9"), "aspect_ratio", list(ASPECT_RATIOS)),
    ("file-url", dict(image_url="file:///etc/passwd"), "image_url", ["http(s)", "data:image/"]),
    ("ftp-url", dict(image_end_url="ftp://example.com/a.png"), "image_end_url", ["http(s)", "data:image/"]),
    ("no-scheme-url", dict(image_url="example.com/a.png"), "image_url", ["http(s)"]),
    ("http-without-host", dict(image_url="http://"), "image_url", ["http(s)"]),
    ("whitespace-url", dict(image_url="   "), "image_url", ["http(s)"]),
    ("malformed-data-uri", dict(image_url="data:text/plain;base64,aGVsbG8="), "image_url", ["data:image/"]),
    ("data-uri-no-base64-marker", dict(image_url="data:image/png,abc"), "image_url", ["data:image/"]),
    (
        "data-uri-invalid-base64",
        dict(image_url="data:image/png;base64,@@not*base64@@"),
        "image_url",
        ["base64"],
    ),
    ("data-uri-bad-padding", dict(image_end_url="data:image/png;base64,abc"), "image_end_url", ["base64"]),
    ("unknown-model", dict(model="ray-9"), "model", _MODEL_LIST),
    ("official-flash-model", dict(model="ray-flash-2"), "model", _MODEL_LIST),
    ("bad-loop", dict(loop="maybe"), "loop", ["true", "false"]),
    ("int-loop", dict(loop=2), "loop", ["true", "false"]),
    ("bad-expand-prompt", dict(expand_prompt="sure"), "expand_prompt", ["true", "false"]),
    ("non-string-extra-key", dict(extra={1: "x"}), "extra", ["strings"]),
    ("reserved-extra-user_prompt", dict(extra={"user_prompt": "x"}), "extra", ["user_prompt"]),
    ("reserved-extra-model_name", dict(extra={"model_name": "ray-v2"}), "extra", ["model_name"]),
    ("reserved-extra-image_url", dict(extra={"image_url": "https://a/b.png"}), "extra", ["image_url"]),
    ("non-json-extra", dict(extra={"when": object()}), "extra", ["JSON-serializable"]),
    ("non-json-extra-set", dict(extra={"tags": {1, 2}}), "extra", ["JSON-serializable"]),
]


class TestValidation:
    @pytest.mark.parametrize(
        ("kwargs", "field", "allowed"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
    )
    def test_bad_input(self, kwargs, field, allowed):
        kwargs = dict(kwargs)
        prompt = kwargs.pop("prompt", "a valid prompt")
        with pytest.raises(LumaValidationError) as info:
            build_generation_body(prompt, **kwargs)
        err = info.value
        assert err.field == field
        assert f"Invalid {field!r}" in str(err)
        for value in allowed:
            assert value in str(err)

    def test_validation_error_is_value_error_and_luma_error(self):
        with pytest.raises(ValueError):
            build_generation_body("")
        with pytest.raises(LumaError):
            build_generation_body("")

    @pytest.mark.parametrize(
        "bad", ["", "   ", "a/b", "../x", ".hidden", "a b", "a?b=c", "x" * 200, None, 123, ["abc"], "ab\nc"]
    )
    def test_bad_generation_ids(self, bad):
        with pytest.raises(LumaValidationError) as info:
            validate_generation_id(bad)
        assert info.value.field == "generation_id"
        assert "generation_id" in str(info.value)

    def test_generation_id_field_name_override(self):
        with pytest.raises(LumaValidationError, match="'source_id'"):
            validate_generation_id("a/b", "source_id")

    @pytest.mark.parametrize(
        "good", ["4665a07c-7641-4809-a133-10786201bb56", "luma_gen_abc123", "867283741759111202", "a.b:c"]
    )
    def test_good_generation_ids(self, good):
        assert validate_generation_id(good) == good

    def test_generation_id_is_stripped(self):
        assert validate_generation_id("  abc-1 \n") == "abc-1"

    def test_empty_data_uri_rejected(self):
        with pytest.raises(LumaValidationError, match="image_url"):
            build_generation_body("p", image_url="data:image/png;base64,")

    def test_nan_extra_rejected(self):
        with pytest.raises(LumaValidationError, match="extra"):
            build_generation_body("p", extra={"seed": float("nan")})


# ============================================================================ error messages
ERROR_MESSAGES = {
    "error_401_invalid_token": ("无效的令牌 (request id: 20240903132633756782166AeCxdlyd)", None),
    "error_403_quota": (
        "user quota is not enough (request id: 202502281247138307582052662997)",
        "insufficient_user_quota",
    ),
    "error_429_saturated": (
        "当前分组上游负载已饱和，请稍后再试 (request id: 202601071246251544566634hAu4T9s)",  # noqa: RUF001
        None,
    ),
    "error_429_upstream": (
        "当前分组上游负载已饱和，请稍后再试 (request id: 2024020118022617175502YCEL5Sjv)",  # noqa: RUF001
        "bad_response_status_code",
    ),
    "error_503_no_channel": (
        "当前分组 default 下对于模型 gpt-4o-mini 无可用渠道 (request id: 202510161555437244439317690388)",
        None,
    ),
    "error_task_not_exist": ("task_not_exist", "task_not_exist"),
    "error_luma_api_detail": ("unauthorized secret token", None),
    "error_fastapi_not_authenticated": ("Not authenticated", None),
    "error_422_validation": ("body.user_prompt: field required", None),
}


class TestErrorMessage:
    @pytest.mark.parametrize("name", sorted(ERROR_MESSAGES))
    def test_fixtures(self, name, load_fixture):
        assert error_message(load_fixture(name), "RAW") == ERROR_MESSAGES[name]

    @pytest.mark.parametrize(
        ("payload", "expected"),
        [
            ({"error": {"message": "E"}, "message": "M", "detail": "D"}, "E"),
            ({"error": {"message": ""}, "message": "M", "detail": "D"}, "M"),
            ({"message": "M", "detail": {"reason": "R"}}, "M"),
            ({"message": "  ", "detail": "D"}, "D"),
            ({"detail": "D"}, "D"),
            ({"detail": {"reason": "R", "code": 1}}, "R"),
            ({"error": "plain string error"}, "plain string error"),
            ({"unrelated": 1}, "RAW"),
            ({"detail": []}, "RAW"),
            ([1, 2], "RAW"),
            (None, "RAW"),
            ("text", "RAW"),
        ],
    )
    def test_order(self, payload, expected):
        assert error_message(payload, "RAW")[0] == expected

    def test_error_code_preferred_over_top_level_code(self):
        assert error_message({"error": {"message": "m", "code": "inner"}, "code": "outer"}, "")[1] == "inner"

    def test_zero_code_is_none(self):
        assert error_message({"code": 0, "message": "SUCCEED"}, "") == ("SUCCEED", None)


def _err(status, text="", headers=None, settings=SETTINGS, request=GET):
    return error_for_status(request, status, headers or {}, text, settings)


class TestErrorForStatus:
    @pytest.mark.parametrize(
        ("status", "name", "cls"),
        [
            (401, "error_401_invalid_token", LumaAuthError),
            (403, "error_403_quota", LumaAuthError),
            (429, "error_429_saturated", LumaRateLimitError),
            (429, "error_429_upstream", LumaRateLimitError),
            (503, "error_503_no_channel", LumaServerError),
            (400, "error_task_not_exist", LumaNotFoundError),
            (400, "error_luma_api_detail", LumaBadRequestError),
            (401, "error_luma_api_detail", LumaAuthError),
            (500, "error_luma_api_detail", LumaServerError),
            (401, "error_fastapi_not_authenticated", LumaAuthError),
            (422, "error_422_validation", LumaBadRequestError),
        ],
    )
    def test_fixture_mapping(self, status, name, cls):
        err = _err(status, text_of(name))
        assert type(err) is cls
        assert err.status == status
        assert (err.message, err.code) == ERROR_MESSAGES[name]
        assert (err.method, err.path) == ("GET", "/luma/generations/abc")
        assert str(err).startswith(f"Luma gateway returned HTTP {status} on GET /luma/generations/abc")
        assert ERROR_MESSAGES[name][0] in str(err)

    @pytest.mark.parametrize(
        ("status", "cls"),
        [
            (400, LumaBadRequestError),
            (401, LumaAuthError),
            (403, LumaAuthError),
            (404, LumaNotFoundError),
            (422, LumaBadRequestError),
            (429, LumaRateLimitError),
            (500, LumaServerError),
            (502, LumaServerError),
            (503, LumaServerError),
            (504, LumaServerError),
            (409, LumaAPIError),
            (418, LumaAPIError),
        ],
    )
    def test_status_mapping(self, status, cls):
        err = _err(status, "")
        assert type(err) is cls
        assert err.message == "(empty body)"

    def test_task_not_exist_code_with_other_status_is_not_found(self):
        err = _err(500, '{"code":"task_not_exist","message":"task_not_exist","data":null}')
        assert type(err) is LumaNotFoundError

    def test_quota_code_kept(self):
        err = _err(403, text_of("error_403_quota"))
        assert err.code == "insufficient_user_quota"
        assert "[insufficient_user_quota]" in str(err)

    @pytest.mark.parametrize(
        ("headers", "expected"),
        [
            ({"Retry-After": "7"}, 7.0),
            ({"retry-after": "2.5"}, 2.5),
            ({}, None),
            ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
            ({"Retry-After": "100000"}, MAX_RETRY_AFTER),
            ({"Retry-After": "-3"}, 0.0),
        ],
    )
    def test_rate_limit_retry_after(self, headers, expected):
        err = _err(429, text_of("error_429_saturated"), headers)
        assert isinstance(err, LumaRateLimitError)
        assert err.retry_after == expected
        assert retry_after_seconds(headers) == expected

    def test_non_json_body_is_excerpted(self):
        err = _err(502, "<html><body>Bad Gateway</body></html>")
        assert type(err) is LumaServerError
        assert err.message == "<html><body>Bad Gateway</body></html>"

    def test_long_body_truncated(self):
        err = _err(500, "x" * 500)
        assert err.message == "x" * 200 + "..."

    def test_key_redacted_from_json_message(self):
        err = _err(
            401, json.dumps({"error": {"message": f"invalid token {API_KEY}", "type": "new_api_error"}})
        )
        assert err.message == "invalid token ***"
        assert API_KEY not in str(err)

    def test_key_redacted_from_raw_body(self):
        err = _err(500, f"upstream said: Authorization: Bearer {API_KEY}")
        assert API_KEY not in str(err)
        assert "Bearer ***" in err.message

    def test_no_key_no_redaction(self):
        settings = ConnectionSettings(base_url="https://gw.example", api_key=None)
        assert _err(401, '{"detail":"Not authenticated"}', settings=settings).message == "Not authenticated"


class TestDecode:
    @pytest.mark.parametrize("text", ["", "   \n"])
    def test_empty_body(self, text):
        with pytest.raises(LumaTransportError, match="empty body"):
            decode(GET, 200, {}, text, SETTINGS)

    def test_html_body(self):
        with pytest.raises(LumaTransportError, match="not JSON"):
            decode(GET, 200, {}, "<html><head><title>Cloudflare</title></head></html>", SETTINGS)

    def test_truncated_json(self):
        text = text_of("get_completed_apifox")[:300]
        with pytest.raises(LumaTransportError, match="not JSON"):
            decode(Request("get", "GET", "/x", parse=lambda p: p), 200, {}, text, SETTINGS)

    def test_non_json_body_redacted(self):
        with pytest.raises(LumaTransportError) as info:
            decode(GET, 200, {}, f"oops {API_KEY}", SETTINGS)
        assert API_KEY not in str(info.value)

    def test_transport_error_from_decode_counts_as_sent(self):
        with pytest.raises(LumaTransportError) as info:
            decode(GET, 200, {}, "", SETTINGS)
        assert info.value.sent is True

    @pytest.mark.parametrize(
        ("name", "cls"),
        [
            ("error_401_invalid_token", LumaAPIError),
            ("error_403_quota", LumaAPIError),
            ("error_task_not_exist", LumaNotFoundError),
        ],
    )
    def test_200_with_error_envelope(self, name, cls):
        with pytest.raises(LumaAPIError) as info:
            decode(Request("get", "GET", "/x", parse=lambda p: p), 200, {}, text_of(name), SETTINGS)
        assert type(info.value) is cls
        assert info.value.status == 200
        assert (info.value.message, info.value.code) == ERROR_MESSAGES[name]

    def test_200_task_relay_error(self):
        text = '{"code":"invalid_request","message":"user_prompt is required","data":null}'
        with pytest.raises(LumaAPIError) as info:
            decode(SUBMIT, 200, {}, text, SETTINGS)
        assert (info.value.message, info.value.code) == ("user_prompt is required", "invalid_request")

    def test_200_envelope_redacted(self):
        text = json.dumps({"error": {"message": f"bad key {API_KEY}"}})
        with pytest.raises(LumaAPIError) as info:
            decode(GET, 200, {}, text, SETTINGS)
        assert API_KEY not in str(info.value)

    @pytest.mark.parametrize("status", [400, 401, 404, 429, 500])
    def test_error_status_raises_mapped_error(self, status):
        with pytest.raises(LumaAPIError) as info:
            decode(GET, status, {"Retry-After": "3"}, text_of("error_401_invalid_token"), SETTINGS)
        assert type(info.value) is type(_err(status, text_of("error_401_invalid_token")))
        assert info.value.status == status

    @pytest.mark.parametrize("status", [200, 201])
    def test_submit_shapes_parsed(self, status):
        for name, expected_id in [
            ("submit_v98store", "4665a07c-7641-4809-a133-10786201bb56"),
            ("submit_yescale_2025", "eec2fa50-22dd-4ce9-8f8b-f61e84567f85"),
            ("submit_kling_wrapper", "867283741759111202"),
            ("submit_array", "a4a8f1ff-e59b-4969-abcb-98b3e16f003e"),
        ]:
            req = next(submit_flow({"user_prompt": "x"}))
            gen = decode(req, status, {}, text_of(name), SETTINGS)
            assert isinstance(gen, LumaGeneration)
            assert (gen.id, gen.state) == (expected_id, LumaState.QUEUED)

    def test_tasks_wrapper_parsed(self):
        req = Request("tasks", "POST", "/luma/tasks", {"ids": ["x"]}, parse_generations)
        gens = decode(req, 200, {}, text_of("tasks_newapi_wrapper"), SETTINGS)
        assert [(g.id, g.state) for g in gens] == [
            ("9d4b7516-77e5-481a-b015-48313946f33b", LumaState.RUNNING)
        ]

    def test_unexpected_shape(self):
        req = next(get_flow("abc"))
        with pytest.raises(LumaTransportError, match="unexpected response shape"):
            decode(req, 200, {}, '{"hello": "world"}', SETTINGS)

    def test_download_url_payload(self, load_fixture):
        req = Request("download_url", "GET", "/luma/generations/x/download_video_url")
        assert decode(req, 200, {}, text_of("download_video_url"), SETTINGS) == load_fixture(
            "download_video_url"
        )


# ============================================================================ retries
ERRORS = {
    "429": LumaRateLimitError(429, "slow down"),
    "503": LumaServerError(503, "no channel"),
    "500": LumaServerError(500, "boom"),
    "502": LumaServerError(502, "bad gateway"),
    "504": LumaServerError(504, "gateway timeout"),
    "transport-sent": LumaTransportError("read timed out", sent=True),
    "transport-not-sent": LumaTransportError("connection refused", sent=False),
    "400": LumaBadRequestError(400, "bad"),
    "401": LumaAuthError(401, "no"),
    "403": LumaAuthError(403, "quota"),
    "404": LumaNotFoundError(404, "gone"),
    "validation": LumaValidationError("prompt", "empty"),
}
#                     idempotent, submit
RETRY_MATRIX = {
    "429": (True, True),
    "503": (True, True),
    "500": (True, False),
    "502": (True, False),
    "504": (True, False),
    "transport-sent": (True, False),
    "transport-not-sent": (True, True),
    "400": (False, False),
    "401": (False, False),
    "403": (False, False),
    "404": (False, False),
    "validation": (False, False),
}


class TestRetryPolicy:
    @pytest.mark.parametrize("name", sorted(RETRY_MATRIX))
    def test_should_retry_matrix(self, name):
        policy = RetryPolicy()
        idempotent, submit = RETRY_MATRIX[name]
        assert policy.should_retry(GET, ERRORS[name]) is idempotent
        assert policy.should_retry(SUBMIT, ERRORS[name]) is submit
        extend = next(extend_flow("abc", {"user_prompt": "x"}))
        assert extend.idempotent is False
        assert policy.should_retry(extend, ERRORS[name]) is submit

    @pytest.mark.parametrize("name", sorted(RETRY_MATRIX))
    def test_retry_false_never_retries(self, name):
        probe = next(probe_flow())
        assert probe.retry is False
        assert RetryPolicy().should_retry(probe, ERRORS[name]) is False

    def test_flow_requests_flags(self):
        assert next(submit_flow({"user_prompt": "x"})).idempotent is False
        assert next(get_flow("abc")).idempotent is True

    @pytest.mark.parametrize("name", ["502", "504", "500", "transport-sent"])
    def test_final_error_ambiguous_submit(self, name):
        final = RetryPolicy().final_error(SUBMIT, ERRORS[name])
        assert type(final) is LumaAmbiguousSubmitError
        text = str(final)
        assert "may have accepted the job" in text
        assert "not submitted again" in text
        assert str(ERRORS[name]) in text

    @pytest.mark.parametrize("name", ["503", "429", "transport-not-sent", "400", "401", "404"])
    def test_final_error_submit_not_ambiguous(self, name):
        assert RetryPolicy().final_error(SUBMIT, ERRORS[name]) is ERRORS[name]

    @pytest.mark.parametrize("name", sorted(RETRY_MATRIX))
    def test_final_error_idempotent_never_ambiguous(self, name):
        assert RetryPolicy().final_error(GET, ERRORS[name]) is ERRORS[name]

    @pytest.mark.parametrize("hint", [0.0, 3.0, 45.0])
    def test_wait_honours_retry_after(self, hint):
        err = LumaRateLimitError(429, "slow", retry_after=hint)
        assert RetryPolicy().wait_seconds(1, err) == hint
        assert RetryPolicy().wait_seconds(6, err) == hint

    @pytest.mark.parametrize(
        ("attempt", "backoff"),
        [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (20, 30.0)],
    )
    def test_wait_bounds(self, attempt, backoff):
        policy = RetryPolicy(initial_wait=1.0, max_wait=30.0)
        random.seed(1234)
        waits = [policy.wait_seconds(attempt, ERRORS["503"]) for _ in range(300)]
        assert all(backoff / 2 <= w <= backoff for w in waits)
        assert max(waits) - min(waits) > backoff / 4  # jittered, not constant
        assert policy.wait_seconds(attempt, None) <= backoff

    def test_wait_caps_at_max_wait(self):
        policy = RetryPolicy(initial_wait=5.0, max_wait=8.0)
        random.seed(7)
        assert max(policy.wait_seconds(10, None) for _ in range(200)) <= 8.0
        assert min(policy.wait_seconds(10, None) for _ in range(200)) >= 4.0

    def test_rate_limit_without_hint_uses_backoff(self):
        random.seed(3)
        wait = RetryPolicy(initial_wait=2.0).wait_seconds(2, LumaRateLimitError(429, "x", retry_after=None))
        assert 2.0 <= wait <= 4.0

    @pytest.mark.parametrize(
        ("request_", "error", "attempts"),
        [
            (GET, LumaServerError(500, "boom"), 3),
            (SUBMIT, LumaServerError(500, "boom"), 1),
            (SUBMIT, LumaServerError(503, "busy"), 3),
            (GET, LumaAuthError(401, "no"), 1),
        ],
    )
    def test_tenacity_kwargs(self, request_, error, attempts):
        import tenacity

        policy = RetryPolicy(max_retries=2, initial_wait=0.0, max_wait=0.0)
        calls = []

        def call():
            calls.append(1)
            raise error

        with pytest.raises(type(error)):
            tenacity.Retrying(**policy.tenacity_kwargs(request_))(call)
        assert len(calls) == attempts


# ============================================================================ connection settings
def _settings(host="https://gw.example", *, conn_type="luma", password=API_KEY, port=None, extra=None):
    return settings_from_connection("luma_default", conn_type, host, password, port, extra or {})


class TestSettingsFromConnection:
    def test_defaults(self):
        s = _settings()
        assert (
            s.base_url,
            s.api_key,
            s.timeout,
            s.max_retries,
            s.batch_size,
            s.path_prefix,
            s.verify_ssl,
        ) == ("https://gw.example", API_KEY, 30.0, 5, 100, "", True)

    @pytest.mark.parametrize("conn_type", ["luma", "http", None, ""])
    def test_accepted_conn_types(self, conn_type):
        assert _settings(conn_type=conn_type).base_url == "https://gw.example"

    def test_wrong_conn_type_named(self):
        with pytest.raises(LumaConfigError) as info:
            _settings(conn_type="postgres")
        assert "'postgres'" in str(info.value)
        assert "'luma'" in str(info.value)
        assert "'luma_default'" in str(info.value)

    @pytest.mark.parametrize("host", [None, "", "   ", "/"])
    def test_missing_host(self, host):
        with pytest.raises(LumaConfigError, match="has no host"):
            _settings(host)

    @pytest.mark.parametrize(
        ("host", "scheme"),
        [("ftp://gw.example", "ftp"), ("file:///etc/passwd", "file"), ("ws://gw.example", "ws")],
    )
    def test_non_http_scheme(self, host, scheme):
        with pytest.raises(LumaConfigError, match=f"got scheme '{scheme}'"):
            _settings(host)

    @pytest.mark.parametrize(
        ("host", "port", "base_url"),
        [
            ("gw.example", None, "https://gw.example"),
            ("gw.example/", None, "https://gw.example"),
            ("http://gw.example", None, "http://gw.example"),
            ("https://gw.example/luma", None, "https://gw.example"),
            ("https://gw.example/luma/", None, "https://gw.example"),
            ("gw.example/luma", None, "https://gw.example"),
            ("gw.example", 8080, "https://gw.example:8080"),
            ("http://127.0.0.1", 5000, "http://127.0.0.1:5000"),
            ("http://127.0.0.1:9000", 5000, "http://127.0.0.1:9000"),  # explicit port in the host wins
            ("https://gw.example/api", None, "https://gw.example/api"),
        ],
    )
    def test_host_normalisation(self, host, port, base_url):
        assert _settings(host, port=port).base_url == base_url

    @pytest.mark.parametrize(
        ("host", "port", "base_url"),
        [
            ("https://gw.example/luma", 8443, "https://gw.example:8443"),
            ("https://gw.example/api", 8443, "https://gw.example:8443/api"),
        ],
    )
    def test_port_with_path(self, host, port, base_url):
        assert _settings(host, port=port).base_url == base_url

    def test_extras(self):
        s = _settings(
            extra={
                "timeout": "12.5",
                "max_retries": "2",
                "batch_size": 10,
                "path_prefix": "pro",
                "verify_ssl": "false",
            }
        )
        assert (s.timeout, s.max_retries, s.batch_size, s.path_prefix, s.verify_ssl) == (
            12.5,
            2,
            10,
            "/pro",
            False,
        )

    def test_prefixed_extras(self):
        s = _settings(
            extra={
                "extra__luma__timeout": 7,
                "extra__luma__max_retries": 1,
                "extra__luma__batch_size": "25",
                "extra__luma__path_prefix": "/vip/",
                "extra__luma__verify_ssl": False,
            }
        )
        assert (s.timeout, s.max_retries, s.batch_size, s.path_prefix, s.verify_ssl) == (
            7.0,
            1,
            25,
            "/vip",
            False,
        )

    def test_plain_extra_wins_over_prefixed(self):
        assert _settings(extra={"timeout": 3, "extra__luma__timeout": 9}).timeout == 3.0

    def test_empty_and_null_extras_use_defaults(self):
        s = _settings(extra={"timeout": "", "max_retries": None, "path_prefix": None, "verify_ssl": ""})
        assert (s.timeout, s.max_retries, s.path_prefix, s.verify_ssl) == (30.0, 5, "", True)

    def test_batch_size_below_one_rejected(self):
        with pytest.raises(LumaConfigError, match="'batch_size' must be >= 1"):
            _settings(extra={"batch_size": 0})

    @pytest.mark.parametrize(
        ("extra", "name"),
        [
            ({"timeout": "fast"}, "timeout"),
            ({"max_retries": "1.5"}, "max_retries"),
            ({"batch_size": "lots"}, "batch_size"),
            ({"verify_ssl": "maybe"}, "verify_ssl"),
            ({"extra__luma__timeout": "abc"}, "timeout"),
            ({"max_retries": [1]}, "max_retries"),
        ],
    )
    def test_invalid_extra_named(self, extra, name):
        with pytest.raises(LumaConfigError) as info:
            _settings(extra=extra)
        assert f"extra field {name!r}" in str(info.value)
        assert repr(next(iter(extra.values()))) in str(info.value)

    @pytest.mark.parametrize("extra", [{"timeout": 0}, {"timeout": -5}, {"max_retries": -1}])
    def test_out_of_range_extra_rejected(self, extra):
        with pytest.raises(LumaConfigError, match=next(iter(extra))):
            _settings(extra=extra)

    @pytest.mark.parametrize(
        ("prefix", "expected"),
        [
            ("pro", "/pro"),
            ("/pro", "/pro"),
            ("/vip/", "/vip"),
            ("  /vip  ", "/vip"),
            ("//pro", "/pro"),
            ("", ""),
            ("/", ""),
        ],
    )
    def test_path_prefix(self, prefix, expected):
        s = _settings(extra={"path_prefix": prefix})
        assert s.path_prefix == expected
        assert s.url("/luma/generations") == f"https://gw.example{expected}/luma/generations"

    def test_empty_password_is_no_key(self):
        assert _settings(password="").api_key is None


class TestConnectionSettings:
    @pytest.mark.parametrize(
        ("url", "has_auth"),
        [
            ("https://gw.example/luma/generations", True),
            ("https://gw.example:443/luma/tasks", True),
            ("https://GW.example/luma/tasks", True),
            ("https://storage.cdn-luma.com/dream-machine/x/video.mp4", False),
            ("https://imagedelivery.net/1KomXrSWiTojGGip43n0SQ/x/public", False),
            ("http://gw.example/luma/generations", False),
            ("https://gw.example:8443/luma/generations", False),
            ("https://gw.example.evil.com/luma", False),
            ("https://evil.com/?u=https://gw.example", False),
        ],
    )
    def test_auth_headers_only_for_own_origin(self, url, has_auth):
        expected = {"Authorization": f"Bearer {API_KEY}"} if has_auth else {}
        assert SETTINGS.auth_headers_for(url) == expected

    def test_auth_headers_with_explicit_port(self):
        s = _settings("http://127.0.0.1", port=5000)
        assert s.auth_headers_for("http://127.0.0.1:5000/luma/tasks") == {
            "Authorization": f"Bearer {API_KEY}"
        }
        assert s.auth_headers_for("http://127.0.0.1/luma/tasks") == {}
        assert s.auth_headers_for("https://127.0.0.1:5000/luma/tasks") == {}

    def test_no_key_no_header(self):
        assert _settings(password=None).auth_headers_for("https://gw.example/luma/tasks") == {}

    def test_repr_hides_key(self):
        s = _settings(extra={"timeout": 9})
        assert API_KEY not in repr(s)
        assert API_KEY not in str(s)
        assert "timeout=9.0" in repr(s)

    def test_redact(self):
        assert SETTINGS.redact(f"a {API_KEY} b {API_KEY}") == "a *** b ***"
        assert ConnectionSettings(base_url="https://x", api_key=None).redact("abc") == "abc"


# ============================================================================ flows
def run_flow(flow, answer):
    """Drive a sans-IO flow with ``api.drive``: ``answer(request)`` returns the parsed result or
    raises a ``LumaError``; returns the requests seen and the flow's result."""
    seen: list[Request] = []

    def send(request: Request):
        seen.append(request)
        return answer(request)

    return seen, drive(flow, send)


def native(gen_id: str, state: str = "processing") -> dict:
    return {"id": gen_id, "state": state, "prompt": f"prompt {gen_id}", "video": None}


class FakeGateway:
    """Answers flow requests from memory, parsing with the request's own ``parse``."""

    def __init__(self, known, *, batch=True, batch_missing=(), batch_status=404):
        self.known = set(known)
        self.batch = batch
        self.batch_missing = set(batch_missing)
        self.batch_status = batch_status

    def __call__(self, request: Request):
        if request.name == "tasks":
            assert (request.method, request.path) == ("POST", "/luma/tasks")
            if not self.batch:
                raise LumaNotFoundError(self.batch_status, "no route", method="POST", path="/luma/tasks")
            ids = [i for i in request.json["ids"] if i in self.known and i not in self.batch_missing]
            return request.parse([native(i, "completed") for i in ids])
        assert request.method == "GET"
        gen_id = request.path.rsplit("/", 1)[1]
        if gen_id not in self.known:
            raise LumaNotFoundError(400, "task_not_exist", code="task_not_exist")
        return request.parse(native(gen_id))


def _calls(seen):
    return [(r.name, r.json["ids"] if r.name == "tasks" else r.path) for r in seen]


class TestGetManyFlow:
    def test_batches_in_chunks_dedupes_and_keeps_order(self):
        support = BatchSupport()
        ids = ["c", "a", "b", "a", "d", "c", "e"]
        seen, result = run_flow(get_many_flow(ids, 2, support), FakeGateway("abcde"))
        assert _calls(seen) == [("tasks", ["c", "a"]), ("tasks", ["b", "d"]), ("tasks", ["e"])]
        assert [g.id for g in result] == ["c", "a", "b", "d", "e"]
        assert all(g.state is LumaState.COMPLETED for g in result)
        assert support.available is True

    def test_ids_missing_from_batch_fetched_singly(self):
        seen, result = run_flow(
            get_many_flow(["a", "b", "c"], 10, BatchSupport()), FakeGateway("abc", batch_missing={"b"})
        )
        assert _calls(seen) == [("tasks", ["a", "b", "c"]), ("get", "/luma/generations/b")]
        assert [(g.id, g.state) for g in result] == [
            ("a", LumaState.COMPLETED),
            ("b", LumaState.RUNNING),
            ("c", LumaState.COMPLETED),
        ]

    @pytest.mark.parametrize("status", [404, 405])
    def test_falls_back_to_single_gets_and_remembers(self, status):
        support = BatchSupport()
        gateway = FakeGateway("abc", batch=False, batch_status=status)
        if status == 405:
            original = gateway.__call__

            def gateway(request):
                if request.name == "tasks":
                    raise LumaAPIError(405, "method not allowed")
                return original(request)

        seen, result = run_flow(get_many_flow(["a", "b", "c"], 2, support), gateway)
        assert _calls(seen) == [
            ("tasks", ["a", "b"]),
            ("get", "/luma/generations/a"),
            ("get", "/luma/generations/b"),
            ("get", "/luma/generations/c"),
        ]
        assert [(g.id, g.state) for g in result] == [(i, LumaState.RUNNING) for i in "abc"]
        assert support.available is False

        # The next call on the same hook does not try the batch route again.
        seen, _ = run_flow(get_many_flow(["a"], 2, support), gateway)
        assert _calls(seen) == [("get", "/luma/generations/a")]

    def test_known_support_skips_probe(self):
        seen, result = run_flow(get_many_flow(["a"], 5, BatchSupport(available=True)), FakeGateway("a"))
        assert _calls(seen) == [("tasks", ["a"])]
        assert result[0].id == "a"

    @pytest.mark.parametrize(
        "error",
        [
            LumaServerError(500, "boom"),
            LumaAuthError(401, "no"),
            LumaNotFoundError(400, "task_not_exist", code="task_not_exist"),
        ],
    )
    def test_other_batch_errors_propagate(self, error):
        support = BatchSupport()

        def gateway(request):
            raise error

        with pytest.raises(type(error)) as info:
            run_flow(get_many_flow(["a"], 5, support), gateway)
        assert info.value is error
        assert support.available is None

    def test_unknown_id_raises_not_found_by_default(self):
        with pytest.raises(LumaNotFoundError):
            run_flow(get_many_flow(["a", "zz"], 5, BatchSupport()), FakeGateway("a"))

    def test_skip_missing_leaves_unknown_ids_out(self):
        seen, result = run_flow(
            get_many_flow(["zz", "a"], 5, BatchSupport(), skip_missing=True), FakeGateway("a")
        )
        assert _calls(seen) == [("tasks", ["zz", "a"]), ("get", "/luma/generations/zz")]
        assert [g.id for g in result] == ["a"]

    def test_empty_ids_make_no_request(self):
        assert run_flow(get_many_flow([], 5, BatchSupport()), FakeGateway("")) == ([], [])

    def test_batch_answer_with_newapi_wrapper(self, load_fixture):
        payload = load_fixture("tasks_newapi_wrapper")

        def gateway(request):
            return request.parse(payload)

        seen, result = run_flow(
            get_many_flow(["9d4b7516-77e5-481a-b015-48313946f33b"], 5, BatchSupport()), gateway
        )
        assert len(seen) == 1
        assert (result[0].id, result[0].state) == ("9d4b7516-77e5-481a-b015-48313946f33b", LumaState.RUNNING)


class TestSimpleFlows:
    def test_submit_flow(self, load_fixture):
        body = build_generation_body("cat dance", model="ray-2")
        seen, gen = run_flow(submit_flow(body), lambda r: r.parse(load_fixture("submit_v98store")))
        (req,) = seen
        assert (req.name, req.method, req.path, req.json, req.idempotent) == (
            "submit",
            "POST",
            "/luma/generations",
            {"user_prompt": "cat dance", "model_name": "ray-v2"},
            False,
        )
        assert gen.id == "4665a07c-7641-4809-a133-10786201bb56"

    def test_extend_flow(self, load_fixture):
        seen, gen = run_flow(
            extend_flow("4665a07c", {"user_prompt": "add cat"}),
            lambda r: r.parse(load_fixture("extend_v98store")),
        )
        assert (seen[0].method, seen[0].path, seen[0].idempotent) == (
            "POST",
            "/luma/generations/4665a07c/extend",
            False,
        )
        assert gen.id == "749d328e-4fd0-43a8-8c89-32394d60da69"

    def test_get_flow(self, load_fixture):
        seen, gen = run_flow(get_flow("abc"), lambda r: r.parse(load_fixture("get_completed_apifox")))
        assert (seen[0].method, seen[0].path) == ("GET", "/luma/generations/abc")
        assert gen.state is LumaState.COMPLETED


class TestDownloadUrlFlow:
    def test_url(self, load_fixture):
        payload = load_fixture("download_video_url")
        seen, url = run_flow(download_url_flow("abc"), lambda r: payload)
        assert (seen[0].method, seen[0].path) == ("GET", "/luma/generations/abc/download_video_url")
        assert url == payload["url"]
        assert url.startswith("https://dc53a917a6f427706a8ca3ecc7d70ea4.r2.cloudflarestorage.com/")

    @pytest.mark.parametrize("status", [404, 405])
    def test_not_offered(self, status):
        def gateway(request):
            raise (LumaNotFoundError if status == 404 else LumaAPIError)(status, "nope")

        assert run_flow(download_url_flow("abc"), gateway)[1] is None

    @pytest.mark.parametrize("payload", [{"url": ""}, {}, {"url": None}, ["x"], "https://x"])
    def test_no_usable_url(self, payload):
        assert run_flow(download_url_flow("abc"), lambda r: payload)[1] is None

    @pytest.mark.parametrize("error", [LumaServerError(500, "boom"), LumaAuthError(401, "no")])
    def test_other_errors_propagate(self, error):
        def gateway(request):
            raise error

        with pytest.raises(type(error)):
            run_flow(download_url_flow("abc"), gateway)


class TestProbeFlow:
    def _probe(self, outcome):
        def gateway(request):
            assert (request.method, request.path, request.retry) == (
                "GET",
                f"/luma/generations/{PROBE_ID}",
                False,
            )
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome

        return run_flow(probe_flow(), gateway)[1]

    def test_auth_error(self):
        ok, message = self._probe(LumaAuthError(401, "无效的令牌"))
        assert ok is False
        assert message == "Bad API key (HTTP 401): 无效的令牌"

    def test_quota_is_auth_error(self):
        ok, message = self._probe(LumaAuthError(403, "user quota is not enough"))
        assert (ok, message.startswith("Bad API key (HTTP 403)")) == (False, True)

    @pytest.mark.parametrize(
        "error",
        [
            LumaNotFoundError(404, "not found"),
            LumaNotFoundError(400, "task_not_exist", code="task_not_exist"),
        ],
    )
    def test_not_found_means_key_accepted(self, error):
        ok, message = self._probe(error)
        assert ok is True
        assert "accepted the API key" in message

    def test_success_body_also_ok(self):
        assert self._probe({"id": PROBE_ID, "state": "pending"})[0] is True

    def test_transport(self):
        ok, message = self._probe(LumaTransportError("connection refused", sent=False))
        assert ok is False
        assert message == "Gateway unreachable: connection refused"
        assert "unreachable" in message

    def test_other_api_error(self):
        assert self._probe(LumaServerError(503, "no channel")) == (
            False,
            "Gateway answered HTTP 503: no channel",
        )
