"""The run identity (gradual.rundir): defaults filled, where a run reports ignored."""

from __future__ import annotations

from gradual.run_config import load_run_config


def test_run_identity_fills_defaults_and_ignores_where_a_run_reports() -> None:
    from gradual.config import to_dict
    from gradual.rundir import run_identity

    cfg = load_run_config(None, {"probe.nex": 3, "seed": 7})
    recorded = to_dict(cfg)
    # A config recorded before a field existed (here: probe.backend) is the same run while that field
    # holds its default; so is one that reported elsewhere.
    del recorded["probe"]["backend"]
    recorded["train"]["report_to"] = "tensorboard"
    assert run_identity(recorded) == run_identity(cfg)
    recorded["probe"]["backend"] = "vllm"
    assert run_identity(recorded) != run_identity(cfg)
    assert run_identity({"probe": {"nex": "ten"}}) != run_identity(cfg)  # unreadable: matches nothing
    assert run_identity({}) != run_identity(load_run_config(None))  # a record without a config is no run
