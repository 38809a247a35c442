"""bench/merges.py: the merged checkpoint of a stage's draws, the seeds, and bad input."""

import importlib.util
import shutil
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("bench_merges",
                                              Path(__file__).parent.parent / "bench" / "merges.py")
merges = importlib.util.module_from_spec(spec)
spec.loader.exec_module(merges)


def test_every_draw_has_its_own_seed():
    seeds = {merges.draw_seed(0, lin, k, j) for lin in ("shared", *merges.LINEAGES) for k in range(3)
             for j in range(4)}
    assert len(seeds) == 3 * 3 * 4
    assert merges.draw_seed(0, "merge", 1, 2) != merges.draw_seed(1, "merge", 1, 2)


@pytest.mark.slow
def test_the_merged_parent_is_the_best_draw_with_the_soups_weights(xs_base, small_sizes, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    from llmzero.tasks import get_task
    from llmzero.training.soup import WEIGHTS

    task = get_task("number_sorting", sizes=small_sizes)
    weights = load_file(str(Path(xs_base.path) / WEIGHTS))
    name = next(k for k in weights if k.endswith("norm.weight"))
    for d, delta, factor in (("a", 0.0, 1.0), ("b", 1e-6, 1.0), ("zero", 0.0, 0.0)):
        shutil.copytree(xs_base.path, tmp_path / d)
        w = {k: v * factor for k, v in weights.items()}
        w[name] = w[name] + delta
        save_file(w, str(tmp_path / d / WEIGHTS), metadata={"format": "pt"})
    (tmp_path / "b" / "optimizer.pt").write_bytes(b"the best draw's state")

    # b is the best draw: the merged checkpoint is b's directory with the average of b and a
    path, members, val = merges.merged_parent(task, [(str(tmp_path / "a"), 0.2), (str(tmp_path / "b"), 0.3)],
                                              tmp_path / "soup", 16)
    assert path == str(tmp_path / "soup") and members == [1, 0] and 0 < val < 1
    assert (tmp_path / "soup" / "optimizer.pt").read_bytes() == b"the best draw's state"
    got = load_file(str(tmp_path / "soup" / WEIGHTS))
    assert torch.equal(got[name], (weights[name] + (weights[name] + 1e-6)) / 2)
    assert all(torch.equal(got[k], weights[k]) for k in weights if k != name)
    assert not (tmp_path / "soup.tmp").exists()

    # an average that scores below the best draw is not kept: the best draw's own checkpoint is the parent
    path, members, _ = merges.merged_parent(task, [(str(tmp_path / "zero"), 0.0), (str(tmp_path / "a"), 0.3)],
                                            tmp_path / "soup2", 16)
    assert path == str(tmp_path / "a") and members == [1] and not (tmp_path / "soup2").exists()


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    ci = str(Path(__file__).parent.parent / "bench" / "configs" / "ci.yaml")
    assert merges.main([ci, "--draws", "1"]) == 2
    assert merges.main([ci, "--stages", "0"]) == 2
    assert merges.main([str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
