"""Never pay twice: find a generation already paid for, or submit once and record it at once.

``LumaGenerateOperator`` delegates all of its bookkeeping here, so the rules live in one place:

1. the task state store (an earlier try of *this* task instance) is consulted first and wins;
   before Airflow 3.3, which has none, a stand-in keyed by the task instance in the ledger
   (``retry_store``, logged as a warning);
2. then, with an idempotency key, the ledger (any earlier run);
3. a recorded generation that failed, or that the gateway no longer knows, is not reused;
4. with a key, the ledger entry is claimed before submitting, so two runs using the same key
   at the same moment submit once; the other waits for the record and reuses it;
5. the accepted id is written to the task state store and the ledger before anything else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from luma_provider.exceptions import LumaAmbiguousSubmitError, LumaError, LumaNotFoundError
from luma_provider.ledger import DEFAULT_CLAIM_WAIT, GenerationLedger, TaskInstanceStore
from luma_provider.models import LumaGeneration, LumaState, is_generation_id

if TYPE_CHECKING:
    from luma_provider.hooks.luma import LumaHook

log = logging.getLogger(__name__)

#: task_state_store key of the submitted id: survives retries (XCom is cleared before each try).
STATE_GENERATION_ID = "luma_generation_id"
#: task_state_store key noting that a submit's outcome was unknown (for the next try's log).
STATE_AMBIGUOUS = "luma_ambiguous_submit"


def retry_store(
    context: Any, ledger: GenerationLedger, task_instance: str, *, keyed: bool, logger: Any = None
) -> Any:
    """``context["task_state_store"]`` (Airflow 3.3+), else its stand-in in the ledger; says which.

    Before Airflow 3.3, with an idempotency key (``keyed``) the ledger entries under the key
    already bring a retry back to what it paid for, so no stand-in is needed; without one,
    ``TaskInstanceStore`` keeps the ids in the ledger folder, keyed by the task instance.

    :param task_instance: ``dag_id/run_id/task_id/map_index``, the stand-in's key.
    """
    logger = logger or log
    store = context.get("task_state_store")
    if store is not None:
        logger.info("Never pay twice on a retry: accepted ids go to the task state store")
        return store
    if keyed:
        logger.warning(
            "This Airflow has no task state store (it needs Airflow 3.3): never pay twice on a retry "
            "relies on the ledger entries under idempotency_key, in %s",
            ledger.root,
        )
        return None
    fallback = TaskInstanceStore(ledger, task_instance)
    fallback.ledger.prepare()  # on this thread, before a batch's threads share it
    logger.warning(
        "This Airflow has no task state store (it needs Airflow 3.3): never pay twice on a retry "
        "falls back to the ledger, %s, keyed by this task instance. Retries on other machines "
        "reuse only if ledger_path is storage they all see.",
        fallback.ledger.root,
    )
    return fallback


class ScopedStore:
    """One prompt's view of the task state store in a batch: keys end in ``:<scope>``.

    Every call holds ``lock``, shared by the batch's threads: the Task SDK's in-process comms
    (``dag.test``, ``airflow dags test``) answer from one queue and are not thread-safe.
    """

    def __init__(self, store: Any, scope: str, lock: threading.Lock) -> None:
        self.store = store
        self.scope = scope
        self.lock = lock

    def get(self, key: str) -> Any:
        with self.lock:
            return self.store.get(f"{key}:{self.scope}")

    def set(self, key: str, value: Any) -> None:
        with self.lock:
            self.store.set(f"{key}:{self.scope}", value)


class GenerationReuse:
    """The pay-once bookkeeping of one generate task instance.

    :param hook: the ``LumaHook`` used to check recorded generations.
    :param store: the task state store (``context["task_state_store"]``), or None.
    :param ledger: the ledger, or None without an idempotency key.
    :param key: the full idempotency key (scope + request digest), or None.
    :param owner: who claims the key (dag/run/task/map index), so a retry can take over its own claim.
    :param claim_wait: seconds to wait for another run's claim on the same key to become a record.
    :param first_try: the task instance's first try (``try_number == 1``): nothing can be recorded
        for it yet, so ``find`` does not read the task state store (two Execution API calls per
        prompt saved; a 100-prompt chunk spent most of its submit time on them).
    """

    def __init__(
        self,
        hook: LumaHook,
        *,
        store: Any,
        ledger: GenerationLedger | None,
        key: str | None,
        owner: str,
        claim_wait: float = DEFAULT_CLAIM_WAIT,
        poll: float = 1.0,
        logger: Any = None,
        first_try: bool = False,
    ) -> None:
        self.log = logger or log
        self.hook = hook
        self.store = store
        self.ledger = ledger if key else None
        self.key = key
        self.owner = owner
        self.claim_wait = claim_wait
        self.poll = poll
        self.first_try = first_try
        #: Generations looked up for many prompts at once (``batch.submit_all``): id -> the
        #: generation, or None when the API does not know the id. Ids not in it get their own GET.
        self.known: dict[str, LumaGeneration | None] = {}
        self._read: dict[str, Any] = {}

    def recorded_ids(self) -> list[str]:
        """The ids ``find`` would check: an earlier try's (task state store), then the key's (ledger)."""
        found = [] if self.first_try else [self._store_get(STATE_GENERATION_ID)]
        if self.ledger is not None and self.key:
            found.append(self.ledger.get(self.key))
        return [str(i) for i in found if i and is_generation_id(i)]

    def find(self) -> LumaGeneration | None:
        """A usable generation already paid for by an earlier try or, with a key, an earlier run."""
        found = None
        if not self.first_try:  # a first try has nothing recorded yet: skip two store calls
            earlier = self._store_get(STATE_AMBIGUOUS)
            if earlier:
                self.log.warning(
                    "An earlier try of this task could not tell whether its submit was accepted (%s); "
                    "it may exist on the gateway as well",
                    str(earlier)[:300],
                )
            found = self._usable(self._store_get(STATE_GENERATION_ID), "an earlier try of this task")
        if found is None and self.ledger is not None and self.key:  # looked up only when needed
            found = self._usable(self.ledger.get(self.key), f"idempotency key {self.key!r}")
        return found

    def submit_once(self, submit: Callable[[], LumaGeneration]) -> LumaGeneration:
        """``find()``, else claim the key, call ``submit`` and record the accepted id at once."""
        found = self.find()
        if found is not None:
            return found
        if self.ledger is not None and self.key:
            found = self._claim()
            if found is not None:
                return found
        try:
            generation = submit()
        except LumaAmbiguousSubmitError as err:
            # The job may exist: keep the claim (it expires), so a concurrent run does not pay too.
            self._store_set(STATE_AMBIGUOUS, str(err)[:1000])
            raise
        except BaseException:
            self._release()  # nothing was created: let the next attempt claim freely
            raise
        # Recorded before anything else can fail: a retry or re-run must find it, not pay again.
        self._store_set(STATE_GENERATION_ID, generation.id)
        if self.ledger is not None and self.key:
            self.ledger.record(self.key, generation.id)
            self._release()
        return generation

    def _claim(self) -> LumaGeneration | None:
        assert self.ledger is not None
        assert self.key is not None
        deadline = time.monotonic() + self.claim_wait
        while True:
            held = self.ledger.claim(self.key, self.owner)
            if held is None:
                # The claimant may have recorded between our lookup and our claim.
                found = self._usable(self.ledger.get(self.key), f"idempotency key {self.key!r}")
                if found is not None:
                    self._release()
                return found
            self.log.info(
                "Idempotency key %r is being submitted by %s (%.0f s ago); waiting for its record",
                self.key[:80],
                held.owner,
                held.age(),
            )
            if time.monotonic() >= deadline:
                raise LumaError(
                    f"Idempotency key {self.key!r} is still being submitted by {held.owner} after "
                    f"{self.claim_wait:.0f} s; not submitting a second time. A retry of this task will "
                    "reuse that generation once it is recorded."
                )
            time.sleep(self.poll)
            found = self._usable(self.ledger.get(self.key), f"idempotency key {self.key!r}")
            if found is not None:
                return found

    def _release(self) -> None:
        if self.ledger is not None and self.key:
            self.ledger.release(self.key, self.owner)

    def _usable(self, recorded: Any, source: str) -> LumaGeneration | None:
        if not recorded:
            return None
        if not is_generation_id(recorded):
            self.log.warning("Ignoring an invalid generation id recorded for %s", source)
            return None
        gen_id = str(recorded)
        if gen_id in self.known:  # looked up with the rest of the batch; None: the API does not know it
            generation = self.known[gen_id]
        else:
            try:
                generation = self.hook.get_generation(gen_id)
            except LumaNotFoundError:  # expired, another account, or a restarted sandbox
                generation = None
        if generation is None:
            self.log.warning(
                "Generation %s recorded for %s is unknown to the gateway; not reusing it", recorded, source
            )
            return None
        if generation.state == LumaState.FAILED:
            self.log.warning(
                "Generation %s recorded for %s failed (%s); not reusing it",
                generation.id,
                source,
                generation.failure_reason,
            )
            return None
        self.log.info(
            "Reusing generation %s recorded for %s (state %s); not submitting again",
            generation.id,
            source,
            generation.state.value,
        )
        return generation

    def _store_get(self, key: str) -> Any:
        """Read once per try: each read is an Execution API call, and only this task writes."""
        if key not in self._read:
            self._read[key] = self.store.get(key) if self.store is not None else None
        return self._read[key]

    def _store_set(self, key: str, value: Any) -> None:
        if self.store is not None:
            self.store.set(key, value)
        self._read[key] = value
