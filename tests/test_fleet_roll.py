"""The roll's order and its rollback, in process: each step is faked, nothing is started.

tests/test_fleet.py runs real rolls; a failure after some instances were already
replaced is too costly to stage there, so its logic is checked here.
"""

from __future__ import annotations

import pytest

from tests.fleet import SCRIPTS  # noqa: F401 (puts scripts/ on sys.path)

from localfleet import roll as rolling  # noqa: E402
from localfleet.instances import Fleet, ModelSpec  # noqa: E402

V1, V2 = ModelSpec("/models/m.keras", "1"), ModelSpec("/models/m.keras", "2")


@pytest.fixture
def fleet(tmp_path):
    fleet = Fleet(tmp_path, "127.0.0.1:1", 8080, 9101, "127.0.1", 1)
    for _ in range(3):
        fleet.new_instance(V1)
    return fleet


def fake_replace(calls: list, fails: set):
    """A replace step that records (old, version) and fails for the calls numbered in ``fails``."""

    def replace(fleet, balancer, old, model, warmup, drain_timeout, prefix):
        calls.append((old.name, model.version))
        new = fleet.new_instance(model)
        if len(calls) in fails:
            fleet.forget(new)  # a failed launch removes its instance
            raise rolling.LaunchFailed(f"{new.name} did not get ready")
        fleet.forget(old)
        return new

    return replace


def test_a_failed_launch_replaces_back_what_was_rolled_newest_first(fleet, monkeypatch):
    calls = []
    monkeypatch.setattr(rolling, "replace", fake_replace(calls, fails={3}))
    with pytest.raises(rolling.RollAborted, match="roll aborted and rolled back: i6 did not get ready"):
        rolling.roll(fleet, None, V2, warmup=1, drain_timeout=1)
    assert calls == [("i1", "2"), ("i2", "2"), ("i3", "2"), ("i5", "1"), ("i4", "1")]
    assert [instance.model for instance in fleet.instances] == [V1, V1, V1]
    assert Fleet.load(fleet.run_dir).instances == fleet.instances  # the state file follows


def test_a_failed_rollback_says_so(fleet, monkeypatch):
    monkeypatch.setattr(rolling, "replace", fake_replace([], fails={2, 3}))
    with pytest.raises(rolling.RollAborted, match=r"roll aborted: i5 did not get ready; rollback incomplete"):
        rolling.roll(fleet, None, V2, warmup=1, drain_timeout=1)


def test_instances_already_on_the_model_are_skipped(fleet, monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(rolling, "replace", fake_replace(calls, fails=set()))
    rolling.roll(fleet, None, V2, warmup=1, drain_timeout=1)
    rolling.roll(fleet, None, V2, warmup=1, drain_timeout=1)
    assert len(calls) == 3
    assert "0 of 3 instances" in capsys.readouterr().out
