"""Command line: ``python -m luma_provider.sandbox --port 8000 --api-key KEY``.

``--api-flavour official`` serves Luma's own Dream Machine API under ``/dream-machine/v1``
instead of the gateways' ``/luma/...`` routes.

Serves until SIGINT/SIGTERM. ``--port 0`` picks a free port and ``--port-file``
writes the resulting base URL to a file, so a Makefile can start the sandbox in the
background and read where it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from luma_provider.sandbox.config import (
    API_FLAVOURS,
    DEFAULT_API_KEY,
    OFFICIAL_BASE_PATH,
    SHAPES,
    STATE_STYLES,
    TASKS_SHAPES,
    SandboxConfig,
    mask_secret,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m luma_provider.sandbox", description="Local fake Luma gateway."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument(
        "--api-key",
        default=DEFAULT_API_KEY,
        help="bearer token required by /luma and the /_sandbox admin routes (except health)",
    )
    parser.add_argument(
        "--no-auth", action="store_true", help="accept requests without a key (admin routes too)"
    )
    parser.add_argument(
        "--api-flavour",
        choices=API_FLAVOURS,
        default="gateway",
        help="gateway: the /luma/... routes of API gateways; official: Luma's Dream Machine API "
        f"under {OFFICIAL_BASE_PATH}",
    )
    parser.add_argument(
        "--starting-credits",
        type=float,
        default=100_000.0,
        help="official flavour: the GET /credits balance before any generation (USD cents)",
    )
    parser.add_argument("--shape", choices=SHAPES, default="native-object")
    parser.add_argument("--tasks-shape", choices=TASKS_SHAPES, default="array")
    parser.add_argument("--states", choices=STATE_STYLES, default="gateway")
    parser.add_argument("--submit-status", type=int, choices=(200, 201), default=200)
    parser.add_argument("--not-found-style", choices=("404", "task_not_exist"), default="404")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--queue-seconds", type=float, default=1.0)
    parser.add_argument("--process-seconds", type=float, default=2.0)
    parser.add_argument("--no-batch-route", action="store_true", help="answer 404 on POST /luma/tasks")
    parser.add_argument("--no-download-route", action="store_true", help="answer 404 on download_video_url")
    parser.add_argument("--public-base-url", default=None, help="base URL to put in media links")
    parser.add_argument("--port-file", type=Path, default=None, help="write the listening URL here")
    return parser


def config_from_args(args: argparse.Namespace) -> SandboxConfig:
    config = SandboxConfig(
        api_key=None if args.no_auth else args.api_key,
        api_flavour=args.api_flavour,
        starting_credits=args.starting_credits,
        shape=args.shape,
        tasks_shape=args.tasks_shape,
        states=args.states,
        submit_status=args.submit_status,
        not_found_style=args.not_found_style,
        time_scale=args.time_scale,
        queue_seconds=args.queue_seconds,
        process_seconds=args.process_seconds,
        batch_route=not args.no_batch_route,
        download_route=not args.no_download_route,
        public_base_url=args.public_base_url,
    )
    config.validate()
    return config


async def serve(args: argparse.Namespace) -> None:
    from luma_provider.sandbox.runner import start_site
    from luma_provider.sandbox.server import SandboxState

    runner, port = await start_site(args.host, args.port, SandboxState(config_from_args(args)))
    url = f"http://{args.host}:{port}"
    key = "none, auth disabled" if args.no_auth else mask_secret(args.api_key)
    print(f"Luma sandbox listening on {url} (API key: {key})", flush=True)
    if args.api_flavour == "official":
        print(f"Official Dream Machine API at {url}{OFFICIAL_BASE_PATH}", flush=True)
    if args.port_file:
        # Write-then-rename so a reader polling for the file never sees it half written.
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(url + "\n")
        tmp.replace(args.port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):  # the signal handler normally wins
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
