import sqlite3

import pytest

from llmzero.search.journal import SCHEMA_VERSION, Journal, JournalError, Recorder
from llmzero.search.tree import ROOT, NodeState, Tree


def _grow(record):
    record("run_started", None, {"config": {"x": 1}})
    record("root", ROOT, {"params": {"learning_rate": 1e-4}, "val_score": 0.3})
    record("node_created", "n1", {"parent_id": ROOT, "depth": 1, "params": {"learning_rate": 2e-4}, "steps": 5,
                                  "transition": {"reason": "try", "proposed_by": "test"}})
    record("stage_started", "n1", {})
    record("stage_finished", "n1", {"history": [{"reward": 0.5, "step": 1}], "val_score": 0.4,
                                    "cost": {"steps": 5, "generated_tokens": 100}, "checkpoint": "x/n1"})
    record("best_changed", "n1", {})
    record("node_created", "n2", {"parent_id": "n1", "depth": 2, "params": {"learning_rate": 1e-4}, "steps": 5})
    record("stage_started", "n2", {})


def test_replay_equals_the_live_tree(tmp_path):
    j = Journal(tmp_path / "j.sqlite", create=True)
    live = Tree()
    _grow(Recorder(j, live))
    j.close()
    again = Journal(tmp_path / "j.sqlite").replay()
    assert again.signature() == live.signature()
    assert again.nodes["n1"].history == live.nodes["n1"].history and again.best_id == "n1"
    assert again.nodes["n2"].state is NodeState.RUNNING and again.spent() == 100
    assert [n.id for n in again.path("n2")] == [ROOT, "n1", "n2"]


def test_schema_version_is_checked(tmp_path):
    Journal(tmp_path / "j.sqlite", create=True).close()
    db = sqlite3.connect(tmp_path / "j.sqlite")
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(JournalError, match="schema version"):
        Journal(tmp_path / "j.sqlite")


def test_missing_and_corrupt_journal(tmp_path):
    with pytest.raises(JournalError, match="does not exist"):
        Journal(tmp_path / "none.sqlite")
    (tmp_path / "bad.sqlite").write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(JournalError, match="not a readable SQLite"):
        Journal(tmp_path / "bad.sqlite")
