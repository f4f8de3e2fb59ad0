"""``LumaTrigger.serialize()``: what the triggerer stores and rebuilds the trigger from."""

from __future__ import annotations

from airflow_helpers import json_leaves

from luma_provider.triggers.luma import LumaTrigger


def _serde():
    try:
        from airflow.sdk.serde import deserialize, serialize
    except ImportError:  # Airflow < 3.2
        from airflow.serialization.serde import deserialize, serialize
    return deserialize, serialize


class TestSerialize:
    def test_round_trip_rebuilds_an_equal_trigger(self) -> None:
        try:
            from airflow.sdk._shared.module_loading import import_string
        except ImportError:  # Airflow < 3.2
            from airflow.utils.module_loading import import_string
        deserialize, serialize = _serde()

        trigger = LumaTrigger(
            ["gen-a", "gen-b"],
            luma_conn_id="luma_other",
            poll_interval=7,
            deadline=1_900_000_000.5,
            error_budget=4,
            cancel_on_kill=True,
            fail_fast=False,
        )
        classpath, kwargs = trigger.serialize()

        assert classpath == "luma_provider.triggers.luma.LumaTrigger"
        assert kwargs == {
            "generation_ids": ["gen-a", "gen-b"],
            "luma_conn_id": "luma_other",
            "poll_interval": 7.0,
            "deadline": 1_900_000_000.5,
            "error_budget": 4,
            "cancel_on_kill": True,
            "fail_fast": False,
        }
        assert all(isinstance(leaf, (str, float, int, type(None))) for leaf in json_leaves(kwargs))
        restored_kwargs = deserialize(serialize(kwargs))
        assert restored_kwargs == kwargs
        rebuilt = import_string(classpath)(**restored_kwargs)
        assert rebuilt.serialize() == (classpath, kwargs)

    def test_none_deadline_survives(self) -> None:
        deserialize, serialize = _serde()

        _, kwargs = LumaTrigger(["gen-a"]).serialize()
        assert kwargs["deadline"] is None
        assert deserialize(serialize(kwargs))["deadline"] is None
