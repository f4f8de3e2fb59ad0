"""Benchmark 3 - parse cost: what ``dags/luma_daily_content.py`` adds to a DAG parse.

Airflow 3's DAG processor parses each file in a fresh child process; before that it pre-imports
the ``airflow.*`` modules named in the DAG file (``parsing_pre_import_modules``), but not
third-party modules such as ``luma_provider``, so the provider's import cost is paid on every
parse. Each sample here is one fresh subprocess that:

1. imports what the processor has already loaded (``airflow.dag_processing.processor``), the
   ``airflow.*`` imports of the DAG file (``iter_airflow_imports``, as
   ``_pre_import_airflow_modules`` does) and ``EmptyOperator`` (a plain-operator DAG file
   would name it, so it would be pre-imported too);
2. times exactly what ``airflow.dag_processing.processor._parse_file`` does: a ``BundleDagBag``
   over the one file (``load_op_links=False``) plus ``_serialize_dags``.

Variants (each in its own temp bundle folder):

* ``luma``: the real ``luma_daily_content.py`` + ``luma_common.py`` + ``prompts/``;
* ``empty``: the same DAG file with a stand-in ``luma_common.py`` whose task group has three
  ``EmptyOperator``s (submit, wait, download) instead of the Luma operators/sensor.

Extra parse cost = median(luma) - median(empty), over ``--repeat`` interleaved samples.
A diagnostic variant ``luma_hook_preloaded`` parses the real DAG with ``luma_provider.hooks.luma``
imported before timing (what the parse would cost if operators/sensors imported the hook lazily),
and a fourth child kind times only ``import`` of the provider modules ``luma_common`` imports.

Usage: ``python benchmarks/bench_parse.py [--repeat 8] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import PYTHON, ROOT, bench_env, markdown_table, verdict

DAG_FILE = "luma_daily_content.py"

EMPTY_COMMON = '''"""Stand-in for luma_common.py: the same task group shape with EmptyOperators."""
import os
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import task_group

AIRFLOW_HOME = os.environ.get("AIRFLOW_HOME", os.path.expanduser("~/airflow"))
OUTPUT_ROOT = os.environ.get("LUMA_OUTPUT_ROOT", f"file://{os.path.join(AIRFLOW_HOME, 'luma_output')}")
RUN_DATE = "{{ (dag_run.logical_date or dag_run.run_after) | ds }}"
POOL = os.environ.get("LUMA_POOL", "default_pool")
POLL_INTERVAL = float(os.environ.get("LUMA_POLL_INTERVAL", "15"))


def video_group(destination, group_id="generate", idempotency_key=None):
    @task_group(group_id=group_id)
    def generate(prompt, aspect_ratio, image_url, image_end_url, model, loop):
        submit = EmptyOperator(task_id="submit", pool=POOL)
        wait = EmptyOperator(task_id="wait")
        download = EmptyOperator(task_id="download", pool=POOL)
        submit >> wait >> download
        return download

    return generate


def raise_if_any_failed(summary):
    failed = [g for g in summary["generations"] if g["state"] != "completed"]
    if failed:
        raise RuntimeError(f"{len(failed)} generations did not complete")
'''

PARSE_CHILD = r"""
import json, sys, time
bundle, dag_file = sys.argv[1], sys.argv[2]
import structlog
from airflow.dag_processing.dagbag import BundleDagBag
from airflow.dag_processing.processor import _serialize_dags
from airflow.utils.file import iter_airflow_imports
import importlib
# diagnostic: modules to load before timing (e.g. the hook, to see what a lazy import saves)
preload = sys.argv[3:]
for module in [*iter_airflow_imports(dag_file), "airflow.providers.standard.operators.empty", *preload]:
    importlib.import_module(module)
log = structlog.get_logger("bench")
before = set(sys.modules)
start = time.perf_counter()
bag = BundleDagBag(dag_folder=dag_file, bundle_path=bundle, bundle_name="bench", load_op_links=False)
serialized, errors = _serialize_dags(bag, log)
seconds = time.perf_counter() - start
new = set(sys.modules) - before
errors = {**bag.import_errors, **errors}
print(json.dumps({"seconds": seconds, "dags": sorted(bag.dag_ids), "import_errors": errors,
                  "serialized": len(serialized), "new_modules": len(new),
                  "provider_modules": sorted(m for m in new if m.startswith("luma_provider"))}))
"""

IMPORT_CHILD = r"""
import json, sys, time, importlib
import airflow.dag_processing.processor, airflow.sdk  # noqa: F401  (already loaded in the processor)
start = time.perf_counter()
import luma_provider.operators.luma, luma_provider.sensors.luma  # noqa: F401
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def run(cmd: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"child failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_bundles(tmp: Path) -> dict[str, Path]:
    dags = ROOT / "dags"
    luma, empty = tmp / "luma", tmp / "empty"
    for target in (luma, empty):
        target.mkdir()
        shutil.copy2(dags / DAG_FILE, target / DAG_FILE)
        if (dags / "prompts").is_dir():
            shutil.copytree(dags / "prompts", target / "prompts")
    shutil.copy2(dags / "luma_common.py", luma / "luma_common.py")
    (empty / "luma_common.py").write_text(EMPTY_COMMON)
    return {"luma": luma, "empty": empty}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    env = bench_env()
    samples: dict[str, list[float]] = {"luma": [], "empty": [], "luma_hook_preloaded": [], "import": []}
    info: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="luma-bench-parse-") as tmp:
        bundles = make_bundles(Path(tmp))
        for i in range(args.repeat):
            for kind in (
                ("luma", "empty", "luma_hook_preloaded")
                if i % 2 == 0
                else ("luma_hook_preloaded", "empty", "luma")
            ):
                bundle = bundles["luma" if kind == "luma_hook_preloaded" else kind]
                preload = ["luma_provider.hooks.luma"] if kind == "luma_hook_preloaded" else []
                res = run([PYTHON, "-c", PARSE_CHILD, str(bundle), str(bundle / DAG_FILE), *preload], env)
                if res["import_errors"] or not res["dags"]:
                    raise RuntimeError(f"{kind} DAG did not parse: {res['import_errors']}")
                samples[kind].append(res["seconds"])
                info[kind] = res
            if i % 2 == 0:
                samples["import"].append(run([PYTHON, "-c", IMPORT_CHILD], env)["seconds"])
            print(
                f"[bench] parse sample {i + 1}: luma {samples['luma'][-1] * 1000:.0f} ms, "
                f"empty {samples['empty'][-1] * 1000:.0f} ms",
                file=sys.stderr,
                flush=True,
            )

    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    extra = med["luma"] - med["empty"]
    rows = [
        [
            "Parse + serialize, luma_daily_content (median ms)",
            f"{med['luma']:.0f}",
            f"min {min(samples['luma']) * 1000:.0f} / max {max(samples['luma']) * 1000:.0f}",
            "report",
            "",
        ],
        [
            "Parse + serialize, same DAG with EmptyOperators (median ms)",
            f"{med['empty']:.0f}",
            f"min {min(samples['empty']) * 1000:.0f} / max {max(samples['empty']) * 1000:.0f}",
            "report",
            "",
        ],
        [
            "**Extra parse time from the provider (median difference, ms)**",
            f"{extra:.0f}",
            "",
            "<= 30",
            verdict(extra <= 30),
        ],
        [
            "Diagnostic: extra time if `luma_provider.hooks.luma` were already imported (median diff, ms)",
            f"{med['luma_hook_preloaded'] - med['empty']:.0f}",
            "what a lazy hook import would leave",
            "report",
            "",
        ],
        [
            "Import of luma_provider operators + sensors alone (median ms)",
            f"{med['import']:.0f}",
            f"{len(samples['import'])} samples",
            "report",
            "",
        ],
        [
            "Modules newly imported by the parse (luma / empty)",
            f"{info['luma']['new_modules']} / {info['empty']['new_modules']}",
            f"luma_provider modules: {len(info['luma']['provider_modules'])}",
            "report",
            "",
        ],
    ]
    title = f"### Parse cost: `dags/{DAG_FILE}` in fresh subprocesses, {args.repeat} samples per variant\n\n"
    table = title + markdown_table(["Metric", "Value", "Spread", "Goal", "Result"], rows)
    print(table)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "results": {
                        "samples": samples,
                        "median_ms": med,
                        "extra_ms": extra,
                        "info": info,
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
