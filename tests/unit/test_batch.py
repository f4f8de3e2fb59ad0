"""The batch building blocks without sockets: prompt validation, scopes, outcomes, the thread loop, the gate."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from luma_provider import api, batch
from luma_provider.concurrency import arun_bounded, run_bounded
from luma_provider.exceptions import LumaError, LumaNotStartedError, LumaValidationError
from luma_provider.models import LumaGeneration, LumaState

SHARED = {name: None for name in api.OPTION_NAMES}


class TestPromptOptions:
    def test_strings_and_dicts_with_overrides(self):
        built = batch.prompt_options(
            ["plain", {"prompt": "tall", "aspect_ratio": "9:16"}, {"prompt": "kept", "aspect_ratio": None}],
            {**SHARED, "aspect_ratio": "1:1", "loop": True},
            flavour="gateway",
        )
        assert [o.prompt for o in built] == ["plain", "tall", "kept"]
        assert [o.body()["aspect_ratio"] for o in built] == ["1:1", "9:16", "1:1"]
        assert all(o.body()["loop"] is True for o in built)

    def test_official_flavour_uses_official_fields(self):
        (opts,) = batch.prompt_options([{"prompt": "a", "duration": 9}], SHARED, flavour="official")
        assert opts.body()["duration"] == "9s" and opts.body()["model"] == "ray-2"

    @pytest.mark.parametrize(
        ("prompts", "field", "words"),
        [
            (["ok", {"prompt": "x", "aspect_ratio": "2:1"}], "prompts[1].aspect_ratio", "16:9"),
            ([{"prompt": "x", "aspect": "1:1"}], "prompts[0].aspect", "allowed: prompt, aspect_ratio"),
            (["ok", 3], "prompts[1]", "got int"),
            (["ok", "  "], "prompts[1].prompt", ""),
            ([{"prompt": "x", "expand_prompt": True}], "prompts[0].expand_prompt", "official"),
            ([], "prompts", "non-empty"),
            ("one string", "prompts", "non-empty"),
            ({"prompt": "a dict"}, "prompts", "non-empty"),
            (None, "prompts", "non-empty"),
        ],
    )
    def test_errors_name_the_prompt_and_field(self, prompts, field, words):
        with pytest.raises(LumaValidationError) as info:
            batch.prompt_options(prompts, SHARED, flavour="official")
        assert info.value.field == field
        assert words in str(info.value)

    def test_too_many_prompts_for_one_task(self):
        with pytest.raises(LumaValidationError, match="at most 1000"):
            batch.prompt_options(["p"] * 1001, SHARED, flavour="gateway")


def test_scopes_tell_repeats_apart_and_ignore_order():
    a, b, a2 = batch.prompt_options(["a", "b", "a"], SHARED, flavour="gateway")
    first = batch.prompt_scopes([a, b, a2])
    assert first[0] != first[2] and first[2] == f"{first[0]}#2"
    assert batch.prompt_scopes([b, a, a2]) == [first[1], first[0], first[2]]


@pytest.mark.parametrize(
    ("size", "chunks"), [(2, [[0, 1], [2, 3], [4]]), (5, [[0, 1, 2, 3, 4]]), (9, [[0, 1, 2, 3, 4]])]
)
def test_chunked(size, chunks):
    assert batch.chunked(list(range(5)), size) == chunks


@pytest.mark.parametrize("size", [0, -1, 1001, 2.5, True, "10"])
def test_chunked_refuses_bad_sizes(size):
    with pytest.raises(LumaValidationError, match="chunk_size"):
        batch.chunked([1], size)


def gen(gen_id: str, state: LumaState, url: str | None = None, reason: str | None = None) -> LumaGeneration:
    return LumaGeneration(id=gen_id, state=state, raw_state=state.value, video_url=url, failure_reason=reason)


IDS = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(5)]


class TestOutcome:
    def submitted(self):
        return [
            batch.Submitted("done", IDS[0]),
            batch.Submitted("broken", IDS[1]),
            batch.Submitted("no url", IDS[2]),
            batch.Submitted("refused", error="LumaBadRequestError: nope"),
            batch.Submitted("vanished", IDS[4]),
            batch.Submitted("unknown outcome", error="timeout", ambiguous=True),
        ]

    def current(self, running: LumaState = LumaState.COMPLETED):
        return {
            IDS[0]: gen(IDS[0], LumaState.COMPLETED, "https://cdn/x.mp4"),
            IDS[1]: gen(IDS[1], LumaState.FAILED, reason="moderation"),
            IDS[2]: gen(IDS[2], running),
        }

    def test_after_the_wait_everything_not_completed_is_failed(self):
        result = batch.outcome(self.submitted(), self.current())
        assert (result["total"], result["completed"], result["failed"], result["pending"]) == (6, 1, 5, 0)
        states = [(e["state"], e["failure_reason"]) for e in result["prompts"]]
        assert states == [
            ("completed", None),
            ("failed", "moderation"),
            ("no_result", "completed without a result URL"),
            ("not_submitted", "LumaBadRequestError: nope"),
            ("missing", "the gateway no longer knows this generation"),
            ("not_submitted", "timeout"),
        ]
        assert result["prompts"][0]["generation"]["video_url"] == "https://cdn/x.mp4"
        assert [e["generation"] for e in result["prompts"][1:]] == [None] * 5
        assert result["prompts"][5]["ambiguous_submit"] is True

    def test_without_the_wait_running_ones_are_pending(self):
        result = batch.outcome(self.submitted(), self.current(LumaState.RUNNING), finished=False)
        assert (result["completed"], result["failed"], result["pending"]) == (1, 4, 1)
        assert result["prompts"][2]["state"] == "running"

    def test_failure_message_lists_a_few_then_counts(self):
        many = [batch.Submitted(f"prompt {i}", error="E: no") for i in range(13)]
        message = batch.failure_message(batch.outcome(many, {}))
        assert message.startswith("13 of 13 prompts did not complete: 'prompt 0': E: no;")
        assert "'prompt 9'" in message and "'prompt 10'" not in message
        assert message.endswith("and 3 more")

    def test_completed_generations_of_a_batch_result(self):
        result = batch.outcome(self.submitted(), self.current())
        assert [g["id"] for g in batch.completed_generations(result)] == [IDS[0]]
        assert batch.completed_generations({"id": IDS[0]}) is None
        assert batch.completed_generations([IDS[0]]) is None
        assert (
            batch.completed_generations({"total": 1, "prompts": [{"state": "completed", "generation": 7}]})
            == []
        )

    def test_submitted_round_trip_refuses_a_bad_id(self):
        item = batch.Submitted("p", IDS[0])
        assert batch.Submitted.from_dict(item.to_dict()) == item
        with pytest.raises(LumaValidationError):
            batch.Submitted.from_dict({"prompt": "p", "generation_id": "../../etc"})


class TestRunBounded:
    """``run_bounded`` (threads) and ``arun_bounded`` (asyncio) keep one contract."""

    @pytest.fixture(params=["threads", "asyncio"])
    def run(self, request):
        if request.param == "threads":
            return run_bounded

        def run_async(items, work, **kwargs):
            async def awork(item):
                await asyncio.sleep(0)
                return work(item)

            return asyncio.run(arun_bounded(items, awork, **kwargs))

        return run_async

    def test_results_in_input_order_and_the_bound_holds(self, run):
        lock = threading.Lock()
        running = peak = 0

        def work(n: int) -> int:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
            time.sleep(0.01 * (n % 3))
            with lock:
                running -= 1
            return n * n

        assert run(list(range(20)), work, max_workers=3) == [n * n for n in range(20)]
        assert peak == (3 if run is run_bounded else 1)  # asyncio: sleep blocks the loop

    def test_an_error_stops_the_items_not_started(self, run):
        def work(n: int) -> int:
            if n == 2:
                raise LumaError("boom")
            return n

        results = run(list(range(10)), work, max_workers=1)
        assert results[:2] == [0, 1]
        assert isinstance(results[2], LumaError)
        assert all(isinstance(r, LumaNotStartedError) for r in results[3:])

    def test_errors_that_do_not_stop(self, run):
        results = run([1, 0, 2], lambda n: 2 // n, max_workers=2, stop_on=lambda err: False)
        assert results[0] == 2 and results[2] == 1 and isinstance(results[1], ZeroDivisionError)

    def test_a_kill_propagates(self, run):
        class Kill(BaseException):  # like SystemExit, without asyncio's special handling of it
            pass

        def work(n: int) -> int:
            raise Kill

        with pytest.raises(Kill):
            run([1, 2, 3], work, max_workers=2)

    def test_async_bound_holds_while_awaiting(self):
        running = peak = 0

        async def work(n: int) -> int:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.001 * (n % 3))
            running -= 1
            return -n

        results = asyncio.run(arun_bounded(list(range(20)), work, max_workers=4))
        assert results == [-n for n in range(20)] and peak == 4

    def test_async_cancellation_cancels_every_worker(self):
        started: list[int] = []

        async def work(n: int) -> int:
            started.append(n)
            await asyncio.sleep(60)
            return n

        async def main() -> None:
            task = asyncio.create_task(arun_bounded(list(range(10)), work, max_workers=3))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert started == [0, 1, 2]
            assert len(asyncio.all_tasks()) == 1  # only main: no worker left behind

        asyncio.run(main())


class TestRateGate:
    def test_a_hold_delays_everyone_and_never_shrinks(self):
        now = [100.0]
        gate = api.RateGate(clock=lambda: now[0])
        assert gate.delay() == 0
        gate.hold(2.0)
        gate.hold(0.5)  # a shorter hint does not reopen the gate early
        assert gate.delay() == 2.0 and gate.holds == 2
        now[0] = 101.5
        assert gate.delay() == 0.5
        now[0] = 103
        assert gate.delay() == 0

    def test_a_hostile_hint_is_capped(self):
        gate = api.RateGate(clock=lambda: 0.0)
        gate.hold(10**9)
        assert gate.delay() == api.MAX_RETRY_AFTER
        gate2 = api.RateGate(clock=lambda: 0.0)
        gate2.hold(-5)
        assert gate2.delay() == 0

    def test_pause_for_uses_the_hint_else_the_shortest_backoff(self):
        from luma_provider.exceptions import LumaRateLimitError

        policy = api.RetryPolicy(initial_wait=1.0)
        assert policy.pause_for(LumaRateLimitError(429, "slow", retry_after=3.0)) == 3.0
        assert policy.pause_for(LumaRateLimitError(429, "slow")) == 0.5


class TestJudge:
    def result(self, submitted):
        return batch.outcome(submitted, {IDS[0]: gen(IDS[0], LumaState.COMPLETED, "https://cdn/a.mp4")})

    def test_an_unknown_outcome_fails_without_resubmitting(self):
        from luma_provider.exceptions import LumaAmbiguousSubmitError

        items = [batch.Submitted("a", IDS[0]), batch.Submitted("b", error="timeout", ambiguous=True)]
        error = batch.judge(self.result(items), items, max_failed_fraction=1.0)
        assert isinstance(error, LumaAmbiguousSubmitError)
        assert (
            batch.judge(self.result(items), items, max_failed_fraction=1.0, ambiguous_submit="retry") is None
        )

    def test_passing_submit_errors_fail_only_while_retries_remain(self):
        items = [batch.Submitted("a", IDS[0]), batch.Submitted("b", error="503", retryable=True)]
        error = batch.judge(self.result(items), items, max_failed_fraction=1.0, last_try=False)
        assert error is not None and "retry submits only those" in str(error)
        assert batch.judge(self.result(items), items, max_failed_fraction=1.0, last_try=True) is None

    def test_a_refused_prompt_counts_against_the_fraction_only(self):
        items = [batch.Submitted("a", IDS[0]), batch.Submitted("b", error="400", retryable=False)]
        assert batch.judge(self.result(items), items, max_failed_fraction=0.5, last_try=False) is None
        error = batch.judge(self.result(items), items, max_failed_fraction=0.4, last_try=False)
        assert error is not None and "max_failed_fraction=0.4" in str(error)

    def test_submitted_of_classifies_errors(self):
        from luma_provider.exceptions import (
            LumaAmbiguousSubmitError,
            LumaBadRequestError,
            LumaServerError,
        )

        (opts,) = batch.prompt_options(["p"], SHARED, flavour="gateway")
        assert batch.Submitted.of(opts, LumaServerError(500, "x")).retryable is True
        assert batch.Submitted.of(opts, LumaNotStartedError("stopped")).retryable is True
        assert batch.Submitted.of(opts, LumaBadRequestError(400, "x")).retryable is False
        ambiguous = batch.Submitted.of(opts, LumaAmbiguousSubmitError("x"))
        assert (ambiguous.ambiguous, ambiguous.retryable) == (True, False)

    @pytest.mark.parametrize("value", [-0.1, 1.5, True, "0.5", None])
    def test_fraction_is_validated(self, value):
        with pytest.raises(LumaValidationError, match="max_failed_fraction"):
            batch.validate_fraction(value)


class TestSkippedAndTimes:
    def test_skipped_prompts_are_neither_completed_nor_failed(self):
        items = [batch.Submitted("a", IDS[0]), batch.Submitted("b", skipped="budget: max_generations=1")]
        done = {IDS[0]: gen(IDS[0], LumaState.COMPLETED, "https://cdn/a.mp4")}
        result = batch.outcome(items, done)
        assert (result["completed"], result["failed"], result["skipped"], result["pending"]) == (1, 0, 1, 0)
        assert result["prompts"][1]["skip_reason"] == "budget: max_generations=1"
        assert batch.judge(result, items, max_failed_fraction=0.0) is None
        # A sensor downstream reads the same entry back as skipped.
        assert batch.Submitted.from_result_entry(result["prompts"][1]).skipped == "budget: max_generations=1"

    def test_seconds_from_submit_to_the_moment_the_wait_saw_it_finish(self):
        import dataclasses

        created = dataclasses.replace(
            gen(IDS[0], LumaState.COMPLETED, "https://cdn/a.mp4"), created_at="2026-11-25T10:00:00Z"
        )
        epoch = 1795600800.0  # 2026-11-25T10:00:00Z
        result = batch.outcome(
            [batch.Submitted("a", IDS[0])], {IDS[0]: created}, finished_at={IDS[0]: epoch + 42.04}
        )
        assert result["prompts"][0]["seconds"] == 42.0
        unknown = batch.outcome([batch.Submitted("a", IDS[0])], {IDS[0]: created})
        assert "seconds" not in unknown["prompts"][0]
