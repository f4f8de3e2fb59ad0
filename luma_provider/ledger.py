"""A tiny ledger ``idempotency key -> generation id`` on storage every worker can see.

Luma gateways have no idempotency keys, so re-running a batch over the same prompts would pay
for every video again. With ``LumaGenerateOperator(idempotency_key=...)`` the operator records
each submitted id here and, next time the same key comes up, reuses that generation.

One small JSON file per key (named by the key's SHA-256) under any ``ObjectStoragePath``:
``file://`` by default (``$AIRFLOW_HOME/luma_ledger``), or ``s3://``/``gs://`` for workers on
several machines. Writes go to a temporary name first, then rename.

Before submitting, a run *claims* the key with a ``<digest>.claim`` file created exclusively
(``open(mode="xb")``), so two runs using the same key at the same moment pay once: the second
waits for the first one's record. Stores whose filesystem cannot create exclusively fall back
to check-then-write, where two runs starting within the same second can both submit.

Entries are read defensively: the ledger is a file anyone with access to the folder can edit,
so a corrupt or foreign entry is logged and treated as absent, never raised.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from luma_provider.models import is_generation_id

log = logging.getLogger(__name__)

#: A claim older than this is from a run that died before recording: it may be taken over.
DEFAULT_CLAIM_TTL = 15 * 60.0
#: How long a run waits for another run's claim on the same key to turn into a record.
DEFAULT_CLAIM_WAIT = 60.0
#: Ledger entries are tiny; anything bigger is not ours.
MAX_ENTRY_BYTES = 64 * 1024


def default_ledger_root() -> str:
    """``$AIRFLOW_HOME/luma_ledger`` as a ``file://`` URI."""
    home = os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow"))
    return f"file://{os.path.join(home, 'luma_ledger')}"


def key_for_request(body: Mapping[str, Any], extend_of: str | None = None) -> str:
    """A stable digest of a request: the same prompt and options give the same digest."""
    canonical = json.dumps({"body": body, "extend_of": extend_of}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Claim:
    """Who is submitting for a key right now."""

    owner: str
    claimed_at: float

    def age(self) -> float:
        return time.time() - self.claimed_at


class GenerationLedger:
    """Map idempotency keys to generation ids.

    :param root: folder URI (local path or ``ObjectStoragePath`` URI); default under AIRFLOW_HOME.
    :param conn_id: Airflow connection for the object store, if it needs one.
    """

    def __init__(self, root: str | None = None, conn_id: str | None = None) -> None:
        self.root = root or default_ledger_root()
        self.conn_id = conn_id

    def prepare(self) -> None:
        """Create the folder and resolve its store (and connection) on the calling thread.

        A batch calls this before its threads share the ledger.
        """
        self._folder().mkdir(parents=True, exist_ok=True)

    def _folder(self) -> Any:
        from airflow.sdk import ObjectStoragePath

        uri = self.root if "://" in self.root else f"file://{os.path.abspath(self.root)}"
        return ObjectStoragePath(uri, conn_id=self.conn_id) if self.conn_id else ObjectStoragePath(uri)

    def _digest(self, key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    def _entry(self, key: str) -> Any:
        return self._folder() / f"{self._digest(key)}.json"

    def _claim_path(self, key: str) -> Any:
        return self._folder() / f"{self._digest(key)}.claim"

    def get(self, key: str) -> str | None:
        """The generation id recorded for ``key``, or None (also for a corrupt entry, logged)."""
        data = _read_json(self._entry(key))
        if data is None or data.get("key") != key:
            return None
        generation_id = data.get("generation_id")
        if not is_generation_id(generation_id):
            log.warning("Ledger entry for key %r holds no valid generation id; ignoring it", key[:80])
            return None
        return str(generation_id)

    def record(self, key: str, generation_id: str) -> None:
        """Remember ``generation_id`` for ``key`` (overwrites an earlier, e.g. failed, one)."""
        self._write(key, {"generation_id": generation_id})

    def _write(self, key: str, fields: Mapping[str, Any]) -> None:
        folder = self._folder()
        folder.mkdir(parents=True, exist_ok=True)
        entry = self._entry(key)
        tmp = folder / f".{entry.name}.{uuid.uuid4().hex[:8]}.tmp"
        payload = {"key": key, **fields, "recorded_at": dt.datetime.now(dt.UTC).isoformat()}
        tmp.write_text(json.dumps(payload), encoding="utf-8")
        tmp.rename(entry)

    # ------------------------------------------------------------------ claims
    def claim(self, key: str, owner: str, *, ttl: float = DEFAULT_CLAIM_TTL) -> Claim | None:
        """Claim ``key`` for ``owner`` before submitting.

        :return: None when the claim is ours (new, our own earlier one, or a stale one taken
            over); otherwise the other owner's live claim.
        """
        folder = self._folder()
        folder.mkdir(parents=True, exist_ok=True)
        path = self._claim_path(key)
        payload = json.dumps({"key": key, "owner": owner, "claimed_at": time.time()}).encode()
        try:
            with path.open("xb") as out:
                out.write(payload)
            return None
        except FileExistsError:
            pass
        except (ValueError, NotImplementedError, TypeError):  # no exclusive create on this store
            if self.current_claim(key) is None:
                path.write_bytes(payload)
                return None
        held = self.current_claim(key)
        if held is None and path.exists():  # being written this instant, or corrupt: age decides
            held = Claim("another run (claim unreadable)", _mtime(path))
        if held is None or held.owner == owner or held.age() > ttl:
            if held is not None and held.owner != owner:
                log.warning(
                    "Taking over a stale claim on key %r by %s (%.0f s old)", key[:80], held.owner, held.age()
                )
            path.write_bytes(payload)
            return None
        return held

    def current_claim(self, key: str) -> Claim | None:
        data = _read_json(self._claim_path(key), quiet=True)
        if data is None or data.get("key") != key:
            return None
        owner, claimed_at = data.get("owner"), data.get("claimed_at")
        if (
            not isinstance(owner, str)
            or not isinstance(claimed_at, (int, float))
            or isinstance(claimed_at, bool)
        ):
            return None
        return Claim(owner[:300], float(claimed_at))

    def release(self, key: str, owner: str) -> None:
        """Drop our claim (after recording, or after a submit that surely created nothing)."""
        held = self.current_claim(key)
        if held is not None and held.owner != owner:
            return
        try:
            self._claim_path(key).unlink(missing_ok=True)
        except OSError as err:  # a leftover claim only expires; never fail the task for it
            log.warning("Could not remove the ledger claim for key %r: %s", key[:80], err)


class TaskInstanceStore:
    """The task state store's stand-in before Airflow 3.3: ``get``/``set`` kept in the ledger.

    Airflow 3.3 gives every task instance a ``task_state_store`` that survives its retries, and
    the operators write each accepted generation id there first. Older Airflow has none, so the
    same keys go to small JSON files under ``<ledger>/task-instances/``, keyed by the task
    instance (dag, run, task, map index): a retry still finds what an earlier try paid for, as
    long as it can see the same ledger folder (on several machines, a shared ``ledger_path``).

    :param ledger: the operator's ledger; its folder (and connection) is used.
    :param task_instance: ``dag_id/run_id/task_id/map_index``.
    """

    FOLDER = "task-instances"

    def __init__(self, ledger: GenerationLedger, task_instance: str) -> None:
        self.ledger = GenerationLedger(f"{ledger.root.rstrip('/')}/{self.FOLDER}", conn_id=ledger.conn_id)
        self.task_instance = task_instance

    def get(self, key: str) -> Any:
        full = f"{self.task_instance}:{key}"
        data = _read_json(self.ledger._entry(full))
        return None if data is None or data.get("key") != full else data.get("value")

    def set(self, key: str, value: Any) -> None:
        self.ledger._write(f"{self.task_instance}:{key}", {"value": value})


def _mtime(path: Any) -> float:
    try:
        return float(path.stat().st_mtime)
    except (OSError, AttributeError, TypeError, ValueError):
        return time.time()


def _read_json(path: Any, *, quiet: bool = False) -> dict[str, Any] | None:
    """A small JSON object from ``path``, or None (missing, unreadable, corrupt: logged)."""
    try:
        if not path.exists():
            return None
        with path.open("rb") as handle:
            raw = handle.read(MAX_ENTRY_BYTES + 1)
    except OSError as err:
        log.warning("Ledger file %s cannot be read (%s); treating it as absent", path, err)
        return None
    try:
        if len(raw) > MAX_ENTRY_BYTES:
            raise ValueError("too large")
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError included
        if quiet:
            return None
        log.warning("Ledger file %s is corrupt (%s); treating it as absent", path, str(err)[:100])
        return None
    return data
