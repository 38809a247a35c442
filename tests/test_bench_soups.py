"""bench/soups.py: which checkpoints count, a soup of a real model, and bad input."""

import importlib.util
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

spec = importlib.util.spec_from_file_location("bench_soups",
                                              Path(__file__).parent.parent / "bench" / "soups.py")
soups = importlib.util.module_from_spec(spec)
spec.loader.exec_module(soups)


def stage(nid, val, parent="root"):
    return SimpleNamespace(id=nid, parent_id=parent, val_score=val, params={"max_completion_length": 16})


def test_kept_nodes_are_the_best_scored_stages_still_on_disk(tmp_path):
    for nid in ("n1", "n2", "n4", "n5"):
        (tmp_path / nid).mkdir()
        (tmp_path / nid / soups.WEIGHTS).write_bytes(b"")
    tree = SimpleNamespace(stages=lambda: [stage("n1", 0.40), stage("n2", 0.45), stage("n3", 0.60),
                                           stage("n4", 0.45), stage("n5", None)])
    # n3's checkpoint was deleted and n5 was never scored; ties keep the node order
    assert [n.id for n in soups.kept_nodes(tree, tmp_path, 5)] == ["n2", "n4", "n1"]
    assert [n.id for n in soups.kept_nodes(tree, tmp_path, 2)] == ["n2", "n4"]


@pytest.mark.slow
def test_a_soup_of_one_model_twice_is_that_model(xs_base, small_sizes, tmp_path):
    from llmzero.tasks import get_task

    for nid in ("n1", "n2"):
        shutil.copytree(xs_base.path, tmp_path / nid)
    task = get_task("number_sorting", sizes=small_sizes)
    row = soups.cell(task, tmp_path, [stage("n1", 0.3), stage("n2", 0.2, parent="n1")])
    assert row["soup"] == ["n1", "n2"]  # the average of two equal models scores the same: kept
    assert row["soup_test"] == row["best_test"] == row["uniform_test"]
    assert 0 < row["best_test"] < 1 and row["same_parent"] is False


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    ci = str(Path(__file__).parent.parent / "bench" / "configs" / "ci.yaml")
    assert soups.main([ci, "runs-without-method"]) == 2
    assert soups.main([ci, "runs:grid", "--top", "0"]) == 2
    assert soups.main([str(tmp_path / "missing.yaml"), "runs:grid"]) == 2
    assert soups.main([ci, f"{tmp_path}:grid"]) == 2  # no cell has a run there
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err)
