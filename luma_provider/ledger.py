"""A tiny ledger ``idempotency key -> generation id`` on storage every worker can see.

Luma gateways have no idempotency keys, so re-running a batch over the same prompts would pay
for every video again. With ``LumaGenerateOperator(idempotency_key=...)`` the operator records
each submitted id here and, next time the same key comes up, reuses that generation.

One small JSON file per key (named by the key's SHA-256) under any ``ObjectStoragePath``:
``file://`` by default (``$AIRFLOW_HOME/luma_ledger``), or ``s3://``/``gs://`` for workers on
several machines. Writes go to a temporary name first, then rename.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from typing import Any

def default_ledger_root() -> str:
    home = os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow"))
    return f"file://{os.path.join(home, 'luma_ledger')}"


def key_for_request(body: Mapping[str, Any], extend_of: str | None = None) -> str:
    """A stable digest of a request: the same prompt and options give the same digest."""
    canonical = json.dumps({"body": body, "extend_of": extend_of}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class GenerationLedger:
    """Map idempotency keys to generation ids.

    :param root: folder URI (local path or ``ObjectStoragePath`` URI); default under AIRFLOW_HOME.
    :param conn_id: Airflow connection for the object store, if it needs one.
    """

    def __init__(self, root: str | None = None, conn_id: str | None = None) -> None:
        self.root = root or default_ledger_root()
        self.conn_id = conn_id

    def _folder(self) -> Any:
        from airflow.sdk import ObjectStoragePath

        uri = self.root if "://" in self.root else f"file://{os.path.abspath(self.root)}"
        return ObjectStoragePath(uri, conn_id=self.conn_id) if self.conn_id else ObjectStoragePath(uri)

    def _entry(self, key: str) -> Any:
        return self._folder() / f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    def get(self, key: str) -> str | None:
        """The generation id recorded for ``key``, or None."""
        entry = self._entry(key)
        if not entry.exists():
            return None
        data = json.loads(entry.read_text(encoding="utf-8"))
        return data.get("generation_id") if data.get("key") == key else None

    def record(self, key: str, generation_id: str) -> None:
        """Remember ``generation_id`` for ``key`` (overwrites an earlier, e.g. failed, one)."""
        folder = self._folder()
        folder.mkdir(parents=True, exist_ok=True)
        entry = self._entry(key)
        tmp = folder / f".{entry.name}.{uuid.uuid4().hex[:8]}.tmp"
        payload = {"key": key, "generation_id": generation_id,
                   "recorded_at": dt.datetime.now(dt.timezone.utc).isoformat()}
        tmp.write_text(json.dumps(payload), encoding="utf-8")
        tmp.rename(entry)
