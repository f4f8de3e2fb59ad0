"""Edges of the sans-IO protocol that mutation testing showed unguarded.

Exception *fields* the callers rely on (``status``, ``retry_after``, ``code``, ``method``,
``path``, ``field``) are asserted, not only the exception type; bounds use literal numbers.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import zlib

import pytest
import tenacity

from luma_provider.api import (
    BatchSupport,
    BodyReader,
    ConnectionSettings,
    GenerationOptions,
    Request,
    RetryPolicy,
    adrive,
    build_generation_body,
    check_download_url,
    decode,
    download_url_flow,
    drive,
    error_for_status,
    error_message,
    extend_flow,
    get_flow,
    get_many_flow,
    loads,
    probe_flow,
    redirect_target,
    refused_address,
    settings_from_connection,
    storage_write_options,
    strict_origin,
    validate_generation_id,
    validate_image_url,
    validate_prompt,
    validate_seconds,
)
from luma_provider.exceptions import (
    LumaAmbiguousSubmitError,
    LumaAPIError,
    LumaConfigError,
    LumaDownloadError,
    LumaNotFoundError,
    LumaRateLimitError,
    LumaResponseTooLargeError,
    LumaServerError,
    LumaTransportError,
    LumaValidationError,
)
from luma_provider.models import LumaGeneration, LumaState

KEY = "sk-EdGe0123456789abcdefgh"
SETTINGS = ConnectionSettings(base_url="https://gw.example", api_key=KEY)
NO_KEY = ConnectionSettings(base_url="https://gw.example", api_key=None)
GET = Request("get", "GET", "/luma/generations/abc")
SUBMIT = Request("submit", "POST", "/luma/generations", {"user_prompt": "x"}, idempotent=False)
IDENTITY = Request("raw", "GET", "/luma/raw")


def conn(host="https://gw.example", *, password=KEY, port=None, extra=None, conn_id="my_conn"):
    return settings_from_connection(conn_id, "luma", host, password, port, extra or {})


# ============================================================================ redaction
class TestRedaction:
    def test_no_key_leaves_text(self):
        assert NO_KEY.redact("abc") == "abc"
        assert NO_KEY.redact("Connection: null") == "Connection: null"
        assert SETTINGS.redact("") == ""

    def test_raw_key(self):
        assert SETTINGS.redact(f"token={KEY}; again {KEY}") == "token=***; again ***"

    def test_repr_and_json_forms(self):
        key = "k'ey\"1"  # repr and JSON escape it differently
        settings = ConnectionSettings(base_url="https://gw.example", api_key=key)
        assert settings.redact(repr(key)) == "'***'"
        assert settings.redact(json.dumps(key)) == '"***"'
        assert settings.redact(key) == "***"

    def test_longest_form_replaced_first(self):
        key = "\\b-key"  # the raw key is a substring of its escaped form
        settings = ConnectionSettings(base_url="https://gw.example", api_key=key)
        assert settings.redact(json.dumps(key)) == '"***"'
        assert settings.redact(repr(key)) == "'***'"

    def test_redact_generation(self):
        gen = LumaGeneration(
            id=KEY, state=LumaState.FAILED, failure_reason=f"bad key {KEY}", prompt=f"{KEY}!", width=640
        )
        red = SETTINGS.redact_generation(gen)
        assert red.id == KEY  # ids are never rewritten
        assert red.failure_reason == "bad key ***"
        assert red.prompt == "***!"
        assert red.width == 640
        assert red.state is LumaState.FAILED

    def test_redact_generation_without_key_is_identity(self):
        gen = LumaGeneration(id="g1", state=LumaState.QUEUED, prompt="p")
        assert NO_KEY.redact_generation(gen) is gen


# ============================================================================ strict_origin
class TestStrictOrigin:
    @pytest.mark.parametrize(
        ("url", "expected"),
        [
            ("http://gw.example/x", ("http", "gw.example", 80)),
            ("https://gw.example/x", ("https", "gw.example", 443)),
            ("https://GW.Example:8443/", ("https", "gw.example", 8443)),
            ("http://GW.EXAMPLE", ("http", "gw.example", 80)),
        ],
    )
    def test_accepted(self, url, expected):
        assert strict_origin(url) == expected

    @pytest.mark.parametrize(
        "url",
        [
            None,
            123,
            "http://a\\b/",
            "http://a b/",
            "http://a\x7fb/",
            "http://a\tb/",
            "http://user@host/",
            "http://user:pw@host/",
            "ftp://host/",
            "http:///path",
            "http://host:99999/",
        ],
    )
    def test_refused(self, url):
        assert strict_origin(url) is None

    def test_length_bound(self):
        base = "https://gw.example/"
        exact = base + "a" * (8192 - len(base))
        assert len(exact) == 8192
        assert strict_origin(exact) == ("https", "gw.example", 443)
        assert strict_origin(exact + "a") is None

    def test_check_download_url(self):
        assert check_download_url("https://cdn.example/v.mp4", SETTINGS) == ("https", "cdn.example", 443)
        with pytest.raises(LumaDownloadError) as info:
            check_download_url("http://u@h/", SETTINGS)
        assert str(info.value) == (
            "Refusing to download from 'http://u@h/': not a plain http(s) URL "
            "(userinfo, backslashes, spaces or a bad port are not accepted)"
        )


# ============================================================================ settings
class TestSettingsEdges:
    def test_extra_not_a_mapping(self):
        with pytest.raises(LumaConfigError) as info:
            settings_from_connection("my_conn", "luma", "https://gw", KEY, None, ["x"])  # type: ignore[arg-type]
        assert str(info.value) == "Connection 'my_conn': extra must be a JSON object"

    def test_missing_host_message(self):
        with pytest.raises(LumaConfigError) as info:
            conn(" / ")
        assert str(info.value) == (
            "Connection 'my_conn' has no host; set it to the gateway base URL, e.g. https://gateway.example"
        )

    def test_only_slashes_stripped_from_host(self):
        assert conn("https://gwX/").base_url == "https://gwX"
        assert conn("https://gw.example//").base_url == "https://gw.example"

    def test_invalid_port_message(self):
        with pytest.raises(LumaConfigError) as info:
            conn("https://gw.example:99999")
        assert str(info.value) == "Connection 'my_conn': host 'https://gw.example:99999' has an invalid port"

    def test_userinfo_host_message(self):
        with pytest.raises(LumaConfigError) as info:
            conn("https://user@gw.example")
        assert str(info.value) == (
            "Connection 'my_conn': host 'https://user@gw.example' is not a plain http(s) URL "
            "(no user:password@, backslashes or spaces)"
        )

    def test_scheme_assumed(self):
        assumed = conn("gw.example")
        assert assumed.base_url == "https://gw.example"
        assert assumed.scheme_assumed is True
        assert conn("https://gw.example").scheme_assumed is False
        assert conn("http://gw.example").scheme_assumed is False

    @pytest.mark.parametrize(
        ("prefix", "expected"), [("/proX/", "/proX"), ("Xpro", "/Xpro"), ("//vip//", "/vip"), ("  ", "")]
    )
    def test_path_prefix(self, prefix, expected):
        assert conn(extra={"path_prefix": prefix}).path_prefix == expected

    @pytest.mark.parametrize(
        ("extra", "attr", "value"),
        [
            ({"max_retries": 0}, "max_retries", 0),
            ({"batch_size": 1}, "batch_size", 1),
            ({"timeout": 0.001}, "timeout", 0.001),
            ({"timeout": "2.5"}, "timeout", 2.5),
            ({"verify_ssl": "no"}, "verify_ssl", False),
        ],
    )
    def test_lowest_accepted_values(self, extra, attr, value):
        assert getattr(conn(extra=extra), attr) == value

    @pytest.mark.parametrize("extra", [{"timeout": True}, {"max_retries": False}, {"batch_size": True}])
    def test_bools_are_not_numbers(self, extra):
        (name,) = extra
        with pytest.raises(LumaConfigError) as info:
            conn(extra=extra)
        assert str(info.value) == (
            f"Connection 'my_conn': extra field {name!r} has invalid value {extra[name]!r}"
        )

    @pytest.mark.parametrize("value", ["inf", "nan", float("inf")])
    def test_non_finite_message(self, value):
        with pytest.raises(LumaConfigError) as info:
            conn(extra={"timeout": value})
        assert str(info.value) == "Connection 'my_conn': extra field 'timeout' must be a finite number"

    def test_below_minimum_message(self):
        with pytest.raises(LumaConfigError) as info:
            conn(extra={"batch_size": 0})
        assert str(info.value) == "Connection 'my_conn': extra field 'batch_size' must be >= 1, got 0"

    @pytest.mark.parametrize("key", ["sk bad", "sk\x7fbad", "sk-ké", "sk\x01x"])
    def test_bad_key_message(self, key):
        with pytest.raises(LumaConfigError) as info:
            conn(password=key)
        assert str(info.value) == (
            "Connection 'my_conn': the API key (password) contains spaces, control or non-ASCII "
            "characters; paste it again (value not shown)"
        )

    def test_key_with_punctuation_accepted(self):
        assert conn(password="  sk-a~b!c  ").api_key == "sk-a~b!c"


# ============================================================================ validation
class TestValidationEdges:
    def test_generation_id_message(self):
        with pytest.raises(LumaValidationError) as info:
            validate_generation_id("a/b", "task_id")
        assert info.value.field == "task_id"
        assert str(info.value) == (
            "Invalid 'task_id': expected a Luma generation id (up to 128 letters, digits, '-', '_', '.', "
            "':'; no '..'), got 'a/b'"
        )

    def test_short_bound(self):
        exact = "/" + "a" * 57  # repr is 60 characters: shown whole
        with pytest.raises(LumaValidationError) as info:
            validate_generation_id(exact)
        assert str(info.value).endswith(f"got {exact!r}")
        longer = "/" + "a" * 58  # repr is 61 characters: clipped
        with pytest.raises(LumaValidationError) as info:
            validate_generation_id(longer)
        assert str(info.value).endswith(f"got {repr(longer)[:60]}...")

    @pytest.mark.parametrize(
        ("value", "expected"),
        [("5", 5.0), (0.1, 0.1), (2592000, 2592000.0), (7, 7.0)],
    )
    def test_seconds_accepted(self, value, expected):
        assert validate_seconds(value, "poll_interval") == expected

    def test_seconds_custom_minimum(self):
        assert validate_seconds(0, "timeout", minimum=0) == 0.0

    @pytest.mark.parametrize("value", [0.09, 2592000.5, True, "abc", None, float("nan"), float("inf"), [1]])
    def test_seconds_refused(self, value):
        with pytest.raises(LumaValidationError) as info:
            validate_seconds(value, "poll_interval")
        assert info.value.field == "poll_interval"
        assert str(info.value) == (
            f"Invalid 'poll_interval': must be a number of seconds between 0.1 and 2.592e+06, got {value!r}"
        )

    def test_prompt_message(self):
        with pytest.raises(LumaValidationError) as info:
            validate_prompt("   ", "text")
        assert info.value.field == "text"
        assert str(info.value) == "Invalid 'text': must be a non-empty string"

    def test_prompt_length_bound(self):
        assert validate_prompt("p" * 5000) == "p" * 5000
        with pytest.raises(LumaValidationError) as info:
            validate_prompt("p" * 5001)
        assert str(info.value) == "Invalid 'prompt': is 5001 characters; the maximum is 5000"

    @pytest.mark.parametrize(
        "url",
        [
            "http://images.example/a.png",
            "https://images.example/a.png",
            "data:image/png;base64,aGVs\nbG8=",
            "data:image/png;base64,aGVs bG8=\r\n",
            "data:image/png;base64,aGVsbA=\n=",
            "data:image/svg+xml;base64,aGVsbG8=",
        ],
    )
    def test_image_url_accepted(self, url):
        assert validate_image_url(f"  {url}  ", "image_url") == url.strip()

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            (None, "must be an http(s) URL or a data:image/...;base64, URI"),
            (5, "must be an http(s) URL or a data:image/...;base64, URI"),
            ("  ", "must be an http(s) URL or a data:image/...;base64, URI"),
            ("data:text/plain;base64,aGVsbG8=", "data URIs must look like data:image/<format>;base64,<data>"),
            ("data:image/png;base64,aGVs!!bG8=", "the data URI does not contain valid base64"),
            ("data:image/png;base64,", "the data URI holds no image data"),
            (
                "images.example/a.png",
                "must be an http(s) URL or a data:image/...;base64, URI, got scheme '(none)'",
            ),
            (
                "ftp://images.example/a.png",
                "must be an http(s) URL or a data:image/...;base64, URI, got scheme 'ftp'",
            ),
            ("https:///a.png", "must be an http(s) URL or a data:image/...;base64, URI, got scheme 'https'"),
        ],
    )
    def test_image_url_refused(self, value, message):
        with pytest.raises(LumaValidationError) as info:
            validate_image_url(value, "image_end_url")
        assert info.value.field == "image_end_url"
        assert str(info.value) == f"Invalid 'image_end_url': {message}"

    def test_build_messages(self):
        with pytest.raises(LumaValidationError) as info:
            build_generation_body("p", aspect_ratio="2:1")
        assert str(info.value) == "Invalid 'aspect_ratio': '2:1' is not one of 1:1, 4:3, 3:4, 16:9, 9:16"
        with pytest.raises(LumaValidationError) as info:
            build_generation_body("p", model="ray-9")
        assert (
            str(info.value) == "Invalid 'model': 'ray-9' is not one of ray-2, ray-1-6, ray-v1, ray-v2, ray-v3"
        )
        with pytest.raises(LumaValidationError) as info:
            build_generation_body("p", extra=["resolution"])
        assert info.value.field == "extra"
        assert str(info.value) == "Invalid 'extra': must be a dict, got list"
        with pytest.raises(LumaValidationError) as info:
            build_generation_body("p", loop="maybe")
        assert info.value.field == "loop"
        assert str(info.value) == "Invalid 'loop': must be true or false, got 'maybe'"

    def test_empty_image_urls_dropped(self):
        options = GenerationOptions.build("p", image_url="", image_end_url="")
        assert options.image_url is None
        assert options.image_end_url is None
        assert options.body() == {"user_prompt": "p"}

    def test_plain_http_keyframes(self):
        body = build_generation_body(
            "p", image_url="http://img.example/a.png", image_end_url="http://img.example/b.png"
        )
        assert body == {
            "user_prompt": "p",
            "image_url": "http://img.example/a.png",
            "image_end_url": "http://img.example/b.png",
        }


# ============================================================================ flows
def answer(flow, answers):
    """Drive ``flow`` with a scripted transport; returns (result, requests seen)."""
    seen = []

    def send(request):
        seen.append(request)
        reply = answers.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return drive(flow, send), seen


class TestFlows:
    def test_extend_request(self):
        request = next(extend_flow("g1", {"user_prompt": "more"}))
        assert (request.name, request.method, request.path) == (
            "extend",
            "POST",
            "/luma/generations/g1/extend",
        )
        assert request.json == {"user_prompt": "more"}
        assert request.idempotent is False

    def test_download_url_request(self):
        result, seen = answer(download_url_flow("g1"), [{"url": "https://cdn/x.mp4"}])
        assert result == "https://cdn/x.mp4"
        assert (seen[0].name, seen[0].method, seen[0].path) == (
            "download_url",
            "GET",
            "/luma/generations/g1/download_video_url",
        )

    def test_probe_request_and_success(self):
        result, seen = answer(probe_flow(), [LumaNotFoundError(404, "nope")])
        assert result == (True, "Connection works: the gateway accepted the API key.")
        assert (seen[0].name, seen[0].retry) == ("probe", False)

    def test_task_not_exist_on_batch_route_is_not_a_missing_route(self):
        err = LumaNotFoundError(404, "no such task", code="task_not_exist")
        with pytest.raises(LumaNotFoundError) as info:
            answer(get_many_flow(["g1"], 10, BatchSupport()), [err])
        assert info.value is err

    def test_missing_route_logged(self, caplog):
        gen = LumaGeneration(id="g1", state=LumaState.QUEUED)
        support = BatchSupport()
        with caplog.at_level(logging.INFO, logger="luma_provider.api"):
            result, seen = answer(get_many_flow(["g1"], 10, support), [LumaAPIError(405, "no"), gen])
        assert result == [gen]
        assert [r.name for r in seen] == ["tasks", "get"]
        assert support.available is False
        assert (
            "Gateway has no batch status route (HTTP 405); using one GET per generation." in caplog.messages
        )

    async def test_adrive_with_fallback(self):
        gen = LumaGeneration(id="g2", state=LumaState.RUNNING)
        answers = [LumaAPIError(404, "no route"), LumaNotFoundError(404, "gone"), gen]
        seen = []

        async def asend(request):
            seen.append(request)
            reply = answers.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply

        support = BatchSupport()
        result = await adrive(get_many_flow(["g1", "g2"], 10, support, skip_missing=True), asend)
        assert result == [gen]
        assert [(r.name, r.path) for r in seen] == [
            ("tasks", "/luma/tasks"),
            ("get", "/luma/generations/g1"),
            ("get", "/luma/generations/g2"),
        ]
        assert seen[0].json == {"ids": ["g1", "g2"]}
        assert support.available is False

    async def test_adrive_returns_value_and_raises(self):
        gen = LumaGeneration(id="g1", state=LumaState.QUEUED)

        async def ok(request):
            return [gen]

        assert await adrive(get_many_flow(["g1"], 10, BatchSupport()), ok) == [gen]

        async def auth(request):
            raise LumaAPIError(401, "bad key")

        with pytest.raises(LumaAPIError) as info:
            await adrive(get_many_flow(["g1"], 10, BatchSupport()), auth)
        assert info.value.status == 401


# ============================================================================ decode & errors
class TestDecodeEdges:
    def test_unexpected_shape_names_the_parse_error(self):
        two = json.dumps([{"id": "a", "state": "queued"}, {"id": "b", "state": "queued"}])
        request = next(get_flow("abc"))
        with pytest.raises(LumaTransportError) as info:
            decode(request, 200, {}, two, SETTINGS)
        assert "unexpected response shape (expected one generation, got 2)" in str(info.value)
        assert str(info.value).startswith("GET /luma/generations/abc: ")

    def test_list_results_redacted_item_by_item(self):
        request = Request(
            "mixed",
            "GET",
            "/x",
            parse=lambda p: [LumaGeneration(id="g1", state=LumaState.QUEUED, prompt=p["prompt"]), p["other"]],
        )
        result = decode(request, 200, {}, json.dumps({"prompt": f"leak {KEY}", "other": "plain"}), SETTINGS)
        assert result[0].prompt == "leak ***"
        assert result[1] == "plain"

    def test_excerpt_bound(self):
        exact = "x" * 200
        with pytest.raises(LumaTransportError) as info:
            decode(GET, 200, {}, exact, SETTINGS)
        assert str(info.value).endswith(f"body is not JSON: {exact!r}")
        with pytest.raises(LumaTransportError) as info:
            decode(GET, 200, {}, exact + "y", SETTINGS)
        assert str(info.value).endswith(f"body is not JSON: {exact + '...'!r}")

    def test_excerpt_reads_800_characters_before_redaction(self):
        # 40 keys of 25 characters: the excerpt reads the first 800 characters (32 keys),
        # redacts them, then clips to 200.
        assert len(KEY) == 25
        text = KEY * 40
        with pytest.raises(LumaTransportError) as info:
            decode(GET, 200, {}, text, SETTINGS)
        assert str(info.value).endswith(f"body is not JSON: {'***' * 32!r}")

    def test_key_cut_by_excerpt_is_not_leaked(self):
        # Found by mutation testing: the excerpt was cut, then stripped, then redacted.
        text = " " * 777 + KEY  # after strip() the excerpt is the key minus its last character
        with pytest.raises(LumaTransportError) as info:
            decode(GET, 200, {}, text, SETTINGS)
        assert KEY[:12] not in str(info.value)

    @pytest.mark.parametrize("text", ["NaN", "[Infinity]", "-Infinity"])
    def test_loads_rejects_constants(self, text):
        with pytest.raises(ValueError, match=r"^(-?Infinity|NaN) is not valid JSON$"):
            loads(text)

    def test_loads_numbers(self):
        assert loads('{"a": 1.5, "b": 2}') == {"a": 1.5, "b": 2}
        with pytest.raises(ValueError) as info:
            loads("100000000000000000000e400")
        assert str(info.value) == "number out of range: 10000000000000000000"

    def test_envelope_with_id_is_a_generation(self):
        payload = {"id": "abc", "error": {"message": "stale"}, "code": "fail"}
        assert decode(IDENTITY, 200, {}, json.dumps(payload), SETTINGS) == payload

    @pytest.mark.parametrize(
        "payload",
        [{"code": "success", "data": None}, {"code": "", "data": None}, {"code": "fail", "data": {"x": 1}}],
    )
    def test_not_an_error_envelope(self, payload):
        assert decode(IDENTITY, 200, {}, json.dumps(payload), SETTINGS) == payload

    def test_envelope_fields(self):
        payload = {"code": f"bad-{KEY}"}
        with pytest.raises(LumaAPIError) as info:
            decode(IDENTITY, 200, {}, json.dumps(payload), SETTINGS)
        err = info.value
        assert type(err) is LumaAPIError
        assert (err.status, err.message, err.code, err.method, err.path) == (
            200,
            "",
            "bad-***",
            "GET",
            "/luma/raw",
        )

    def test_envelope_task_not_exist(self):
        payload = {"code": "task_not_exist", "message": "no such task"}
        with pytest.raises(LumaNotFoundError) as info:
            decode(SUBMIT, 200, {}, json.dumps(payload), SETTINGS)
        assert (info.value.code, info.value.method, info.value.path) == (
            "task_not_exist",
            "POST",
            "/luma/generations",
        )


class TestErrorFields:
    def test_503_retry_after(self):
        err = error_for_status(GET, 503, {"Retry-After": "7"}, '{"message": "busy"}', SETTINGS)
        assert type(err) is LumaServerError
        assert (err.status, err.retry_after, err.message, err.method, err.path) == (
            503,
            7.0,
            "busy",
            "GET",
            "/luma/generations/abc",
        )

    def test_429_retry_after_lowercase_header(self):
        err = error_for_status(SUBMIT, 429, {"retry-after": "2.5"}, "", SETTINGS)
        assert type(err) is LumaRateLimitError
        assert (err.retry_after, err.method, err.path, err.message) == (
            2.5,
            "POST",
            "/luma/generations",
            "(empty body)",
        )

    def test_retry_after_capped_and_floored(self):
        assert error_for_status(GET, 500, {"Retry-After": "500"}, "", SETTINGS).retry_after == 120.0
        assert error_for_status(GET, 500, {"Retry-After": "-3"}, "", SETTINGS).retry_after == 0.0
        assert error_for_status(GET, 500, {}, "", SETTINGS).retry_after is None

    def test_unmapped_status_keeps_fields(self):
        err = error_for_status(
            GET, 418, {}, '{"error": {"code": "teapot", "message": "short and stout"}}', SETTINGS
        )
        assert type(err) is LumaAPIError
        assert (err.status, err.code, err.method, err.path, err.message) == (
            418,
            "teapot",
            "GET",
            "/luma/generations/abc",
            "short and stout",
        )

    def test_code_redacted(self):
        err = error_for_status(GET, 400, {}, json.dumps({"error": {"code": f"x-{KEY}"}}), SETTINGS)
        assert err.code == "x-***"
        assert error_for_status(GET, 400, {}, "{}", SETTINGS).code is None

    def test_empty_code_is_none(self):
        assert error_message({"code": ""}, "fallback") == ("fallback", None)

    def test_validation_detail(self):
        detail = [
            "junk",
            {"loc": ["body", "prompt"], "msg": "field required"},
            {"loc": "query", "msg": "bad"},
            {"loc": None, "msg": "odd"},
        ]
        message, _ = error_message({"detail": detail}, "fb")
        assert message == "body.prompt: field required; query: bad; : odd"

    def test_validation_detail_bound(self):
        detail = [{"loc": [f"f{n}"], "msg": "m"} for n in range(25)]
        message, _ = error_message({"detail": detail}, "fb")
        assert message.count(": m") == 20
        assert message.endswith("f19: m")


# ============================================================================ retries
class TestRetryEdges:
    def test_jitter_reaches_full_backoff(self, monkeypatch):
        monkeypatch.setattr(random, "uniform", lambda low, high: high)
        assert RetryPolicy(initial_wait=1.0).wait_seconds(3, None) == 4.0
        monkeypatch.setattr(random, "uniform", lambda low, high: low)
        assert RetryPolicy(initial_wait=1.0).wait_seconds(3, None) == 2.0

    def test_tenacity_sleeps_the_retry_after_hint_and_logs(self, caplog):
        policy = RetryPolicy(max_retries=2)
        sleeps = []
        calls = []

        def call():
            calls.append(1)
            if len(calls) < 3:
                raise error_for_status(GET, 503, {"Retry-After": "7"}, '{"message": "busy"}', SETTINGS)
            return "ok"

        with caplog.at_level(logging.WARNING, logger="luma_provider.api"):
            result = tenacity.Retrying(sleep=sleeps.append, **policy.tenacity_kwargs(GET))(call)
        assert result == "ok"
        assert sleeps == [7.0, 7.0]
        assert caplog.messages == [
            "Luma get attempt 1 failed (Luma gateway returned HTTP 503 on GET /luma/generations/abc: busy); "
            "retrying in 7.0s",
            "Luma get attempt 2 failed (Luma gateway returned HTTP 503 on GET /luma/generations/abc: busy); "
            "retrying in 7.0s",
        ]

    def test_max_retries_zero_is_one_attempt(self):
        policy = RetryPolicy(max_retries=0)
        calls = []

        def call():
            calls.append(1)
            raise LumaServerError(503, "busy", retry_after=0.0)

        with pytest.raises(LumaServerError):
            tenacity.Retrying(sleep=lambda s: None, **policy.tenacity_kwargs(GET))(call)
        assert calls == [1]

    def test_ambiguous_message(self):
        err = RetryPolicy().final_error(SUBMIT, LumaServerError(502, "bad gateway"))
        assert type(err) is LumaAmbiguousSubmitError
        assert str(err) == (
            "Luma submit outcome unknown (Luma gateway returned HTTP 502: bad gateway). The gateway may have "
            "accepted the job and may charge for it, so it is not submitted again (no retry). Look for the "
            "prompt in the gateway's task list or dashboard; if the job is there, wait for it by id "
            "(LumaTaskSensor), otherwise clear the task to submit again."
        )


# ============================================================================ bodies & URLs
def drain(reader, *chunks):
    out = [piece for chunk in chunks for piece in reader.feed(chunk)]
    return out + list(reader.finish())


class TestBodyReader:
    @pytest.mark.parametrize("encoding", [None, "", "identity", " IDENTITY "])
    def test_plain(self, encoding):
        reader = BodyReader(encoding, 100)
        assert drain(reader, b"abc", b"", b"de") == [b"abc", b"de"]
        assert (reader.wire_bytes, reader.size, reader.full) == (5, 5, False)
        assert (reader.limit, reader.truncate, reader.what) == (100, False, "reply")

    @pytest.mark.parametrize(
        ("encoding", "compress"),
        [
            ("gzip", gzip.compress),
            ("x-gzip", gzip.compress),
            (" GZIP ", gzip.compress),
            ("deflate", zlib.compress),
        ],
    )
    def test_compressed_in_bounded_pieces(self, encoding, compress):
        data = bytes(range(256)) * 3000  # 768,000 bytes
        wire = compress(data)
        reader = BodyReader(encoding, 10**6)
        pieces = drain(reader, wire[:100], wire[100:])
        assert b"".join(pieces) == data
        assert max(len(p) for p in pieces) == 256 * 1024
        assert reader.wire_bytes == len(wire)
        assert reader.size == len(data)

    def test_unsupported_encoding(self):
        with pytest.raises(LumaTransportError) as info:
            BodyReader("br", 10, what="video")
        assert str(info.value) == "video: unsupported Content-Encoding 'br'"
        with pytest.raises(LumaTransportError) as info:
            BodyReader("x" * 50, 10)
        assert str(info.value) == f"reply: unsupported Content-Encoding {'x' * 40!r}"

    def test_limit_exact_and_exceeded(self):
        assert b"".join(drain(BodyReader(None, 10), b"0123456789")) == b"0123456789"
        with pytest.raises(LumaResponseTooLargeError) as info:
            drain(BodyReader(None, 10, what="error body"), b"01234", b"567890")
        assert str(info.value) == "error body is larger than the 10-byte cap (decoded); refused"

    def test_gzip_bomb_refused(self):
        with pytest.raises(LumaResponseTooLargeError):
            drain(BodyReader("gzip", 1000), gzip.compress(b"\0" * 100_000))

    def test_truncate(self):
        reader = BodyReader(None, 10, truncate=True)
        assert drain(reader, b"01234567", b"89abcdef", b"more") == [b"01234567", b"89"]
        assert (reader.size, reader.full, reader.wire_bytes) == (10, True, 20)

    def test_truncate_gzip_stops_decoding(self):
        reader = BodyReader("gzip", 10, truncate=True)
        assert b"".join(drain(reader, gzip.compress(b"a" * 1000))) == b"a" * 10
        assert reader.full is True
        assert reader.size == 10

    def test_corrupt(self):
        with pytest.raises(LumaTransportError, match=r"^reply: corrupt compressed body \("):
            drain(BodyReader("gzip", 100), b"not gzip at all")

    def test_gzip_means_gzip_not_zlib(self):
        with pytest.raises(LumaTransportError, match=r"^reply: corrupt compressed body \("):
            drain(BodyReader("gzip", 100), zlib.compress(b"hello"))

    def test_finish_flushes_the_tail(self):
        comp = zlib.compressobj()
        wire = comp.compress(b"hello world") + comp.flush(zlib.Z_SYNC_FLUSH)
        reader = BodyReader("deflate", 100)
        fed = [p for p in reader.feed(wire)]
        assert b"".join(fed + list(reader.finish())) == b"hello world"


class TestAddresses:
    @pytest.mark.parametrize(
        ("addresses", "expected"),
        [
            (["8.8.8.8"], None),
            (["2001:4860:4860::8888"], None),
            (["8.8.8.8", "10.0.0.1"], "10.0.0.1"),
            (["127.0.0.1", "10.0.0.1"], "127.0.0.1"),
            (["fe80::1%eth0"], "fe80::1"),
            (["fe80::1%eth0%x"], "fe80::1"),
            (["::ffff:127.0.0.1"], "127.0.0.1"),
            (["::ffff:8.8.8.8"], None),
            (["224.0.0.1"], "224.0.0.1"),
            (["ff0e::1"], "ff0e::1"),
            (["100.64.0.1"], "100.64.0.1"),
            (["not-an-ip"], "not-an-ip"),
            ([], None),
        ],
    )
    def test_refused_address(self, addresses, expected):
        assert refused_address("host.example", addresses) == expected

    @pytest.mark.parametrize(
        ("location", "expected"),
        [
            ("../d.mp4", "https://cdn.example/d.mp4"),
            ("  /x.mp4  ", "https://cdn.example/x.mp4"),
            ("https://other.example/y", "https://other.example/y"),
        ],
    )
    def test_redirect_target(self, location, expected):
        assert redirect_target("https://cdn.example/b/c.mp4", location) == expected

    @pytest.mark.parametrize("location", [None, "", "   ", 5])
    def test_redirect_without_location(self, location):
        with pytest.raises(LumaDownloadError) as info:
            redirect_target("https://cdn.example/", location)
        assert str(info.value) == "Download redirect without a Location header"


@pytest.mark.parametrize(
    ("protocol", "name", "expected"),
    [
        ("s3", "0b9c.mp4", {"ContentType": "video/mp4"}),
        (("s3", "s3a"), "index.html", {"ContentType": "text/html; charset=utf-8"}),
        ("s3", "manifest.json", {"ContentType": "application/json"}),
        ("gs", "THUMB.JPG", {"content_type": "image/jpeg"}),
        ("file", "0b9c.mp4", {}),  # a local file has no stored type
        ("s3", "no-extension", {}),
        ("s3", "tool.exe", {}),
    ],
)
def test_storage_write_options_set_the_content_type_where_the_store_keeps_it(protocol, name, expected):
    assert storage_write_options(protocol, name) == expected
