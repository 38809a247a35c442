import os

import pytest

from llmzero.runtime import configure_process


@pytest.fixture(autouse=True, scope="session")
def _process(tmp_path_factory):
    # Tests never touch the user's cache; one torch thread as everywhere else.
    os.environ["LLMZERO_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    configure_process(1)
    yield


@pytest.fixture(scope="session")
def small_sizes():
    from llmzero.tasks import Sizes

    return Sizes(train=2000, val=100, test=100)


# A tiny base that earns some reward (GRPO's gradient is zero for a model that is never right).
XS_SFT = dict(target_accuracy=0.1, max_steps=300, eval_every=25, eval_size=50)


@pytest.fixture(scope="session")
def xs_base(small_sizes):
    from llmzero.models.base import SFTSettings, build_base
    from llmzero.tasks import get_task

    return build_base(get_task("number_sorting", sizes=small_sizes), "xs", seed=0, sft=SFTSettings(**XS_SFT))


def probe_script(name: str):
    """``probe(*args, cwd)``: bench/NAME (a probe script on bench/probes.py) run in ``cwd``."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent.parent / "bench" / name

    def probe(*args, cwd):
        return subprocess.run([sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True,
                              timeout=900)
    return probe


def assert_bad_config_is_one_line(probe, command: str, config: str, words: str, tmp_path) -> None:
    """A probe given ``config`` says ``words`` in one line, exits 2 and writes no output directory."""
    (tmp_path / "c.yaml").write_text(config)
    r = probe(command, "c.yaml", "--out", "runs", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and words in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0 and not (tmp_path / "runs").exists()
