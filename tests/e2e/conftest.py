"""The e2e tests share ``e2e_stack`` (a real Airflow deployment in subprocesses, see there)."""

from __future__ import annotations

import sys
from pathlib import Path

# --import-mode=importlib puts no test folder on sys.path: make tests/e2e/e2e_stack.py importable.
sys.path.insert(0, str(Path(__file__).resolve().parent))
