"""Benchmark 2 - download: a 1 GiB video through ``LumaHook.download_file`` vs ``curl``.

The sandbox (its own process) streams ``/media/blob?size=N`` with a Content-Length. Each side
runs in a fresh subprocess writing to the same directory (same disk); rounds alternate the
order (curl, hook / hook, curl) and ``os.sync()`` runs before every transfer so neither side
inherits the other's dirty-page writeback. Throughput is the median over ``--rounds`` rounds.

Memory: the hook's child reports its peak RSS (``VmHWM``) after the download; a reference
child that only imports ``luma_provider.hooks.luma`` reports its own ``VmHWM``; growth is the
difference (what the download itself costs). ``ru_maxrss`` of every child (from ``wait4``) is
recorded too, which also gives curl's peak RSS.

Usage: ``python benchmarks/bench_download.py [--size-mib 1024] [--rounds 3] [--dir PATH] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, ROOT, bench_env, luma_conn_json, markdown_table, sandbox_process, verdict

MIB = 1024 * 1024

IMPORT_ONLY = r"""
import json, resource
import luma_provider.hooks.luma  # noqa: F401
from _common import proc_status_kib
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"vmhwm_kib": proc_status_kib("VmHWM"), "maxrss_kib": maxrss}))
"""

HOOK_DOWNLOAD = r"""
import json, os, resource, sys, time
from luma_provider.hooks.luma import LumaHook
from _common import proc_status_kib
url, dest, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
hook = LumaHook()
before = proc_status_kib("VmHWM")
start = time.perf_counter()
final = hook.download_file(url, dest, default_name="video.mp4", max_bytes=size + 1)
seconds = time.perf_counter() - start
assert os.path.getsize(dest) == size, os.path.getsize(dest)
print(json.dumps({"seconds": seconds, "final": final, "vmhwm_before_kib": before,
                  "vmhwm_kib": proc_status_kib("VmHWM"),
                  "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run_child(cmd: list[str], env: dict[str, str]) -> tuple[str, float]:
    """Run a Python child; return (stdout, wall seconds). It reports its own VmHWM/ru_maxrss."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=str(Path(__file__).resolve().parent)
    )
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return out.decode(), wall


def run_curl(url: str, dest: Path) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen(["curl", "-sS", "--fail", "-o", str(dest), url])
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"curl failed with {proc.returncode}")
    return seconds, usage.ru_maxrss


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="download directory (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not shutil.which("curl"):
        print("curl not found", file=sys.stderr)
        return 2
    size = args.size_mib * MIB
    workdir = Path(tempfile.mkdtemp(prefix="luma-bench-dl-", dir=args.dir))
    curl_runs: list[dict[str, Any]] = []
    hook_runs: list[dict[str, Any]] = []
    try:
        with sandbox_process() as base:
            url = f"{base}/media/blob?size={size}"
            env = bench_env(
                AIRFLOW_CONN_LUMA_DEFAULT=luma_conn_json(base), PYTHONPATH=str(ROOT / "benchmarks")
            )
            ref_out, _ = run_child([PYTHON, "-c", IMPORT_ONLY], env)
            reference = json.loads(ref_out.strip().splitlines()[-1])
            for round_no in range(args.rounds):
                order = ("curl", "hook") if round_no % 2 == 0 else ("hook", "curl")
                for side in order:
                    os.sync()  # start every transfer with no dirty pages of the previous one in flight
                    if side == "curl":
                        dest = workdir / "curl.mp4"
                        seconds, maxrss = run_curl(url, dest)
                        assert dest.stat().st_size == size
                        dest.unlink()
                        curl_runs.append({"seconds": seconds, "maxrss_kib": maxrss})
                    else:
                        dest = workdir / "hook.mp4"
                        out, wall = run_child([PYTHON, "-c", HOOK_DOWNLOAD, url, str(dest), str(size)], env)
                        run = json.loads(out.strip().splitlines()[-1])
                        run["wall"] = wall
                        dest.unlink()
                        hook_runs.append(run)
                print(
                    f"[bench] download round {round_no + 1}: curl {curl_runs[-1]['seconds']:.2f}s, "
                    f"hook {hook_runs[-1]['seconds']:.2f}s",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    curl_s = statistics.median(r["seconds"] for r in curl_runs)
    hook_s = statistics.median(r["seconds"] for r in hook_runs)
    curl_tp, hook_tp = size / MIB / curl_s, size / MIB / hook_s
    ratio = hook_tp / curl_tp
    hook_hwm = max(r["vmhwm_kib"] for r in hook_runs)
    growth_mib = (hook_hwm - reference["vmhwm_kib"]) / 1024
    curl_rss = max(r["maxrss_kib"] for r in curl_runs) / 1024
    rows = [
        [
            "Throughput, MiB/s (median of rounds)",
            f"{hook_tp:.0f}",
            f"{curl_tp:.0f}",
            f"{ratio:.2f}x",
            ">= 0.9x curl",
            verdict(ratio >= 0.9),
        ],
        ["Time for the file, s (median)", f"{hook_s:.2f}", f"{curl_s:.2f}", "", "report", ""],
        [
            "Peak RSS of the downloading process, MiB",
            f"{hook_hwm / 1024:.0f}",
            f"{curl_rss:.0f}",
            "",
            "report",
            "",
        ],
        [
            "Peak RSS growth over import-only process, MiB",
            f"{growth_mib:.1f} (import-only: {reference['vmhwm_kib'] / 1024:.0f})",
            "n/a",
            "",
            "<= 64",
            verdict(growth_mib <= 64),
        ],
    ]
    title = (
        f"### Download: {args.size_mib} MiB from the sandbox CDN to local disk, "
        f"{args.rounds} rounds (order alternating, sync before each)\n\n"
    )
    table = title + markdown_table(
        ["Metric", "LumaHook.download_file", "curl", "Ratio", "Goal", "Result"], rows
    )
    print(table)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": {
                        "curl": curl_runs,
                        "hook": hook_runs,
                        "reference": reference,
                        "ratio": ratio,
                        "growth_mib": growth_mib,
                        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
                    },
                    "table": table,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
