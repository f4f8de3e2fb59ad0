"""Helpers shared by the benchmark scripts: sandbox process, memory probes, markdown tables."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
API_KEY = "bench-key-0001"


class SandboxURL(str):
    """The sandbox's base URL (a plain ``str`` everywhere) that also knows the sandbox's ``pid``."""

    pid: int

    def __new__(cls, url: str, pid: int) -> SandboxURL:
        self = super().__new__(cls, url)
        self.pid = pid
        return self


@contextlib.contextmanager
def sandbox_process(**options: float | str) -> Iterator[SandboxURL]:
    """Run ``python -m luma_provider.sandbox`` in its own process (its CPU/RSS are not ours).

    Yields the sandbox's URL, a ``str`` whose ``.pid`` is the sandbox process (for ``proc_cpu_seconds``).
    """
    with tempfile.TemporaryDirectory(prefix="luma-bench-") as tmp:
        port_file = Path(tmp) / "url"
        cmd = [
            PYTHON,
            "-m",
            "luma_provider.sandbox",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--api-key",
            API_KEY,
        ]
        for key, value in options.items():
            cmd += [f"--{key.replace('_', '-')}", str(value)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists():
                if proc.poll() is not None:
                    raise RuntimeError(f"sandbox exited: {proc.stderr.read().decode()[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError("sandbox did not start in 30 s")
                time.sleep(0.05)
            url = port_file.read_text().strip()
            from luma_provider.sandbox import SandboxAdmin

            SandboxAdmin(url, api_key=API_KEY).wait_ready()
            yield SandboxURL(url, proc.pid)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def luma_conn_json(url: str, **extra: object) -> str:
    # The sandbox's CDN is on 127.0.0.1: private hosts are refused unless allowed.
    conn: dict[str, object] = {
        "conn_type": "luma",
        "host": url,
        "password": API_KEY,
        "extra": {"allow_private_downloads": True, **extra},
    }
    return json.dumps(conn)


def proc_status_kib(field: str, pid: int | str = "self") -> int:
    """A ``/proc/<pid>/status`` memory field (``VmRSS``, ``VmHWM``) in KiB; 0 if unavailable."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds a process has used so far (``/proc/<pid>/stat`` utime + stime)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()  # after "pid (comm)": field 3 (state) is [0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> float:
    with open("/proc/loadavg") as fh:
        return float(fh.read().split()[0])


def wait_for_quiet_machine(limit: float = 1.5, max_wait: float = 600, step: float = 30) -> float:
    """Wait (up to ``max_wait`` s) until the 1-min load average is <= ``limit``; return the load seen."""
    deadline = time.monotonic() + max_wait
    load = loadavg()
    while load > limit and time.monotonic() < deadline:
        print(f"[bench] 1-min load {load:.2f} > {limit}; waiting {step:.0f} s", file=sys.stderr, flush=True)
        time.sleep(step)
        load = loadavg()
    return load


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for an empty list."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "**FAIL**"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def bench_env(**extra: str) -> dict[str, str]:
    """Environment for child processes: a private AIRFLOW_HOME, no example DAGs, quiet logs."""
    home = Path(tempfile.gettempdir()) / "luma-bench-airflow-home"
    home.mkdir(exist_ok=True)
    env = dict(os.environ)
    env.setdefault("AIRFLOW_HOME", str(home))
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    env.update(extra)
    return env
