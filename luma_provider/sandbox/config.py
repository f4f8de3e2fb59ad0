"""Runtime configuration of the Luma sandbox.

Every field can be changed while the server runs (``LumaSandbox.configure``,
``POST /_sandbox/config``); handlers read the live object on every request, so a
change applies to the very next request.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

SHAPES = ("native-object", "native-array", "kling-wrapper")
TASKS_SHAPES = ("array", "newapi-wrapper")
STATE_STYLES = ("gateway", "official")
NOT_FOUND_STYLES = ("404", "task_not_exist")
SUBMIT_STATUSES = (200, 201)
ASPECT_RATIOS = ("1:1", "4:3", "3:4", "16:9", "9:16")
MODEL_NAMES = ("ray-v1", "ray-v2", "ray-v3")
#: ``gateway``: the ``/luma/...`` dialect of API gateways; ``official``: Luma's own Dream
#: Machine API under ``/dream-machine/v1`` (see :mod:`luma_provider.sandbox.official`).
API_FLAVOURS = ("gateway", "official")
OFFICIAL_BASE_PATH = "/dream-machine/v1"

DEFAULT_API_KEY = "sandbox-key"


@dataclass
class SandboxConfig:
    """Behaviour switches of the fake gateway (see the package docstring for details)."""

    #: Bearer token the API routes require; ``None`` disables auth entirely.
    api_key: str | None = DEFAULT_API_KEY
    #: Which API the sandbox speaks: gateway (``/luma/...``) | official (``/dream-machine/v1/...``).
    api_flavour: str = "gateway"
    #: Body shape of submit/extend/GET: native-object | native-array | kling-wrapper.
    shape: str = "native-object"
    #: Body shape of ``POST /luma/tasks``: array | newapi-wrapper.
    tasks_shape: str = "array"
    #: State vocabulary: gateway (pending/processing/...) | official (queued/dreaming/...).
    states: str = "gateway"
    #: HTTP status of a successful submit/extend (gateways disagree: 200 or 201).
    submit_status: int = 200
    #: Unknown task id on GET: "404" (new-api envelope) | "task_not_exist" (400 task-relay body).
    not_found_style: str = "404"
    #: Whether ``POST /luma/tasks`` exists (not every gateway has it).
    batch_route: bool = True
    #: Whether ``GET /luma/generations/{id}/download_video_url`` exists.
    download_route: bool = True
    #: When true, submit/extend answer 403 insufficient_user_quota.
    quota_exhausted: bool = False
    #: Seconds a new generation stays ``pending`` (before ``time_scale``).
    queue_seconds: float = 1.0
    #: Seconds a generation stays ``processing`` (before ``time_scale``).
    process_seconds: float = 2.0
    #: Multiplier applied to both durations (0 = finish instantly).
    time_scale: float = 1.0
    #: Override the base URL used in media links (default: the Host the request came to).
    public_base_url: str | None = None
    #: Official flavour: the balance of ``GET /credits`` before any generation, in USD cents.
    starting_credits: float = 100_000.0

    def update(self, **changes: Any) -> None:
        """Validate and apply ``changes`` atomically (nothing changes if one is invalid)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown sandbox config field(s): {', '.join(unknown)}")
        candidate = dataclasses.replace(self, **changes)
        candidate.validate()
        for name in changes:
            setattr(self, name, getattr(candidate, name))

    def validate(self) -> None:
        """Raise ``ValueError`` when a field holds an unsupported value."""
        _check_choice("api_flavour", self.api_flavour, API_FLAVOURS)
        _check_choice("shape", self.shape, SHAPES)
        _check_choice("tasks_shape", self.tasks_shape, TASKS_SHAPES)
        _check_choice("states", self.states, STATE_STYLES)
        _check_choice("not_found_style", str(self.not_found_style), NOT_FOUND_STYLES)
        self.not_found_style = str(self.not_found_style)
        _check_choice("submit_status", int(self.submit_status), SUBMIT_STATUSES)
        self.submit_status = int(self.submit_status)
        for name in ("queue_seconds", "process_seconds", "time_scale", "starting_credits"):
            value = float(getattr(self, name))
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
            setattr(self, name, value)
        for name in ("batch_route", "download_route", "quota_exhausted"):
            setattr(self, name, bool(getattr(self, name)))

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe view; the API key is masked so it never leaks into stats or logs."""
        data = dataclasses.asdict(self)
        data["api_key"] = None if self.api_key is None else mask_secret(self.api_key)
        return data


def mask_secret(secret: str) -> str:
    """Show just enough of a secret to recognise it: ``"san…"``."""
    return f"{secret[:3]}…"


def _check_choice(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(str, allowed))}; got {value!r}")
