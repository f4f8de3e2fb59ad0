"""Apache Airflow provider for Luma AI video generation.

Kept deliberately light: Airflow imports this module during provider discovery and
every DAG parse pays for it, so nothing here imports Airflow, requests or aiohttp.
"""

from __future__ import annotations

from typing import Any

from luma_provider.connection_fields import CONNECTION_FIELDS

__version__ = "0.2.0"

CONNECTION_TYPE = "luma"


def get_provider_info() -> dict[str, Any]:
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
        "extra-links": [
            "luma_provider.links.luma.LumaVideoLink",
            "luma_provider.links.luma.LumaVideoDownloadLink",
        ],
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
                "conn-fields": {f.name: f.widget() for f in CONNECTION_FIELDS},
            }
        ],
    }
