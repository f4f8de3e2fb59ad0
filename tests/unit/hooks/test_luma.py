"""``LumaHook`` refuses a bad ``luma_default`` connection before sending anything."""

from __future__ import annotations

import json

import pytest

from luma_provider.exceptions import LumaConfigError
from luma_provider.hooks.luma import LumaHook


class TestConnection:
    @pytest.mark.parametrize(
        ("conn", "match"),
        [
            ({"conn_type": "postgres", "host": "http://x"}, "conn_type 'postgres'"),
            ({"conn_type": "luma"}, "has no host"),
            ({"conn_type": "luma", "host": "ftp://x"}, "must be an http"),
            ({"conn_type": "luma", "host": "http://x", "extra": {"max_retries": "many"}}, "'max_retries'"),
            ({"conn_type": "luma", "host": "http://x", "extra": {"verify_ssl": "perhaps"}}, "'verify_ssl'"),
        ],
    )
    def test_bad_connection(self, monkeypatch, conn, match):
        monkeypatch.setenv("AIRFLOW_CONN_LUMA_DEFAULT", json.dumps(conn))
        hook = LumaHook()
        with pytest.raises(LumaConfigError, match=match):
            hook.get_generation("abc")
        assert hook.requests_sent == 0
