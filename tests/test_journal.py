import sqlite3

import pytest

from llmzero.search.journal import SCHEMA_VERSION, Journal, JournalError, Recorder, RunLock
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


def test_one_search_at_a_time_in_a_run_directory(tmp_path):
    """A search resumed while another still writes its directory would requeue and publish the same
    nodes over the other's: it stops with one line (exit 2) naming the directory and the holder's pid.
    The lock dies with its holder, so a search killed with SIGKILL leaves nothing stale behind."""
    import os
    import re
    import subprocess
    import sys

    from llmzero.config import parse_config
    from llmzero.search import JOURNAL, SearchRun

    cfg = parse_config({"task": {"name": "countdown"}, "search": {"method": "grid"}, "budget": {"compute": 1000}})
    first = SearchRun(cfg, tmp_path / "run")
    try:
        assert (tmp_path / "run" / JOURNAL).is_file()
        with pytest.raises(JournalError, match=re.escape(f"'{tmp_path / 'run'}' is in use by another search (pid {os.getpid()})")):
            SearchRun(None, tmp_path / "run", resume=True)
        r = subprocess.run([sys.executable, "-m", "llmzero.cli", "search", "--resume", "run"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert f"in use by another search (pid {os.getpid()})" in r.stderr
    finally:
        first.close()
    with pytest.raises(JournalError, match="holds no run"):  # past the lock: the first let it go on close
        SearchRun(None, tmp_path / "run", resume=True)

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from llmzero.search.journal import RunLock; "
                               "lock = RunLock(sys.argv[1]); print('held', flush=True); time.sleep(600)",
                               str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(JournalError, match=f"pid {holder.pid}"):
            RunLock(tmp_path / "run")
    finally:
        holder.kill()
        holder.wait()
    RunLock(tmp_path / "run").release()  # the killed holder's lock went with it
    assert RunLock.holder(tmp_path / "run") is None  # ended cleanly: no pid left in the file
    (tmp_path / "run" / RunLock.NAME).write_text(f"{holder.pid}\n")  # as a killed search leaves it
    assert RunLock.holder(tmp_path / "run") is None  # that process is gone
    lock = RunLock(tmp_path / "run")
    assert RunLock.holder(tmp_path / "run") == os.getpid()
    lock.release()
    with pytest.raises(JournalError, match="'.*nowhere' cannot be written"):
        RunLock(tmp_path / "nowhere")  # one line, not a traceback
