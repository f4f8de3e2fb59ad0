"""Run every benchmark (``make bench``) and print their markdown tables.

Each benchmark runs in its own fresh process, one after the other. Before starting (and
between benchmarks) this waits, up to 10 minutes, for the 1-min load average to drop to
``--max-load`` or below, because the goals are about this provider's cost, not a busy machine's.
Raw results go to ``--out`` (default ``benchmarks/results/``) as JSON, with the machine info.

Usage: ``python benchmarks/run_all.py [--only many_waits,download,parse,official_status] [--quick]``

``airflow_batch`` (a real Airflow on a throwaway PostgreSQL, up to 10,000 prompts; ~30-40 min)
is not part of the default set: it runs only when named, e.g. ``--only airflow_batch``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, ROOT, bench_env, loadavg, wait_for_quiet_machine

HERE = Path(__file__).resolve().parent
BENCHMARKS = {
    "many_waits": ("bench_many_waits.py", [], ["--n", "200", "--spread-from", "5", "--spread-to", "15"]),
    "download": ("bench_download.py", [], ["--size-mib", "256", "--rounds", "2"]),
    "parse": ("bench_parse.py", [], ["--repeat", "3"]),
    "official_status": ("bench_official_status.py", [], ["--quick"]),
    "airflow_batch": ("bench_airflow_batch.py", [], ["--quick"]),
}
#: Long benchmarks that run only when named in ``--only``.
OPT_IN = {"airflow_batch"}


def machine_info() -> dict[str, object]:
    mem_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    versions = subprocess.run(
        [
            PYTHON,
            "-c",
            "import airflow, importlib.metadata as m; print(airflow.__version__, "
            "m.version('apache-airflow-providers-http'), m.version('aiohttp'), m.version('requests'))",
        ],
        capture_output=True,
        text=True,
        env=bench_env(),
    ).stdout.split()
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kib / 1024**2, 1),
        "python": platform.python_version(),
        "airflow": versions[0] if versions else "?",
        "providers_http": versions[1] if len(versions) > 1 else "?",
        "aiohttp": versions[2] if len(versions) > 2 else "?",
        "requests": versions[3] if len(versions) > 3 else "?",
        "kernel": platform.release(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--only",
        default=",".join(n for n in BENCHMARKS if n not in OPT_IN),
        help=f"comma-separated subset of {','.join(BENCHMARKS)} (default: all but {','.join(OPT_IN)})",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test, not for the record)")
    parser.add_argument("--max-load", type=float, default=1.5)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    print(
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram_gib']} GiB RAM, Python {info['python']}, "
        f"Airflow {info['airflow']}, providers-http {info['providers_http']}, {info['date']}",
        flush=True,
    )
    tables, loads, failed = [], {}, []
    for name in args.only.split(","):
        script, extra, quick = BENCHMARKS[name]
        load_before = wait_for_quiet_machine(args.max_load)
        out = args.out / f"{name}.json"
        cmd = [PYTHON, str(HERE / script), "--json", str(out), *extra, *(quick if args.quick else [])]
        print(
            f"\n[bench] {name}: 1-min load {load_before:.2f}; running {' '.join(cmd[1:])}",
            file=sys.stderr,
            flush=True,
        )
        proc = subprocess.run(cmd, cwd=ROOT, env=bench_env(), stdout=subprocess.PIPE, text=True)
        loads[name] = {"before": load_before, "after": loadavg()}
        if proc.returncode != 0 or not out.exists():
            failed.append(name)
            tables.append(f"### {name}: benchmark failed (exit {proc.returncode})\n\n{proc.stdout[-2000:]}")
            continue
        table = json.loads(out.read_text())["table"]
        tables.append(
            f"{table}\n\n_1-min load average: {load_before:.2f} before, {loads[name]['after']:.2f} after._"
        )
    (args.out / "machine.json").write_text(json.dumps({**info, "load": loads, "quick": args.quick}, indent=2))
    print()
    print("\n\n".join(tables))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
