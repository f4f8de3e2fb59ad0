"""Benchmark 4 - official flavour: status of N waited generations without a batch route.

Luma's Dream Machine API has no batch status route. The shared trigger poller could either send
one ``GET /generations/{id}`` per waited id (``LumaHook.aget_generations``, up to
``status_concurrency`` in flight over the hook's one aiohttp session), or sweep
``GET /generations?limit=100&offset=k`` pages until every waited id was seen. This measures both.

The sandbox runs in a *separate* process (``--api-flavour official``, ``queue_seconds`` of a day,
so nothing finishes during the run); its CPU comes from ``/proc/<pid>/stat`` (utime + stime), the
client's from ``time.process_time``. A simulated network round trip is a sandbox ``delay`` fault
on the ``get`` and ``list`` routes (``RTT`` seconds before each answer).

Generations are created through the official API (POST ``/generations/video``) in three layouts:

* ``M=0``: only the ``max(N)`` waited generations;
* ``M newer``: then ``M`` "other" generations created *after* them (another run on the same
  account submitted later): a sweep must read past all of them first;
* ``M older``: after a reset, ``M`` others first, then the waited ones (the best case for a
  sweep: the waited ids are on the first pages).

For size N the waited ids are the newest N of the waited group. Strategies, each run for
``--cycles`` status cycles after one unmeasured warm-up call (the poller's session is warm in
steady state), every cycle checked to return all N ids:

* ``per-id GETs, c=K``: ``hook.aget_generations(ids, skip_missing=True)`` exactly as the poller
  calls it, with connection extra ``status_concurrency=K`` (K = 1, 8, 16); measured in every
  layout at ``M=0`` and with ``c=8`` at ``M newer`` to show it does not depend on the account;
* ``list sweep``: pages of 100 through the hook's own list flow (same session, same decoding as
  ``list_generations``), one after the other, stopping when all N ids were seen or ``has_more``
  is false.

Combinations whose estimated cycle (round trips x RTT) exceeds ``--max-cycle-seconds`` are
skipped and listed. Bytes received are counted per response (status line + headers +
Content-Length) by an aiohttp trace on the hook's session, which also records the client-side
peak of requests in flight.

Usage: ``python benchmarks/bench_official_status.py [--sizes 100,1000] [--others 5000]
[--rtts 0,0.1] [--cycles 3] [--quick] [--json out.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    API_KEY,
    SandboxURL,
    luma_conn_json,
    markdown_table,
    proc_cpu_seconds,
    sandbox_process,
)

os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

QUEUE_SECONDS = 86_400.0  # nothing finishes while we measure
PAGE = 100  # the documented default page size of GET /generations
CONCURRENCIES = (1, 8, 16)
POLL_RETRIES = 1  # what the poller's hook uses (triggers/poller.py)
CREATE_CONCURRENCY = 16
OFFICIAL = "/dream-machine/v1"


def conn_id(concurrency: int) -> str:
    return f"luma_official_c{concurrency}"


class Meter:
    """Bytes received and requests in flight, from an aiohttp trace on the hook's session."""

    def __init__(self) -> None:
        self.bytes = 0
        self.responses = 0
        self.in_flight = 0
        self.peak = 0
        self.attached = False

    def reset(self) -> None:
        self.bytes = self.responses = self.peak = 0

    def trace_config(self) -> Any:
        import aiohttp

        async def on_start(session: Any, ctx: Any, params: Any) -> None:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)

        async def on_end(session: Any, ctx: Any, params: Any) -> None:
            self.in_flight -= 1
            resp = params.response
            status_line = len(f"HTTP/1.1 {resp.status} {resp.reason}\r\n")
            headers = sum(len(k) + len(v) + 4 for k, v in resp.raw_headers) + 2
            self.bytes += status_line + headers + (resp.content_length or 0)
            self.responses += 1

        async def on_error(session: Any, ctx: Any, params: Any) -> None:
            self.in_flight -= 1

        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(on_start)
        trace.on_request_end.append(on_end)
        trace.on_request_exception.append(on_error)
        trace.freeze()
        return trace


def make_hook(concurrency: int, meter: Meter) -> Any:
    """A ``LumaHook`` as the poller builds it, whose aiohttp session also feeds ``meter``."""
    from luma_provider.hooks.luma import LumaHook

    class MeteredHook(LumaHook):
        def _get_aiohttp_session(self, settings: Any) -> Any:
            fresh = self._aiohttp_session is None or self._aiohttp_session.closed
            session = super()._get_aiohttp_session(settings)
            traces = getattr(session, "_trace_configs", None)  # aiohttp internals: bytes are optional
            if fresh and isinstance(traces, list):
                traces.append(meter.trace_config())
                meter.attached = True
            return session

    return MeteredHook(conn_id(concurrency), max_retries=POLL_RETRIES)


async def create(url: str, count: int, tag: str) -> list[str]:
    """Create ``count`` video generations through the official API; ids in creation order.

    Up to ``CREATE_CONCURRENCY`` in flight, so ids within one call are only roughly ordered; the
    groups of separate calls are strictly ordered (each call ends before the next starts).
    """
    import aiohttp

    ids: list[str | None] = [None] * count
    pending = iter(range(count))
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession(headers=headers) as http:

        async def worker() -> None:
            for i in pending:
                body = {"model": "ray-flash-2", "prompt": f"bench {tag} {i}"}
                async with http.post(f"{url}{OFFICIAL}/generations/video", json=body) as resp:
                    if resp.status != 201:
                        raise RuntimeError(f"create failed: {resp.status} {await resp.text()}")
                    ids[i] = (await resp.json())["id"]

        await asyncio.gather(*(worker() for _ in range(min(CREATE_CONCURRENCY, count))))
    return [i for i in ids if i is not None]


async def sweep(hook: Any, wanted: set[str]) -> tuple[dict[str, Any], int]:
    """Read ``GET /generations`` pages until every wanted id was seen or there are no more pages."""
    from luma_provider import api

    seen: dict[str, Any] = {}
    offset = pages = 0
    while True:
        page, more = await hook._adrive(api.official_list_flow(PAGE, offset))
        pages += 1
        for gen in page:
            if gen.id in wanted:
                seen[gen.id] = gen
        if len(seen) == len(wanted) or not more or not page:
            return seen, pages
        offset += len(page)


def estimate_round_trips(strategy: str, concurrency: int, n: int, m: int, position: str) -> int:
    if strategy == "get":
        return math.ceil(n / concurrency)
    return math.ceil((n + (m if position == "newer" else 0)) / PAGE)


async def measure(
    url: SandboxURL,
    strategy: str,
    concurrency: int,
    ids: list[str],
    cycles: int,
) -> dict[str, Any]:
    from luma_provider.sandbox import SandboxAdmin

    admin = SandboxAdmin(url, api_key=API_KEY)
    meter = Meter()
    hook = make_hook(concurrency, meter)
    wanted = set(ids)
    route = "get" if strategy == "get" else "list"
    try:
        # Warm-up (not measured): settings lookup, session, `concurrency` keep-alive connections.
        if strategy == "get":
            await hook.aget_generations(ids[:concurrency], skip_missing=True)
        else:
            await sweep(hook, set(ids[:1]))
        gc.collect()
        meter.reset()
        stats0 = admin.stats()["by_route"]
        sandbox0 = proc_cpu_seconds(url.pid)
        requests0 = hook.requests_sent
        walls: list[float] = []
        pages: list[int] = []
        missing = 0
        cpu0 = time.process_time()
        for _ in range(cycles):
            start = time.perf_counter()
            if strategy == "get":
                found = {g.id for g in await hook.aget_generations(ids, skip_missing=True)}
            else:
                seen, n_pages = await sweep(hook, wanted)
                found = set(seen)
                pages.append(n_pages)
            walls.append(time.perf_counter() - start)
            missing += len(wanted - found)
        cpu = time.process_time() - cpu0
        sandbox_cpu = proc_cpu_seconds(url.pid) - sandbox0
        requests = hook.requests_sent - requests0
        stats1 = admin.stats()["by_route"]
    finally:
        await hook.aclose()
    return {
        "cycles": cycles,
        "wall_s_median": statistics.median(walls),
        "wall_s": walls,
        "requests_per_cycle": requests / cycles,
        "sandbox_requests_per_cycle": (stats1.get(route, 0) - stats0.get(route, 0)) / cycles,
        "pages_per_cycle": statistics.mean(pages) if pages else None,
        "client_cpu_s_per_cycle": cpu / cycles,
        "sandbox_cpu_s_per_cycle": sandbox_cpu / cycles,
        "kib_per_cycle": meter.bytes / 1024 / cycles if meter.attached else None,
        "bytes_per_response": meter.bytes / meter.responses if meter.attached and meter.responses else None,
        "peak_in_flight": meter.peak if meter.attached else None,
        "missing_ids": missing,
    }


def set_rtt(url: str, rtt: float) -> None:
    from luma_provider.sandbox import SandboxAdmin

    admin = SandboxAdmin(url, api_key=API_KEY)
    admin.clear_faults()
    if rtt > 0:
        for route in ("get", "list"):
            admin.add_fault(route=route, kind="delay", seconds=rtt, times=10**6)


def plan(position: str) -> list[tuple[str, int]]:
    """(strategy, concurrency) to run in a layout."""
    if position == "none":
        return [("get", c) for c in CONCURRENCIES] + [("sweep", 1)]
    if position == "newer":
        return [("get", 8), ("sweep", 1)]
    return [("sweep", 1)]


async def main_async(args: argparse.Namespace, url: SandboxURL) -> dict[str, Any]:
    from luma_provider.sandbox import SandboxAdmin

    admin = SandboxAdmin(url, api_key=API_KEY)
    sizes, m = sorted(args.sizes), args.others
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    waited: list[str] = []
    setup_s: dict[str, float] = {}
    for position in ("none", "newer", "older"):
        start = time.monotonic()
        if position == "none":
            admin.reset()
            waited = await create(url, sizes[-1], "waited")
        elif position == "newer":
            await create(url, m, "other-newer")
        else:
            admin.reset()
            await create(url, m, "other-older")
            waited = await create(url, sizes[-1], "waited")
        setup_s[position] = time.monotonic() - start
        layout_m = 0 if position == "none" else m
        for rtt in args.rtts:
            set_rtt(url, rtt)
            for n in sizes:
                ids = waited[-n:]  # the newest n of the waited group
                for strategy, concurrency in plan(position):
                    key = {
                        "rtt_s": rtt,
                        "n": n,
                        "m_other": layout_m,
                        "other_position": position,
                        "strategy": strategy,
                        "concurrency": concurrency if strategy == "get" else None,
                    }
                    trips = estimate_round_trips(strategy, concurrency, n, layout_m, position)
                    if trips * rtt > args.max_cycle_seconds:
                        skipped.append({**key, "estimated_cycle_s": trips * rtt})
                        continue
                    res = {**key, **await measure(url, strategy, concurrency, ids, args.cycles)}
                    rows.append(res)
                    print(f"[bench] official-status: {json.dumps(res)}", file=sys.stderr, flush=True)
    return {"rows": rows, "skipped": skipped, "setup_s": setup_s}


def label(row: dict[str, Any]) -> str:
    if row["strategy"] == "get":
        return f"per-id GETs, status_concurrency {row['concurrency']}"
    return {
        "none": "list sweep",
        "older": "list sweep, waited newest (best case)",
        "newer": "list sweep, others newer (worst case)",
    }[row["other_position"]]


def position_text(row: dict[str, Any]) -> str:
    if row["m_other"] == 0:
        return "0"
    return f"{row['m_other']:,} {row['other_position']}"


def fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def report(res: dict[str, Any]) -> str:
    rows = sorted(
        res["rows"],
        key=lambda r: (r["rtt_s"], r["n"], r["strategy"] != "get", r["m_other"], r["other_position"]),
    )
    table_rows = [
        [
            f"{r['rtt_s']:g}",
            f"{r['n']:,}",
            position_text(r),
            label(r),
            fmt(r["wall_s_median"], 3),
            f"{r['requests_per_cycle']:g}",
            fmt(r["client_cpu_s_per_cycle"], 3),
            fmt(r["sandbox_cpu_s_per_cycle"], 3),
            fmt(r["kib_per_cycle"], 0),
            "n/a" if r["peak_in_flight"] is None else r["peak_in_flight"],
            r["missing_ids"],
        ]
        for r in rows
    ]
    title = (
        f"### Official flavour: status of N waited generations, {res['cycles']} cycles each "
        f"(median wall), pages of {PAGE}\n\n"
    )
    table = markdown_table(
        [
            "RTT s",
            "N waited",
            "M other",
            "Strategy",
            "Wall s / cycle",
            "Requests / cycle",
            "Client CPU s / cycle",
            "Sandbox CPU s / cycle",
            "KiB received / cycle",
            "Peak in flight",
            "Ids missed",
        ],
        table_rows,
    )
    notes = []
    for s in res["skipped"]:
        what = (
            f"per-id GETs, status_concurrency {s['concurrency']}"
            if s["strategy"] == "get"
            else label({**s, "strategy": "sweep"})
        )
        notes.append(
            f"RTT {s['rtt_s']:g} s, N {s['n']:,}, M {s['m_other']:,}: {what} "
            f"(~{s['estimated_cycle_s']:.0f} s per cycle)"
        )
    if notes:
        table += f"\n\nSkipped (estimated cycle > {res['max_cycle_seconds']:g} s): " + "; ".join(notes) + "."
    return title + table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[100, 1000])
    parser.add_argument("--others", type=int, default=5000, help="M: other generations on the account")
    parser.add_argument("--rtts", type=lambda s: [float(x) for x in s.split(",")], default=[0.0, 0.1])
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--max-cycle-seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help="smoke size: N 20,50, M 300, 1 cycle")
    parser.add_argument("--json", type=Path, default=None, help="also write raw results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.others, args.rtts, args.cycles = [20, 50], 300, [0.0, 0.02], 1

    import aiohttp  # noqa: F401  (import cost out of the measurements)
    import structlog

    from luma_provider.hooks.luma import LumaHook  # noqa: F401

    logging.disable(logging.INFO)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

    load_start = Path("/proc/loadavg").read_text().split()[:3]
    wall0 = time.monotonic()
    options: dict[str, float | str] = {
        "api_flavour": "official",
        "queue_seconds": QUEUE_SECONDS,
        "process_seconds": 10,
        "starting_credits": 1e12,
    }
    with sandbox_process(**options) as url:
        for c in CONCURRENCIES:
            os.environ[f"AIRFLOW_CONN_{conn_id(c).upper()}"] = luma_conn_json(
                url, api_flavour="official", status_concurrency=c
            )
        res = asyncio.run(main_async(args, url))
    res.update(
        {
            "cycles": args.cycles,
            "page": PAGE,
            "sizes": args.sizes,
            "others": args.others,
            "rtts": args.rtts,
            "max_cycle_seconds": args.max_cycle_seconds,
            "total_wall_s": time.monotonic() - wall0,
            "loadavg_start": load_start,
            "loadavg": Path("/proc/loadavg").read_text().split()[:3],
            "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        }
    )
    table = report(res)
    print(table)
    print(f"[bench] official-status: total {res['total_wall_s']:.0f} s", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps({"results": res, "table": table}, indent=2, default=str))
    ok = all(r["missing_ids"] == 0 for r in res["rows"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
