"""Content-addressed caches on disk (base models, task splits).

The root is ``$LLMZERO_CACHE`` or ``~/.cache/llmzero``. Entries are keyed by a hash of everything
that built them, and written to a temporary name first, then renamed: a reader never sees half an
entry, and two processes that build the same entry at once both end with a whole one.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

# Bump when the bytes an entry holds would change for the same inputs.
CACHE_FORMAT = 1


def cache_root() -> Path:
    root = Path(os.environ.get("LLMZERO_CACHE") or Path.home() / ".cache" / "llmzero")
    root.mkdir(parents=True, exist_ok=True)
    return root


def content_hash(obj: Any, length: int = 16) -> str:
    """A stable hash of a JSON-able description (tuples become lists, unknown objects their str)."""
    blob = json.dumps({"format": CACHE_FORMAT, "obj": obj}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def load_pickle(kind: str, key: str) -> Any | None:
    path = cache_root() / kind / f"{key}.pkl"
    try:
        with path.open("rb") as f:
            return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
        return None


def save_pickle(kind: str, key: str, value: Any) -> None:
    folder = cache_root() / kind
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, folder / f"{key}.pkl")
