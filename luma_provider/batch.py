"""Many prompts in one task instance: validate all, submit a few at a time, pay once for each.

Airflow costs ~0.7 CPU-s per task instance, so thousands of prompts as one task each spend
more on Airflow than on Luma. ``LumaGenerateOperator(prompts=[...])`` runs a chunk here:

1. every prompt is validated before any HTTP call (errors name ``prompts[i].<field>``);
2. submits run ``max_concurrent_submits`` at a time through one hook, so one 429 pauses them
   all (``api.RateGate``);
3. each prompt has its own ``GenerationReuse``: its accepted id goes to the task state store
   (and the ledger) as soon as it is accepted, so a retry of a half-done chunk reuses what was
   paid and submits only the rest;
4. the operator then defers once for every id of the chunk and sorts the outcome per prompt.

No Airflow imports: the operator hands in the hook, the store and the reuse settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from luma_provider import api
from luma_provider.concurrency import run_bounded
from luma_provider.exceptions import (
    LumaAmbiguousSubmitError,
    LumaAuthError,
    LumaBadRequestError,
    LumaConfigError,
    LumaError,
    LumaValidationError,
)
from luma_provider.ledger import key_for_request
from luma_provider.models import LumaGeneration, LumaState

if TYPE_CHECKING:
    from luma_provider.hooks.luma import LumaHook
    from luma_provider.reuse import GenerationReuse

#: The most prompts one task takes: its XCom, its trigger and its log stay a readable size.
MAX_PROMPTS_PER_TASK = 1000
#: Keys a prompt entry may have: the prompt, every generation option, and ``extra``.
PROMPT_KEYS = ("prompt", *api.OPTION_NAMES, "extra")
#: Outcome states of a prompt beyond Luma's own: never submitted (or its outcome unknown),
#: completed without a result URL, unknown to the gateway when the batch ended.
NOT_SUBMITTED = "not_submitted"
NO_RESULT = "no_result"
MISSING = "missing"
#: Deliberately not submitted (a budget); neither completed nor failed.
SKIPPED = "skipped"
#: XCom key of a batch's result when its task fails (on success it is the return value).
XCOM_RESULT = "batch_result"
#: Prompts listed in a failure message (the rest are counted).
LISTED_FAILURES = 10


def prompt_options(
    prompts: Any, shared: Mapping[str, Any], *, flavour: str, extra: Mapping[str, Any] | None = None
) -> list[api.GenerationOptions]:
    """Validate every prompt of a batch before any HTTP call.

    :param prompts: a list of prompt strings or dicts with ``prompt`` and any option; a dict's
        non-None values override ``shared``.
    :param shared: the operator's options (``api.OPTION_NAMES``), the default for every prompt.
    :raises LumaValidationError: naming ``prompts[i].<field>`` and the allowed values.
    """
    if isinstance(prompts, (str, bytes, Mapping)) or not isinstance(prompts, Sequence) or not prompts:
        raise LumaValidationError("prompts", "must be a non-empty list of prompt strings or dicts")
    if len(prompts) > MAX_PROMPTS_PER_TASK:
        raise LumaValidationError(
            "prompts",
            f"has {len(prompts)} entries; one task takes at most {MAX_PROMPTS_PER_TASK} "
            "(split them into chunks, see luma_provider.batch.chunked)",
        )
    built = []
    for index, item in enumerate(prompts):
        where = f"prompts[{index}]"
        if isinstance(item, str):
            row: dict[str, Any] = {"prompt": item}
        elif isinstance(item, Mapping):
            unknown = sorted(str(k) for k in item if k not in PROMPT_KEYS)
            if unknown:
                raise LumaValidationError(
                    f"{where}.{unknown[0]}", f"is not a prompt option; allowed: {', '.join(PROMPT_KEYS)}"
                )
            row = {k: v for k, v in item.items() if v is not None}
        else:
            raise LumaValidationError(where, f"must be a prompt string or a dict, got {type(item).__name__}")
        merged = {**{k: v for k, v in shared.items() if v is not None}, **row}
        merged.setdefault("extra", extra)
        try:
            built.append(api.GenerationOptions.build(merged.pop("prompt", None), flavour=flavour, **merged))
        except LumaValidationError as err:
            raise LumaValidationError(f"{where}.{err.field}", err.detail) from None
    return built


def chunked(rows: Sequence[Any], size: int) -> list[list[Any]]:
    """``rows`` in consecutive chunks of at most ``size`` (for mapping a batch operator)."""
    api.validate_count(size, "chunk_size", low=1, high=MAX_PROMPTS_PER_TASK)
    return [list(rows[i : i + size]) for i in range(0, len(rows), size)]


def _stops_the_batch(err: Exception) -> bool:
    # A bad key or connection fails every other submit too: stop instead of sending them.
    return isinstance(err, (LumaAuthError, LumaConfigError))


def prompt_scopes(options: Sequence[api.GenerationOptions]) -> list[str]:
    """One stable key per prompt: its request digest, with ``#n`` for the n-th repeat of it.

    Repeats are separate videos (a batch may ask for several takes of one prompt), and the
    scope survives reordering of the other prompts between tries.
    """
    seen: dict[str, int] = {}
    scopes = []
    for opts in options:
        digest = key_for_request(opts.body())
        seen[digest] = seen.get(digest, 0) + 1
        scopes.append(digest if seen[digest] == 1 else f"{digest}#{seen[digest]}")
    return scopes


def submit_all(
    hook: LumaHook,
    jobs: Sequence[tuple[api.GenerationOptions, GenerationReuse]],
    *,
    max_concurrent: int,
    log: Any,
) -> list[LumaGeneration | Exception]:
    """Submit every prompt once (or reuse what an earlier try or run paid for), a few at a time.

    :param jobs: each prompt's options and its pay-once bookkeeping.
    :return: per prompt, in order, the accepted generation or the error that stopped it.
    """
    _ = hook.settings, hook.session  # connection lookup and session made once, on this thread
    _look_up_recorded(hook, [reuse for _, reuse in jobs], max_concurrent, log)

    def submit(job: tuple[api.GenerationOptions, GenerationReuse]) -> LumaGeneration:
        opts, reuse = job
        return reuse.submit_once(lambda: hook.submit_generation(opts))

    results = run_bounded(
        jobs, submit, max_workers=max_concurrent, stop_on=_stops_the_batch, name="luma-submit"
    )
    accepted = sum(isinstance(r, LumaGeneration) for r in results)
    log.info(
        "Batch of %d prompts: %d accepted or reused, %d not (%d rate-limit pauses)",
        len(jobs),
        accepted,
        len(jobs) - accepted,
        hook.rate_gate.holds,
    )
    return results


def _look_up_recorded(hook: LumaHook, reuses: Sequence[GenerationReuse], concurrency: int, log: Any) -> None:
    """One status lookup for every id earlier tries or runs recorded, instead of a GET per prompt.

    A retried chunk or a re-run with an idempotency key checks up to ``len(reuses)`` ids; on a
    gateway with ``POST /luma/tasks`` that is one request per 100. If the lookup fails, each
    prompt falls back to its own GET.
    """
    found = run_bounded(reuses, lambda r: r.recorded_ids(), max_workers=concurrency, name="luma-reuse")
    wanted = list(dict.fromkeys(i for ids in found if isinstance(ids, list) for i in ids))
    if not wanted:
        return
    try:
        current = {g.id: g for g in hook.get_generations(wanted, skip_missing=True)}
    except LumaError as err:
        log.warning("Could not look up %d recorded generations at once (%s); one by one", len(wanted), err)
        return
    known: dict[str, LumaGeneration | None] = {i: current.get(i) for i in wanted}
    for reuse in reuses:
        reuse.known = known


@dataclass(frozen=True)
class Submitted:
    """What the operator keeps between submitting and the end of the wait (JSON-safe via ``to_dict``)."""

    prompt: str
    generation_id: str | None = None
    error: str | None = None
    ambiguous: bool = False
    #: The submit failed for a reason a later try may not meet (5xx, network, a stopped batch);
    #: False when the gateway refused this very request (400/422) or its outcome is unknown.
    retryable: bool = False
    #: Why the prompt was deliberately not submitted (e.g. ``budget: max_generations=100``).
    skipped: str | None = None

    @classmethod
    def of(cls, options: api.GenerationOptions, result: LumaGeneration | Exception) -> Submitted:
        if isinstance(result, LumaGeneration):
            return cls(options.prompt, generation_id=result.id)
        message = f"{type(result).__name__}: {result}"[: api.MESSAGE_LIMIT]
        ambiguous = isinstance(result, LumaAmbiguousSubmitError)
        refused = isinstance(result, (LumaBadRequestError, LumaValidationError))
        return cls(options.prompt, error=message, ambiguous=ambiguous, retryable=not (ambiguous or refused))

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "generation_id": self.generation_id,
            "error": self.error,
            "ambiguous": self.ambiguous,
            "retryable": self.retryable,
            "skipped": self.skipped,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Submitted:
        return cls(
            prompt=str(data.get("prompt", "")),
            generation_id=_checked_id(data.get("generation_id")),
            error=str(data["error"]) if data.get("error") else None,
            ambiguous=bool(data.get("ambiguous")),
            retryable=bool(data.get("retryable")),
            skipped=str(data["skipped"]) if data.get("skipped") else None,
        )

    @classmethod
    def from_result_entry(cls, entry: Mapping[str, Any]) -> Submitted:
        """Back from a batch result's prompt entry (what a downstream sensor receives)."""
        gen_id = entry.get("generation_id")
        skipped = (
            str(entry["skip_reason"]) if entry.get("state") == SKIPPED and entry.get("skip_reason") else None
        )
        return cls(
            prompt=str(entry.get("prompt", "")),
            generation_id=_checked_id(gen_id),
            error=None if gen_id or skipped else str(entry.get("failure_reason") or "not submitted"),
            ambiguous=bool(entry.get("ambiguous_submit")),
            skipped=skipped,
        )


def _checked_id(gen_id: Any) -> str | None:
    """An id read back from XCom is outside input too: validated, or None when absent."""
    return api.validate_generation_id(gen_id, "generation_id") if gen_id else None


def outcome(
    submitted: Sequence[Submitted],
    current: Mapping[str, LumaGeneration],
    *,
    finished: bool = True,
    finished_at: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """The batch result: one entry per prompt, in order, plus counts.

    A prompt is ``completed`` only when Luma says so *and* there is a result URL. With
    ``finished`` (after the wait) anything else counts as failed; without it, generations still
    queued or dreaming count as ``pending``; a ``skipped`` prompt (budget) is neither.

    :param finished_at: epoch seconds at which the wait saw each id finish; gives each entry
        ``seconds`` from submit to completion (as precise as the poll interval).
    """
    entries = []
    for index, item in enumerate(submitted):
        gen = current.get(item.generation_id or "")
        reason: str | None
        if item.skipped and not item.generation_id:
            state, reason = SKIPPED, None
        elif gen is not None and gen.state == LumaState.COMPLETED and gen.result_url:
            state, reason = "completed", None
        elif gen is not None and not finished and not gen.is_terminal:
            state, reason = gen.state.value, None
        elif gen is not None and gen.state == LumaState.COMPLETED:
            state, reason = NO_RESULT, "completed without a result URL"
        elif gen is not None:
            state = gen.state.value
            reason = gen.failure_reason or f"ended {state}"
        elif item.generation_id:
            state, reason = MISSING, "the gateway no longer knows this generation"
        else:
            state, reason = NOT_SUBMITTED, item.error or "not submitted"
        entry = {
            "index": index,
            "prompt": item.prompt,
            "generation_id": item.generation_id,
            "state": state,
            "failure_reason": reason,
            "ambiguous_submit": item.ambiguous,
            "generation": gen.to_dict() if state == "completed" and gen is not None else None,
        }
        if state == SKIPPED:
            entry["skip_reason"] = item.skipped
        seen = (finished_at or {}).get(item.generation_id or "")
        if gen is not None and seen is not None:
            entry["seconds"] = _seconds_since(gen.created_at, seen)
        entries.append(entry)
    completed = sum(e["state"] == "completed" for e in entries)
    failed = sum(e["failure_reason"] is not None for e in entries)
    skipped = sum(e["state"] == SKIPPED for e in entries)
    return {
        "total": len(entries),
        "completed": completed,
        "failed": failed,
        "skipped": skipped,
        "pending": len(entries) - completed - failed - skipped,
        "prompts": entries,
    }


def _seconds_since(created_at: str | None, until: float) -> float | None:
    import datetime as dt

    try:
        start = dt.datetime.fromisoformat(str(created_at).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None
    return round(until - start, 1) if until >= start else None


def settle(
    hook: LumaHook,
    submitted: Sequence[Submitted],
    *,
    finished: bool,
    log: Any,
    finished_at: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Fetch the current state of every submitted prompt and build the batch result (logged)."""
    ids = [x.generation_id for x in submitted if x.generation_id]
    current = {g.id: g for g in hook.get_generations(ids)} if ids else {}
    result = outcome(submitted, current, finished=finished, finished_at=finished_at)
    log.info(
        "Batch of %d prompts: %d completed, %d failed, %d pending, %d skipped",
        result["total"],
        result["completed"],
        result["failed"],
        result["pending"],
        result["skipped"],
    )
    for entry in result["prompts"]:
        if entry["failure_reason"] is not None:
            log.warning(
                "Prompt %r (%s) did not complete: %s",
                short_label(entry["prompt"]),
                entry["generation_id"] or "not submitted",
                entry["failure_reason"],
            )
    return result


def judge(
    result: Mapping[str, Any],
    submitted: Sequence[Submitted],
    *,
    max_failed_fraction: float,
    ambiguous_submit: str = "fail",
    last_try: bool = True,
) -> LumaError | None:
    """The error that should fail the task, or None. In this order:

    1. a submit with an unknown outcome (``ambiguous_submit="fail"``): no Airflow retry may send
       it again, so ``LumaAmbiguousSubmitError`` (clear the task to resubmit; the rest is reused);
    2. prompts not submitted for a passing reason (5xx, network, a stopped batch) while retries
       remain: fail so the retry submits just those (the last try lets the chunk go on);
    3. more failed prompts than ``max_failed_fraction`` of the batch.
    """
    if ambiguous_submit == "fail" and any(x.ambiguous for x in submitted):
        count = sum(x.ambiguous for x in submitted)
        return LumaAmbiguousSubmitError(
            f"{count} submit(s) of this batch have an unknown outcome and were not sent again (the "
            f"gateway may have them): {failure_message(result)}. Clear the task to submit them again; "
            "the other prompts are reused, not paid twice."
        )
    retryable = [x for x in submitted if x.retryable and not x.generation_id]
    if retryable and not last_try:
        return LumaError(
            f"{len(retryable)} of {len(submitted)} prompts could not be submitted (first: "
            f"{retryable[0].error}); the task's retry submits only those"
        )
    if result["failed"] > max_failed_fraction * result["total"]:
        return LumaError(f"{failure_message(result)} (max_failed_fraction={max_failed_fraction:g})")
    return None


def failure_message(result: Mapping[str, Any]) -> str:
    """``n of m prompts failed: 'prompt…': reason; …`` (the first few, then a count)."""
    failed = [e for e in result["prompts"] if e["failure_reason"] is not None]
    listed = "; ".join(
        f"{short_label(e['prompt'])!r}: {e['failure_reason'] or e['state']}" for e in failed[:LISTED_FAILURES]
    )
    more = f"; and {len(failed) - LISTED_FAILURES} more" if len(failed) > LISTED_FAILURES else ""
    return f"{len(failed)} of {result['total']} prompts did not complete: {listed}{more}"


def is_result(value: Any) -> bool:
    """Whether ``value`` is a batch result (the generate operator's or the sensor's XCom)."""
    return isinstance(value, Mapping) and isinstance(value.get("prompts"), list) and "total" in value


def validate_fraction(value: Any, name: str = "max_failed_fraction") -> float:
    """A share of a batch, from 0 to 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise LumaValidationError(name, f"must be a number from 0 to 1, got {value!r}")
    return float(value)


def completed_generations(value: Any) -> list[dict[str, Any]] | None:
    """The completed generations of a batch result (None when ``value`` is not one)."""
    if not is_result(value):
        return None
    return [
        e["generation"]
        for e in value["prompts"]
        if isinstance(e, Mapping)
        and e.get("state") == "completed"
        and isinstance(e.get("generation"), Mapping)
    ]


def short_label(prompt: Any, limit: int = 48) -> str:
    """A prompt on one line, cut to ``limit`` characters (for logs and UI labels)."""
    text = " ".join(str(prompt or "").split())
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
