from __future__ import annotations

import json

from luma_provider.ledger import GenerationLedger, default_ledger_root, key_for_request


class TestGenerationLedger:
    def test_unknown_key_is_none(self, tmp_path):
        assert GenerationLedger(str(tmp_path)).get("nope") is None

    def test_record_then_get_across_instances(self, tmp_path):
        GenerationLedger(str(tmp_path)).record("2026-11-24:abc", "gen-1")
        # A new instance (another worker, another run) sees it: nothing lives in memory.
        assert GenerationLedger(f"file://{tmp_path}").get("2026-11-24:abc") == "gen-1"
        assert GenerationLedger(str(tmp_path)).get("2026-11-25:abc") is None

    def test_record_overwrites_and_leaves_no_temp_files(self, tmp_path):
        ledger = GenerationLedger(str(tmp_path / "nested" / "ledger"))
        ledger.record("k", "gen-1")
        ledger.record("k", "gen-2")
        assert ledger.get("k") == "gen-2"
        files = sorted(p.name for p in (tmp_path / "nested" / "ledger").iterdir())
        assert len(files) == 1 and files[0].endswith(".json") and not files[0].startswith(".")
        entry = json.loads((tmp_path / "nested" / "ledger" / files[0]).read_text())
        assert entry["key"] == "k" and entry["generation_id"] == "gen-2" and entry["recorded_at"]

    def test_default_root_under_airflow_home(self, monkeypatch, tmp_path):
        monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
        assert default_ledger_root() == f"file://{tmp_path}/luma_ledger"


class TestKeyForRequest:
    def test_same_request_same_key_regardless_of_order(self):
        a = key_for_request({"user_prompt": "cat", "aspect_ratio": "16:9"})
        b = key_for_request({"aspect_ratio": "16:9", "user_prompt": "cat"})
        assert a == b and len(a) == 64

    def test_any_difference_changes_the_key(self):
        base = key_for_request({"user_prompt": "cat"})
        assert key_for_request({"user_prompt": "dog"}) != base
        assert key_for_request({"user_prompt": "cat", "loop": True}) != base
        assert key_for_request({"user_prompt": "cat"}, extend_of="gen-1") != base
