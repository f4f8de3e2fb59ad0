"""`make demo`: run the daily content DAG end to end and show where the videos are.

* Airflow state lives in ``./airflow_home`` (SQLite, created and migrated on first use) and the
  videos in ``./output/<date>/``; both are git-ignored and safe to delete.
* By default the DAG talks to the local Luma **sandbox** (a fake gateway started here on a free
  port and stopped afterwards): no account, no network, no credits.
* With ``LUMA_API_KEY`` set it talks to a real gateway instead; ``LUMA_BASE_URL`` must then say
  which (for example ``https://api.yescale.io``). That spends real credits: one video per prompt.
* ``LUMA_PROMPTS_FILE`` picks another prompt file (default ``dags/prompts/daily_prompts.yaml``);
  ``LUMA_DEMO_HOME`` / ``LUMA_DEMO_OUTPUT`` move ``airflow_home`` / ``output`` elsewhere.

The full Airflow output goes to ``airflow_home/demo.log``; the terminal gets one line per step.
Exit code: 0 when every prompt produced a video, 1 otherwise. The API key is never printed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_HOME = Path(os.environ.get("LUMA_DEMO_HOME") or ROOT / "airflow_home").resolve()
OUTPUT = Path(os.environ.get("LUMA_DEMO_OUTPUT") or ROOT / "output").resolve()
DAG_ID = "luma_daily_content"
DEFAULT_PROMPTS = ROOT / "dags" / "prompts" / "daily_prompts.yaml"
LOG_FILE = AIRFLOW_HOME / "demo.log"
STARTED = time.monotonic()
_SECRETS: list[str] = []


def say(message: str) -> None:
    """One progress line, with any secret masked."""
    for secret in _SECRETS:
        message = message.replace(secret, "***")
    print(f"[demo {time.monotonic() - STARTED:5.1f}s] {message}", flush=True)


def fail(message: str, code: int = 2) -> None:
    say(f"ERROR: {message}")
    raise SystemExit(code)


def rel(path: Path | str) -> str:
    path = Path(str(path).removeprefix("file://"))
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def base_env() -> dict[str, str]:
    """The caller's environment minus any Airflow settings: the demo uses its own home."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")) and k != "AIRFLOW_CONFIG"
    }
    env.update(
        AIRFLOW_HOME=str(AIRFLOW_HOME),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
        LUMA_OUTPUT_ROOT=f"file://{OUTPUT}",
        PYTHONUNBUFFERED="1",
    )
    return env


def migrate(env: dict[str, str]) -> None:
    """``airflow db migrate`` once per Airflow version (a stamp file remembers it)."""
    stamp = AIRFLOW_HOME / f".migrated-{version('apache-airflow')}"
    if stamp.exists() and (AIRFLOW_HOME / "airflow.db").exists():
        say(f"Airflow {version('apache-airflow')} metadata database ready in {rel(AIRFLOW_HOME)}/")
        return
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    say(f"preparing the Airflow metadata database in {rel(AIRFLOW_HOME)}/ (first run only, ~10 s)...")
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if proc.returncode != 0:
        print(proc.stdout[-4000:], file=sys.stderr)
        fail("airflow db migrate failed (output above)")
    stamp.touch()
    say("database ready")


class Sandbox:
    """The local fake gateway, in its own process group, always stopped on exit."""

    def __init__(self) -> None:
        self.key = f"sandbox-{secrets.token_hex(8)}"
        _SECRETS.append(self.key)
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self, env: dict[str, str]) -> str:
        port_file = Path(tempfile.mkdtemp(prefix="luma-demo-")) / "url"
        log = open(AIRFLOW_HOME / "sandbox.log", "w")  # noqa: SIM115 - the child's stdout until stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "luma_provider.sandbox",
                "--port",
                "0",
                "--port-file",
                str(port_file),
                "--api-key",
                self.key,
                "--queue-seconds",
                "1",
                "--process-seconds",
                "3",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                fail(f"the Luma sandbox did not start; see {rel(AIRFLOW_HOME / 'sandbox.log')}")
            time.sleep(0.05)
        self.url = port_file.read_text().strip()
        return self.url

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# What to show from `airflow dags test` output; everything is also in demo.log.
_PATTERNS = [
    (
        re.compile(r"Submitted Luma generation (\S+) for prompt '(.*)'"),
        lambda m: f"submitted {m[1][:8]}  {m[2]!s}",
    ),
    (re.compile(r"Luma accepted generation (\S+)"), lambda m: f"submitted {m[1][:8]}"),
    (
        re.compile(r"Batch of (\d+) prompts: (\d+) accepted or reused"),
        lambda m: f"chunk     {m[2]} of {m[1]} accepted",
    ),
    (
        re.compile(r"Batch of (\d+) prompts: (\d+) completed, (\d+) failed, 0 pending"),
        lambda m: f"rendered  {m[2]} of {m[1]} ({m[3]} failed)",
    ),
    (re.compile(r"Reusing generation (\S+)"), lambda m: f"reusing {m[1][:8]} from an earlier try"),
    (
        re.compile(r"Deferring: waiting for (\d+) generation"),
        lambda m: "waiting: sensor deferred to the triggerer (no worker slot held)",
    ),
    (
        re.compile(r"Generation (\S+) is completed \(raw '[^']*'\) after (\S+)"),
        lambda m: f"rendered  {m[1][:8]}",
    ),
    (re.compile(r"Generation (\S+) completed: "), lambda m: f"ready     {m[1][:8]}"),
    (
        re.compile(r"Downloaded (\S+\.mp4) \((\d+) bytes\)"),
        lambda m: f"saved     {rel(m[1])} ({int(m[2]) // 1024} KB)",
    ),
    (re.compile(r"LumaGenerationFailed: (.*)"), lambda m: f"FAILED    {m[1]}"),
    (
        re.compile(r"Wrote manifest.json and index.html in \S+: (\{[^}]*\})"),
        lambda m: f"report    manifest.json + index.html written: {m[1]}",
    ),
    (re.compile(r"RuntimeError: (.*(did not complete|have no video).*)"), lambda m: f"check     {m[1]}"),
]
_STARTING = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")


def run_dag(env: dict[str, str], prompts_file: Path, ds: str) -> int:
    cmd = [
        sys.executable,
        "-m",
        "airflow",
        "dags",
        "test",
        DAG_ID,
        ds,
        "-c",
        json.dumps({"prompts_file": str(prompts_file)}),
    ]
    seen: set[str] = set()
    with open(LOG_FILE, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            errors="replace",
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                for secret in _SECRETS:
                    line = line.replace(secret, "***")
                log.write(line)
                started = _STARTING.search(line)
                if started and started[1] in ("load_prompts", "report", "check") and started[1] not in seen:
                    seen.add(started[1])
                    say(f"task      {started[1]}")
                for pattern, show in _PATTERNS:
                    match = pattern.search(line)
                    if match:
                        say(show(match))
                        break
            return proc.wait()
        except KeyboardInterrupt:
            say("interrupted: stopping Airflow...")
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            raise


def main() -> int:
    env = base_env()
    api_key = os.environ.get("LUMA_API_KEY", "").strip()
    prompts_file = Path(os.environ.get("LUMA_PROMPTS_FILE") or DEFAULT_PROMPTS).resolve()
    if not prompts_file.is_file():
        fail(f"prompts file not found: {prompts_file}")
    if api_key:
        _SECRETS.append(api_key)
        base_url = os.environ.get("LUMA_BASE_URL", "").strip()
        if not base_url.startswith(("http://", "https://")):
            fail(
                "LUMA_API_KEY is set, so LUMA_BASE_URL must name your gateway, e.g. "
                "LUMA_BASE_URL=https://api.yescale.io (unset LUMA_API_KEY to use the local sandbox)"
            )
    import yaml  # after the checks above: a clear error beats a slow import

    prompts = yaml.safe_load(prompts_file.read_text(encoding="utf-8")) or []
    if isinstance(prompts, dict):
        prompts = prompts.get("prompts") or []
    ds = dt.datetime.now(dt.UTC).date().isoformat()
    AIRFLOW_HOME.mkdir(parents=True, exist_ok=True)
    sandbox = None if api_key else Sandbox()
    code = 1
    try:
        if sandbox:
            url = sandbox.start(env)
            say(f"Luma sandbox (local fake gateway, no credits) listening on {url}")
            env["LUMA_POLL_INTERVAL"] = "1"
            # Its media is served from 127.0.0.1, which downloads refuse unless allowed.
            conn = {
                "conn_type": "luma",
                "host": url,
                "password": sandbox.key,
                "extra": {"allow_private_downloads": True},
            }
        else:
            say(f"using the real Luma gateway at {base_url} (API key from LUMA_API_KEY; this spends credits)")
            conn = {"conn_type": "luma", "host": base_url, "password": api_key}
            if os.environ.get("LUMA_POLL_INTERVAL"):
                env["LUMA_POLL_INTERVAL"] = os.environ["LUMA_POLL_INTERVAL"]
        env["AIRFLOW_CONN_LUMA_DEFAULT"] = json.dumps(conn)
        migrate(env)
        say(f"running DAG {DAG_ID} for {ds}: submitting {len(prompts)} prompts from {rel(prompts_file)}")
        code = run_dag(env, prompts_file, ds)
    except KeyboardInterrupt:
        code = 130
    finally:
        if sandbox:
            sandbox.stop()
            say("sandbox stopped")
    if code == 130:
        return code
    return summarize(code, OUTPUT / ds)


def summarize(code: int, folder: Path) -> int:
    manifest_path = folder / "manifest.json"
    if not manifest_path.exists():
        say(f"the run ended (exit {code}) before writing a manifest; full output: {rel(LOG_FILE)}")
        return code or 1
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    counts = ", ".join(f"{n} {state}" for state, n in sorted(manifest["counts"].items()))
    say(f"{'done' if code == 0 else 'finished with failures'}: {manifest['total']} prompts -> {counts}")
    for entry in manifest["generations"]:
        if entry["state"] != "completed":
            say(f"  not completed: {entry['prompt'][:50]!r}: {entry.get('failure_reason') or entry['state']}")
    from luma_provider.gallery import usage_line

    say(f"usage: {usage_line(manifest)}")
    say(f"gallery:  {rel(folder / 'index.html')}   (open file://{folder / 'index.html'})")
    say(f"manifest: {rel(manifest_path)}")
    say(f"full Airflow output: {rel(LOG_FILE)}")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
