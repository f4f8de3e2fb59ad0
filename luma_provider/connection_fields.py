"""The ``luma`` connection's extra fields, declared once.

``get_provider_info`` turns them into the connection form's widgets and
``api.settings_from_connection`` into validated settings. Plain data, no imports: Airflow
reads this during provider discovery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_CONN_ID = "luma_default"
DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 5
DEFAULT_BATCH_SIZE = 100
#: Status GETs in flight at once where there is no batch route (measured in BENCHMARKS.md).
DEFAULT_STATUS_CONCURRENCY = 8
#: Seconds a download may go without receiving a byte (a whole video may take much longer).
DEFAULT_DOWNLOAD_STALL_TIMEOUT = 60.0
#: Largest API reply accepted, after decompression.
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024**2
#: ``gateway``: the API gateways' ``/luma/...`` routes; ``official``: Luma's Dream Machine API.
API_FLAVOURS = ("gateway", "official")
#: Where the official API lives below its host; a host URL ending so selects ``official``.
OFFICIAL_PATH = "/dream-machine/v1"


@dataclass(frozen=True)
class ConnectionField:
    """One extra field: its JSON type, default, lower bound and form texts."""

    name: str
    kind: str  # "number", "integer", "string" or "boolean" (JSON schema types)
    default: Any
    label: str
    description: str
    minimum: float | None = None
    #: The lowest value the form suggests (the code accepts down to ``minimum``).
    form_minimum: float | None = None
    #: The only values accepted (a choice in the form).
    choices: tuple[str, ...] = ()

    def widget(self) -> dict[str, Any]:
        """The connection form's widget (``conn-fields`` entry of the provider info)."""
        schema: dict[str, Any] = {"type": [self.kind, "null"]}
        if self.choices:
            schema["enum"] = [*self.choices, None]
        if self.form_minimum is not None or self.minimum is not None:
            schema["minimum"] = self.form_minimum if self.form_minimum is not None else self.minimum
        if self.kind == "boolean":
            schema["default"] = self.default
        return {"label": self.label, "description": self.description, "schema": schema}


CONNECTION_FIELDS: tuple[ConnectionField, ...] = (
    ConnectionField(
        "timeout",
        "number",
        DEFAULT_TIMEOUT,
        "Request timeout (s)",
        f"Seconds for a whole API request, body included. Default {DEFAULT_TIMEOUT:g}.",
        minimum=0.001,
        form_minimum=1,
    ),
    ConnectionField(
        "max_retries",
        "integer",
        DEFAULT_MAX_RETRIES,
        "Max retries",
        f"Retries for 429, 5xx and connection errors (backoff with jitter). Default {DEFAULT_MAX_RETRIES}.",
        minimum=0,
    ),
    ConnectionField(
        "batch_size",
        "integer",
        DEFAULT_BATCH_SIZE,
        "Batch status chunk size",
        f"Ids per POST /luma/tasks request. Default {DEFAULT_BATCH_SIZE}.",
        minimum=1,
    ),
    ConnectionField(
        "status_concurrency",
        "integer",
        DEFAULT_STATUS_CONCURRENCY,
        "Concurrent status lookups",
        "Status GETs in flight at once where there is no batch route (the official API, gateways "
        f"without POST /luma/tasks). Default {DEFAULT_STATUS_CONCURRENCY}.",
        minimum=1,
    ),
    ConnectionField(
        "path_prefix",
        "string",
        "",
        "Path prefix",
        "Optional lane prefix some gateways offer, e.g. /pro or /vip.",
    ),
    ConnectionField(
        "verify_ssl",
        "boolean",
        True,
        "Verify TLS certificates",
        "Turn off only for a gateway with a self-signed certificate.",
    ),
    ConnectionField(
        "max_response_bytes",
        "integer",
        DEFAULT_MAX_RESPONSE_BYTES,
        "Max API reply size (bytes)",
        "Largest API reply accepted, after decompression. Default 16 MiB.",
        minimum=1024,
    ),
    ConnectionField(
        "download_stall_timeout",
        "number",
        DEFAULT_DOWNLOAD_STALL_TIMEOUT,
        "Download stall timeout (s)",
        "Seconds a video download may go without receiving a byte. "
        f"Default {DEFAULT_DOWNLOAD_STALL_TIMEOUT:g}.",
        minimum=0.001,
        form_minimum=1,
    ),
    ConnectionField(
        "allow_private_downloads",
        "boolean",
        False,
        "Allow downloads from private addresses",
        "Download videos from loopback, private or link-local hosts (refused by default; "
        "the gateway's own host is always allowed).",
    ),
    ConnectionField(
        "min_credits",
        "number",
        None,
        "Credit floor (USD cents)",
        "Official API: before submitting, a task reads the balance once and fails without spending "
        "when it is below this. Empty: no check.",
        minimum=0,
    ),
    ConnectionField(
        "api_flavour",
        "string",
        None,
        "API flavour",
        f"gateway (the /luma/... routes of API gateways) or official (Luma's Dream Machine API). "
        f"Default: official when the host ends with {OFFICIAL_PATH}, else gateway.",
        choices=API_FLAVOURS,
    ),
)
