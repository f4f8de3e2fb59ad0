"""Apache Airflow provider for Luma AI video generation.

Kept deliberately light: Airflow imports this module during provider discovery and
every DAG parse pays for it, so nothing here imports Airflow, requests or aiohttp.
"""

from __future__ import annotations

__version__ = "0.1.0"

CONNECTION_TYPE = "luma"


def get_provider_info() -> dict:
    """Describe the provider to Airflow (validated against ``provider_info.schema.json``)."""
    return {
        "package-name": "airflow-provider-luma",
        "name": "Luma",
        "description": "Batch AI video generation with Luma, through API gateways such as YEScale.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Luma",
                "external-doc-url": "https://docs.lumalabs.ai/docs/api",
                "tags": ["ai", "video"],
            }
        ],
        "hooks": [{"integration-name": "Luma", "python-modules": ["luma_provider.hooks.luma"]}],
        "operators": [{"integration-name": "Luma", "python-modules": ["luma_provider.operators.luma"]}],
        "sensors": [{"integration-name": "Luma", "python-modules": ["luma_provider.sensors.luma"]}],
        "triggers": [{"integration-name": "Luma", "python-modules": ["luma_provider.triggers.luma"]}],
        "extra-links": ["luma_provider.operators.luma.LumaVideoLink"],
        "connection-types": [
            {
                "connection-type": CONNECTION_TYPE,
                "hook-class-name": "luma_provider.hooks.luma.LumaHook",
                "hook-name": "Luma",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login", "extra"],
                    "relabeling": {"host": "Base URL", "password": "API key"},
                    "placeholders": {
                        "host": "https://gateway.example (no /luma suffix)",
                        "password": "sk-...",
                    },
                },
                "conn-fields": {
                    "timeout": {
                        "label": "Request timeout (s)",
                        "description": "Seconds to wait for each HTTP response. Default 30.",
                        "schema": {"type": ["number", "null"], "minimum": 1},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries for 429, 5xx and connection errors (backoff with jitter). Default 5.",
                        "schema": {"type": ["integer", "null"], "minimum": 0},
                    },
                    "batch_size": {
                        "label": "Batch status chunk size",
                        "description": "Ids per POST /luma/tasks request. Default 100.",
                        "schema": {"type": ["integer", "null"], "minimum": 1},
                    },
                    "path_prefix": {
                        "label": "Path prefix",
                        "description": "Optional lane prefix some gateways offer, e.g. /pro or /vip.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "verify_ssl": {
                        "label": "Verify TLS certificates",
                        "description": "Turn off only for a gateway with a self-signed certificate.",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                },
            }
        ],
    }
