"""The journal: an append-only SQLite log of everything a search does; the truth it resumes from.

Event kinds: run_started, root, node_created, stage_started, stage_requeued, stage_finished,
stage_failed, node_pruned, proposal (with its full input and output; one that closed its node says
so), branches_reopened, depth_extended, best_changed, checkpoint_deleted, sibling_soup_tried,
sibling_soup and update_scale_tried, scaled_update (free nodes built from checkpoints), draws_decided
(search.draws_min_gain: the draws of the stages from then on), batch_done (all that follows a batch
of stages is done), soup_built, test_scored, run_finished.
Each append is its own committed transaction, so a search killed at any moment leaves a journal that
replays to the tree as it was at its last event.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from llmzero.search.tree import Tree

SCHEMA_VERSION = 1


class JournalError(ValueError):
    """A journal that cannot be opened or read; one line naming the problem."""


class Journal:
    def __init__(self, path: str | Path, *, create: bool = False):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise JournalError(f"journal {str(self.path)!r} does not exist")
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: one event, one commit
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self.db.execute("CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                            "ts REAL NOT NULL, kind TEXT NOT NULL, node_id TEXT, payload TEXT NOT NULL)")
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as e:
            raise JournalError(f"journal {str(self.path)!r} is not a readable SQLite file ({e})") from None
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) != SCHEMA_VERSION:
            raise JournalError(f"journal {str(self.path)!r} has schema version {row[0]}; this llmzero reads "
                               f"version {SCHEMA_VERSION}")

    def append(self, kind: str, node_id: str | None = None, payload: dict[str, Any] | None = None) -> None:
        self.db.execute("INSERT INTO events (ts, kind, node_id, payload) VALUES (?, ?, ?, ?)",
                        (time.time(), kind, node_id, json.dumps(payload or {}, default=str)))

    def events(self, kind: str | None = None) -> Iterator[tuple[int, float, str, str | None, dict[str, Any]]]:
        q = "SELECT seq, ts, kind, node_id, payload FROM events"
        rows = self.db.execute(q + (" WHERE kind=? ORDER BY seq" if kind else " ORDER BY seq"),
                               (kind,) if kind else ())
        for seq, ts, k, node_id, payload in rows:
            yield seq, ts, k, node_id, json.loads(payload)

    def replay(self) -> Tree:
        tree = Tree()
        for _, _, kind, node_id, payload in self.events():
            tree.apply(kind, node_id, payload)
        return tree

    def close(self) -> None:
        self.db.close()


class Recorder:
    """Appends an event to the journal and applies it to the live tree, in that order."""

    def __init__(self, journal: Journal, tree: Tree):
        self.journal, self.tree = journal, tree

    def __call__(self, kind: str, node_id: str | None = None, payload: dict[str, Any] | None = None) -> None:
        payload = json.loads(json.dumps(payload or {}, default=str))  # the tree sees exactly what replay sees
        self.journal.append(kind, node_id, payload)
        self.tree.apply(kind, node_id, payload)


class RunLock:
    """One search at a time in a run directory.

    Two searches writing one directory (a resumed run started while the first still trains) would
    requeue and publish the same nodes over each other. The lock is an advisory ``flock`` on
    ``search.lock``, which the OS drops when the holding process ends, however it ends: a killed
    search never leaves a stale lock behind. Readers (``llmzero show``, reports) take no lock.
    """

    NAME = "search.lock"

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / self.NAME
        try:
            self._fh = open(self.path, "a+")  # noqa: SIM115 - held open for the run: closing drops the lock
        except OSError as e:
            raise JournalError(f"run directory {str(run_dir)!r} cannot be written ({e.strerror})") from None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock on this platform: no guard
            return
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.seek(0)
            holder = self._fh.read().strip() or "unknown"
            self._fh.close()
            raise JournalError(f"run directory {str(run_dir)!r} is in use by another search (pid {holder}): "
                               "let it finish or stop it, then resume") from None
        self._fh.seek(0)
        self._fh.truncate()
        self._fh.write(f"{os.getpid()}\n")
        self._fh.flush()

    def release(self) -> None:
        if not self._fh.closed:
            self._fh.seek(0)
            self._fh.truncate()  # no pid left behind by a search that ended cleanly
            self._fh.close()

    @classmethod
    def holder(cls, run_dir: str | Path) -> int | None:
        """The pid of the search that writes ``run_dir`` now, else None; read without locking, for display.
        A pid left by a killed search counts only if that process is still the one that took the lock
        (created before the lock file was written), not a later process that reuses the number."""
        import psutil

        path = Path(run_dir) / cls.NAME
        try:
            text, written = path.read_text().strip(), path.stat().st_mtime
            pid = int(text)
            return pid if psutil.Process(pid).create_time() <= written + 1 else None
        except (OSError, ValueError, psutil.Error):
            return None
