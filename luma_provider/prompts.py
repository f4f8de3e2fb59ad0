"""Prompt files for batch DAGs: YAML (a list of mappings) or CSV (with a header row)."""

from __future__ import annotations

import csv
import io
from typing import Any

from luma_provider.api import OPTION_NAMES
from luma_provider.exceptions import LumaValidationError

#: Columns a prompt file may have; they become ``LumaGenerateOperator`` keyword arguments.
PROMPT_FIELDS = ("prompt", *OPTION_NAMES)


def load_prompt_file(path: str) -> list[dict[str, Any]]:
    """Read prompts from a local path or any ``ObjectStoragePath`` URI.

    Every row needs a ``prompt``; every row gets every field of ``PROMPT_FIELDS`` (None when
    absent) so rows can feed ``expand_kwargs`` directly.
    Unknown columns are an error (a typo like ``aspect`` would otherwise be ignored silently).
    """
    from airflow.sdk import ObjectStoragePath

    uri = path if "://" in path else f"file://{path}"
    text = ObjectStoragePath(uri).read_text(encoding="utf-8")
    rows = _parse_csv(text) if path.lower().endswith(".csv") else _parse_yaml(text)
    prompts = []
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise LumaValidationError("prompts_file", f"entry {number} of {path} is not a mapping: {row!r}")
        unknown = set(row) - set(PROMPT_FIELDS)
        if unknown:
            raise LumaValidationError(
                "prompts_file",
                f"entry {number} of {path} has unknown fields {sorted(unknown)}; "
                f"allowed: {', '.join(PROMPT_FIELDS)}",
            )
        # Every key present (None when empty): mapped task groups need the same kwargs per row.
        cleaned = {k: (None if row.get(k) in (None, "") else row[k]) for k in PROMPT_FIELDS}
        if not str(cleaned["prompt"] or "").strip():
            raise LumaValidationError("prompts_file", f"entry {number} of {path} has no prompt")
        prompts.append(cleaned)
    return prompts


def _parse_yaml(text: str) -> list[Any]:
    import yaml

    data = yaml.safe_load(text) or []
    if isinstance(data, dict) and "prompts" in data:
        data = data["prompts"]
    if not isinstance(data, list):
        raise LumaValidationError(
            "prompts_file", "YAML must be a list of prompts (or a mapping with 'prompts')"
        )
    return data


def _parse_csv(text: str) -> list[dict[str, Any]]:
    return [dict(row) for row in csv.DictReader(io.StringIO(text))]
