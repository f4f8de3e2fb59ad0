"""Provider metadata: schema-valid, every listed path importable, discovered by a real Airflow."""

from __future__ import annotations

import importlib
import importlib.resources
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

import luma_provider
from luma_provider import get_provider_info
from luma_provider.connection_fields import CONNECTION_FIELDS

AIRFLOW_BIN = Path(sys.executable).with_name("airflow")
LAYER_MODULES = {  # provider-info key -> module the layer is written in
    "hooks": "luma_provider.hooks.luma",
    "operators": "luma_provider.operators.luma",
    "sensors": "luma_provider.sensors.luma",
    "triggers": "luma_provider.triggers.luma",
}


def import_path(dotted: str):
    module_name, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


class TestProviderInfo:
    def test_validates_against_airflow_schema(self):
        schema_path = importlib.resources.files("airflow").joinpath("provider_info.schema.json")
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
        info = get_provider_info()
        jsonschema.validate(info, schema)  # raises ValidationError on any mismatch
        assert info["package-name"] == "airflow-provider-luma"
        assert info["versions"] == [luma_provider.__version__]

    def test_schema_rejects_a_broken_copy(self):
        """Guard against validating against an empty/permissive schema."""
        schema_path = importlib.resources.files("airflow").joinpath("provider_info.schema.json")
        schema = json.loads(schema_path.read_text(encoding="utf-8"))
        broken = get_provider_info()
        broken["connection-types"][0].pop("hook-class-name")
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)

    def test_layer_modules_listed(self):
        info = get_provider_info()
        for key, module in LAYER_MODULES.items():
            assert info[key] == [{"integration-name": "Luma", "python-modules": [module]}]
        assert {i["integration-name"] for i in info["integrations"]} == {"Luma"}

    def test_connection_type(self):
        (conn,) = get_provider_info()["connection-types"]
        assert conn["connection-type"] == luma_provider.CONNECTION_TYPE == "luma"
        assert conn["hook-class-name"] == "luma_provider.hooks.luma.LumaHook"
        assert conn["ui-field-behaviour"]["relabeling"]["password"] == "API key"
        assert set(conn["conn-fields"]) == {
            "timeout",
            "max_retries",
            "batch_size",
            "status_concurrency",
            "path_prefix",
            "verify_ssl",
            "max_response_bytes",
            "download_stall_timeout",
            "allow_private_downloads",
            "min_credits",
            "api_flavour",
        }

    def test_provider_info_is_json(self):
        info = get_provider_info()
        assert json.loads(json.dumps(info)) == info


class TestListedPathsImport:
    def test_hook_class(self):
        (conn,) = get_provider_info()["connection-types"]
        hook_cls = import_path(conn["hook-class-name"])
        assert inspect.isclass(hook_cls)
        assert hook_cls.conn_type == conn["connection-type"]
        assert hook_cls.hook_name == conn["hook-name"]
        assert hook_cls.conn_name_attr == "luma_conn_id"

    @pytest.mark.parametrize("key", sorted(LAYER_MODULES))
    def test_layer_modules(self, key):
        for entry in get_provider_info()[key]:
            for module_name in entry["python-modules"]:
                module = importlib.import_module(module_name)
                assert module.__name__ == module_name

    def test_extra_links(self):
        from airflow.sdk import BaseOperatorLink

        links = get_provider_info()["extra-links"]
        assert links == [
            "luma_provider.links.luma.LumaVideoLink",
            "luma_provider.links.luma.LumaVideoDownloadLink",
        ]
        for dotted in links:
            link_cls = import_path(dotted)
            assert issubclass(link_cls, BaseOperatorLink)
            assert isinstance(link_cls.name, str) and link_cls.name


def _clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(AIRFLOW_HOME=str(tmp_path), AIRFLOW__CORE__LOAD_EXAMPLES="False", PYTHONWARNINGS="ignore")
    return env


def test_import_is_light(tmp_path):
    code = (
        "import json, sys, luma_provider; luma_provider.get_provider_info(); "
        "print(json.dumps(sorted(m for m in ('airflow', 'requests', 'aiohttp', 'tenacity') if m in sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=_clean_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


_PM_SCRIPT = """
import json
from airflow.providers_manager import ProvidersManager
pm = ProvidersManager()
widgets = pm.connection_form_widgets
print(json.dumps({
    "providers": sorted(pm.providers),
    "field_behaviours": pm.field_behaviours.get("luma"),
    "widgets": {k: {"hook": w.hook_class_name, "package": w.package_name, "field": w.field,
                    "field_name": w.field_name} for k, w in widgets.items() if k.startswith("extra__luma__")},
}))
"""


# What the UI's connection form is built from, on every Airflow 3 (3.1: from the hook's fallback
# methods, with wtforms stood in for; 3.2+: from the provider info's conn-fields).
_HOOK_META_SCRIPT = """
import json
from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService
meta = {m.connection_type: m for m in HookMetaService.hook_meta_data()}["luma"]
print(json.dumps({"standard": meta.standard_fields.model_dump(), "extra": meta.extra_fields}, default=str))
"""


def _declarative_connection_form() -> bool:
    from airflow.providers_manager import ProvidersManager

    return hasattr(ProvidersManager, "_load_ui_metadata")  # Airflow 3.2+


needs_declarative_form = pytest.mark.skipif(
    not _declarative_connection_form(),
    reason="conn-fields/ui-field-behaviour in provider info need Airflow 3.2; "
    "test_connection_form_in_the_ui covers the fallback",
)


@pytest.fixture(scope="module")
def airflow_runs(tmp_path_factory):
    """Run the four Airflow subprocesses concurrently (each costs a few seconds of start-up)."""
    if not AIRFLOW_BIN.exists():
        pytest.fail(f"no airflow executable next to {sys.executable}")
    env = _clean_env(tmp_path_factory.mktemp("airflow_home"))
    commands = {
        "list": [str(AIRFLOW_BIN), "providers", "list", "-o", "json"],
        "hooks": [str(AIRFLOW_BIN), "providers", "hooks", "-o", "json"],
        "pm": [sys.executable, "-c", _PM_SCRIPT],
        "meta": [sys.executable, "-c", _HOOK_META_SCRIPT],
    }
    procs = {
        name: subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, cmd in commands.items()
    }
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"{commands[name]} failed:\n{stderr[-3000:]}"
        results[name] = stdout
    return results


def _last_json_line(stdout: str):
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith(("[", "{")):
            return json.loads(line)
    raise AssertionError(f"no JSON in output:\n{stdout[-2000:]}")


class TestAirflowDiscovery:
    def test_providers_list(self, airflow_runs):
        rows = {row["package_name"]: row for row in _last_json_line(airflow_runs["list"])}
        assert "airflow-provider-luma" in rows
        assert rows["airflow-provider-luma"]["version"] == luma_provider.__version__

    def test_providers_hooks(self, airflow_runs):
        rows = {row["connection_type"]: row for row in _last_json_line(airflow_runs["hooks"])}
        assert rows["luma"]["class"] == "luma_provider.hooks.luma.LumaHook"
        assert rows["luma"]["package_name"] == "airflow-provider-luma"
        assert rows["luma"]["hook_name"] == "Luma"
        assert rows["luma"]["conn_id_attribute_name"] == "luma_conn_id"

    @needs_declarative_form
    def test_field_behaviours(self, airflow_runs):
        data = _last_json_line(airflow_runs["pm"])
        assert "airflow-provider-luma" in data["providers"]
        behaviour = data["field_behaviours"]
        assert behaviour["relabeling"] == {"host": "Base URL", "password": "API key"}
        assert set(behaviour["hidden_fields"]) == {"schema", "port", "login", "extra"}
        assert behaviour["placeholders"]["password"] == "sk-..."

    def test_connection_form_in_the_ui(self, airflow_runs):
        meta = _last_json_line(airflow_runs["meta"])
        standard, extra = meta["standard"], meta["extra"]
        assert (standard["host"]["title"], standard["password"]["title"]) == ("Base URL", "API key")
        assert standard["login"]["hidden"] and standard["port"]["hidden"]
        assert set(extra) == {f.name for f in CONNECTION_FIELDS}
        assert extra["timeout"]["schema"]["title"] == "Request timeout (s)"
        assert extra["max_retries"]["schema"]["type"] == ["integer", "null"]
        assert (extra["verify_ssl"]["value"], extra["allow_private_downloads"]["value"]) == (True, False)
        assert {"gateway", "official"} <= set(extra["api_flavour"]["schema"]["enum"])

    @needs_declarative_form
    def test_connection_form_widgets(self, airflow_runs):
        widgets = _last_json_line(airflow_runs["pm"])["widgets"]
        assert set(widgets) == {
            f"extra__luma__{n}"
            for n in (
                "timeout",
                "max_retries",
                "batch_size",
                "status_concurrency",
                "path_prefix",
                "verify_ssl",
                "max_response_bytes",
                "download_stall_timeout",
                "allow_private_downloads",
                "min_credits",
                "api_flavour",
            )
        }
        timeout = widgets["extra__luma__timeout"]
        assert timeout["hook"] == "luma_provider.hooks.luma.LumaHook"
        assert timeout["package"] == "airflow-provider-luma"
        assert timeout["field_name"] == "timeout"
        assert timeout["field"]["schema"]["title"] == "Request timeout (s)"
        assert timeout["field"]["schema"]["minimum"] == 1
        assert widgets["extra__luma__verify_ssl"]["field"]["value"] is True
        assert widgets["extra__luma__allow_private_downloads"]["field"]["value"] is False
