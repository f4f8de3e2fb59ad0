"""Benchmark 1 - many waits: N concurrent LumaTriggers vs per-trigger HttpAsyncHook polling.

One process, one event loop, two phases run one after the other against the same sandbox
(a *separate* process, so CPU and RSS measured here are the client's alone):

* ``luma``: N ``LumaTrigger``s, all sharing one ``StatusPoller`` (batch ``POST /luma/tasks``);
* ``baseline``: N tasks doing what a deferrable ``HttpSensor``/``HttpSensorTrigger`` user would
  build: every ``interval`` s, ``HttpAsyncHook(method="GET", http_conn_id=...).run(...)`` on
  ``GET /luma/generations/{id}`` in a fresh ``aiohttp.ClientSession`` (exactly as providers-http's
  ``HttpSensorTrigger.run`` does), then a state check on the JSON.

Each phase gets N fresh generations whose completion times are spread evenly over
``--spread-from``..``--spread-to`` seconds after submission (the sandbox's ``process_seconds`` is
re-configured every 10 submissions). The sandbox's completion time of a generation is
``created_at + queue_seconds + process_seconds`` (``sandbox/state.py``); detection lag is the
time from that instant to the moment the trigger yielded its event.

Measured per phase: status requests per poll cycle, CPU seconds (``time.process_time``; the
lag probe's own CPU, calibrated for 5 s on an idle loop before the phases, is subtracted from
both phases for the goal and shown in the raw row),
RSS (sampled from ``/proc/self/status``), event-loop lag (a ticker sleeping 10 ms records its
overshoot), detection lag. INFO logging is disabled in both phases (the triggers would log
every state transition; the baseline logs nothing).

Usage: ``python benchmarks/bench_many_waits.py [--n 1000] [--interval 5] [--json out.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    API_KEY,
    luma_conn_json,
    markdown_table,
    percentile,
    proc_status_kib,
    sandbox_process,
    verdict,
)

os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

QUEUE_SECONDS = 1.0
GROUP = 10  # submissions per sandbox re-configuration


def parse_iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def submit_spread(url: str, n: int, spread_from: float, spread_to: float, tag: str) -> dict[str, float]:
    """Create ``n`` generations completing evenly over the spread; return {id: completion epoch}."""
    import requests

    from luma_provider.sandbox import SandboxAdmin

    admin = SandboxAdmin(url, api_key=API_KEY)
    done_at: dict[str, float] = {}
    with requests.Session() as http:
        http.headers["Authorization"] = f"Bearer {API_KEY}"
        for i in range(n):
            if i % GROUP == 0:
                total = spread_from + (spread_to - spread_from) * i / max(1, n - 1)
                process = total - QUEUE_SECONDS
                admin.configure(queue_seconds=QUEUE_SECONDS, process_seconds=process)
            resp = http.post(f"{url}/luma/generations", json={"user_prompt": f"bench {tag} {i}"}, timeout=30)
            resp.raise_for_status()
            body = resp.json()
            done_at[body["id"]] = parse_iso(body["created_at"]) + QUEUE_SECONDS + process
    return done_at


class Probe:
    """Ticker task: event-loop lag (sleep 10 ms, record overshoot) and RSS samples."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self.lag_times: list[float] = []
        self.rss_kib: list[int] = []
        self._stop = False

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        tick = 0
        while not self._stop:
            start = loop.time()
            await asyncio.sleep(0.010)
            self.lags.append(max(0.0, loop.time() - start - 0.010))
            self.lag_times.append(time.time())
            tick += 1
            if tick % 10 == 0:
                self.rss_kib.append(proc_status_kib("VmRSS"))

    def stop(self) -> None:
        self._stop = True


async def luma_wait(gen_id: str, interval: float, events: dict[str, tuple[float, str]]) -> None:
    from luma_provider.triggers.luma import LumaTrigger

    trigger = LumaTrigger([gen_id], luma_conn_id="luma_default", poll_interval=interval)
    async for event in trigger.run():  # driven to its end, as the triggerer does (releases the poller)
        events[gen_id] = (time.time(), event.payload["status"])


async def baseline_wait(
    gen_id: str, interval: float, events: dict[str, tuple[float, str]], polls: list[int]
) -> None:
    import aiohttp
    from airflow.providers.http.hooks.http import HttpAsyncHook

    hook = HttpAsyncHook(method="GET", http_conn_id="luma_http")
    headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}
    k = 0
    while True:
        async with aiohttp.ClientSession() as session:  # what HttpSensorTrigger.run does per poll
            resp = await hook.run(session=session, endpoint=f"luma/generations/{gen_id}", headers=headers)
            body = await resp.json()
        if k >= len(polls):
            polls.append(0)
        polls[k] += 1
        k += 1
        state = body.get("state")
        if state in ("completed", "failed"):
            events[gen_id] = (time.time(), "success" if state == "completed" else "failed")
            return
        await asyncio.sleep(interval)


async def run_phase(kind: str, url: str, done_at: dict[str, float], interval: float) -> dict[str, Any]:
    from luma_provider.sandbox import SandboxAdmin
    from luma_provider.triggers.poller import StatusPoller, active_pollers

    admin = SandboxAdmin(url, api_key=API_KEY)
    cycles: list[tuple[float, int, int, float]] = []  # (start, ids, requests, seconds)
    polls: list[int] = []
    events: dict[str, tuple[float, str]] = {}
    original_serve = StatusPoller._serve

    async def counting_serve(self: StatusPoller, batch: list) -> None:  # observation only
        ids = len({i for w in batch for i in w.ids})
        before, start = self.hook.requests_sent, time.time()
        await original_serve(self, batch)
        cycles.append((start, ids, self.hook.requests_sent - before, time.time() - start))

    StatusPoller._serve = counting_serve  # type: ignore[method-assign]
    try:
        gc.collect()
        stats_before = admin.stats()["by_route"]
        probe = Probe()
        probe_task = asyncio.create_task(probe.run())
        await asyncio.sleep(0.05)
        rss_start = proc_status_kib("VmRSS")
        cpu0, wall0, wall_start = time.process_time(), time.monotonic(), time.time()
        if kind == "luma":
            waits = [luma_wait(g, interval, events) for g in done_at]
        else:
            waits = [baseline_wait(g, interval, events, polls) for g in done_at]
        results = await asyncio.gather(*waits, return_exceptions=True)
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        probe.stop()
        await probe_task
        stats_after = admin.stats()["by_route"]
    finally:
        StatusPoller._serve = original_serve  # type: ignore[method-assign]

    errors = [r for r in results if isinstance(r, BaseException)]
    status_route = "tasks" if kind == "luma" else "get"
    status_requests = stats_after.get(status_route, 0) - stats_before.get(status_route, 0)
    other = sum(stats_after.values()) - sum(stats_before.values()) - status_requests
    lags = [events[g][0] - done_at[g] for g in done_at if g in events]
    if kind == "luma":
        full = [c for c in cycles if c[1] >= len(done_at)]
        per_cycle_full = max((c[2] for c in full), default=0)
        per_cycle_max = max((c[2] for c in cycles), default=0)
        n_cycles = len(cycles)
        serve_max = max((c[3] for c in cycles), default=0.0)
    else:
        per_cycle_full = per_cycle_max = max(polls, default=0)
        n_cycles = len(polls)
        serve_max = float("nan")
    return {
        "kind": kind,
        "n": len(done_at),
        "delivered": sum(1 for g in done_at if events.get(g, (0, ""))[1] == "success"),
        "errors": [repr(e) for e in errors[:3]],
        "error_count": len(errors),
        "wall_s": wall,
        "cpu_s": cpu,
        "status_requests": status_requests,
        "other_requests": other,
        "cycles": n_cycles,
        "requests_per_cycle_all_waiting": per_cycle_full,
        "requests_per_cycle_max": per_cycle_max,
        "serve_max_s": serve_max,
        "rss_start_mib": rss_start / 1024,
        "rss_peak_mib": max(probe.rss_kib or [rss_start]) / 1024,
        "rss_growth_mib": (max(probe.rss_kib or [rss_start]) - rss_start) / 1024,
        "loop_lag_p99_ms": percentile(probe.lags, 99) * 1000,
        "loop_lag_max_ms": max(probe.lags or [0.0]) * 1000,
        "loop_lag_max_at_s": (probe.lag_times[probe.lags.index(max(probe.lags))] - wall_start)
        if probe.lags
        else 0,
        "loop_lags_over_50ms": sum(1 for x in probe.lags if x > 0.05),
        "ticks": len(probe.lags),
        "detect_lag_median_s": statistics.median(lags) if lags else float("nan"),
        "detect_lag_p90_s": percentile(lags, 90),
        "detect_lag_max_s": max(lags or [float("nan")]),
        "leftover_pollers": len(active_pollers()),
    }


async def probe_cost_per_tick(seconds: float = 5.0) -> float:
    """CPU seconds one Probe tick costs on an otherwise idle loop (subtracted from both phases)."""
    probe = Probe()
    task = asyncio.create_task(probe.run())
    cpu0 = time.process_time()
    await asyncio.sleep(seconds)
    probe.stop()
    await task
    return (time.process_time() - cpu0) / max(1, len(probe.lags))


async def main_async(args: argparse.Namespace, url: str) -> dict[str, Any]:
    phases: dict[str, Any] = {}
    per_tick = await probe_cost_per_tick()
    for kind in args.order.split(","):
        done_at = submit_spread(url, args.n, args.spread_from, args.spread_to, kind)
        phases[kind] = res = await run_phase(kind, url, done_at, args.interval)
        res["probe_cpu_s"] = res["ticks"] * per_tick
        res["cpu_net_s"] = res["cpu_s"] - res["probe_cpu_s"]
        print(
            f"[bench] many-waits {kind}: {json.dumps(phases[kind], default=str)}", file=sys.stderr, flush=True
        )
    return phases


def report(res: dict[str, Any], interval: float) -> str:
    lu, ba = res["luma"], res["baseline"]
    cpu_ratio = lu["cpu_net_s"] / ba["cpu_net_s"] if ba["cpu_net_s"] else float("nan")
    raw_ratio = lu["cpu_s"] / ba["cpu_s"] if ba["cpu_s"] else float("nan")
    req_ratio = lu["status_requests"] / ba["status_requests"] if ba["status_requests"] else float("nan")
    n = lu["n"]
    rows = [
        [
            "Events delivered (success)",
            f"{lu['delivered']}/{n}",
            f"{ba['delivered']}/{ba['n']}",
            "",
            f"all {n}",
            verdict(lu["delivered"] == n and lu["error_count"] == 0),
        ],
        [
            f"Status requests per poll cycle, all {n} waiting",
            lu["requests_per_cycle_all_waiting"],
            ba["requests_per_cycle_all_waiting"],
            f"{lu['requests_per_cycle_all_waiting'] / max(1, ba['requests_per_cycle_all_waiting']):.3f}x",
            "<= 10",
            verdict(0 < lu["requests_per_cycle_all_waiting"] <= 10),
        ],
        [
            "Status requests, whole run",
            lu["status_requests"],
            ba["status_requests"],
            f"{req_ratio:.4f}x",
            "",
            "",
        ],
        ["Poll cycles", lu["cycles"], ba["cycles"], "", "", ""],
        [
            "CPU seconds, client process, lag probe subtracted",
            f"{lu['cpu_net_s']:.2f}",
            f"{ba['cpu_net_s']:.2f}",
            f"{cpu_ratio:.3f}x",
            "<= 0.2x baseline",
            verdict(cpu_ratio <= 0.2),
        ],
        [
            "CPU seconds raw (incl. 10 ms lag probe: luma / baseline "
            f"{lu['probe_cpu_s']:.2f} / {ba['probe_cpu_s']:.2f})",
            f"{lu['cpu_s']:.2f}",
            f"{ba['cpu_s']:.2f}",
            f"{raw_ratio:.3f}x",
            "report",
            "",
        ],
        [
            "Peak RSS, MiB (growth during phase)",
            f"{lu['rss_peak_mib']:.0f} (+{lu['rss_growth_mib']:.0f})",
            f"{ba['rss_peak_mib']:.0f} (+{ba['rss_growth_mib']:.0f})",
            "",
            "report",
            "",
        ],
        [
            "Event-loop lag p99, ms",
            f"{lu['loop_lag_p99_ms']:.1f}",
            f"{ba['loop_lag_p99_ms']:.1f}",
            "",
            "< 50",
            verdict(lu["loop_lag_p99_ms"] < 50),
        ],
        [
            "Event-loop lag max, ms (at s into phase)",
            f"{lu['loop_lag_max_ms']:.1f} (@{lu['loop_lag_max_at_s']:.1f})",
            f"{ba['loop_lag_max_ms']:.1f} (@{ba['loop_lag_max_at_s']:.1f})",
            "",
            "report",
            "",
        ],
        [
            "10 ms ticks late by > 50 ms",
            f"{lu['loop_lags_over_50ms']}/{lu['ticks']}",
            f"{ba['loop_lags_over_50ms']}/{ba['ticks']}",
            "",
            "report",
            "",
        ],
        [
            "Completion -> event, median s",
            f"{lu['detect_lag_median_s']:.2f}",
            f"{ba['detect_lag_median_s']:.2f}",
            "",
            f"<= {interval / 2:g} (interval/2)",
            verdict(lu["detect_lag_median_s"] <= interval / 2),
        ],
        [
            "Completion -> event, p90 / max s",
            f"{lu['detect_lag_p90_s']:.2f} / {lu['detect_lag_max_s']:.2f}",
            f"{ba['detect_lag_p90_s']:.2f} / {ba['detect_lag_max_s']:.2f}",
            "",
            "report",
            "",
        ],
        ["Longest poll cycle (all batch requests), s", f"{lu['serve_max_s']:.2f}", "n/a", "", "report", ""],
        ["Wall time of phase, s", f"{lu['wall_s']:.1f}", f"{ba['wall_s']:.1f}", "", "report", ""],
        [
            "Pollers left after all triggers ended",
            lu["leftover_pollers"],
            "n/a",
            "",
            "0",
            verdict(lu["leftover_pollers"] == 0),
        ],
    ]
    title = (
        f"### Many waits: {n} concurrent waits, poll interval {interval:g} s, "
        f"completions spread {res['spread'][0]:g}-{res['spread'][1]:g} s\n\n"
    )
    return title + markdown_table(
        ["Metric", "LumaTrigger", "HttpAsyncHook baseline", "Ratio", "Goal", "Result"], rows
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--spread-from", type=float, default=10.0)
    parser.add_argument("--spread-to", type=float, default=45.0)
    parser.add_argument("--order", default="luma,baseline", help="phase order, comma separated")
    parser.add_argument("--json", type=Path, default=None, help="also write raw results here")
    args = parser.parse_args(argv)

    # Import everything both phases use before measuring, so neither pays import cost.
    import aiohttp  # noqa: F401
    import requests  # noqa: F401
    import structlog
    from airflow.providers.http.hooks.http import HttpAsyncHook  # noqa: F401

    from luma_provider.triggers.luma import LumaTrigger  # noqa: F401

    # Triggers log through structlog (Airflow's config); keep INFO out of both phases.
    logging.disable(logging.INFO)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    with sandbox_process(queue_seconds=QUEUE_SECONDS, process_seconds=10) as url:
        os.environ["AIRFLOW_CONN_LUMA_DEFAULT"] = luma_conn_json(url)
        os.environ["AIRFLOW_CONN_LUMA_HTTP"] = json.dumps({"conn_type": "http", "host": url})
        phases = asyncio.run(main_async(args, url))
    res = {
        **phases,
        "interval": args.interval,
        "spread": [args.spread_from, args.spread_to],
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }
    table = report(res, args.interval)
    print(table)
    if args.json:
        args.json.write_text(json.dumps({"results": res, "table": table}, indent=2, default=str))
    lu = res["luma"]
    ok = lu["delivered"] == lu["n"] and not lu["error_count"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
