"""Weight soups (llmzero.training.soup): the greedy choice, the average, and a soup written to disk."""

import shutil

import pytest
import torch

from llmzero.training.soup import WEIGHTS, Souper, average, greedy_soup, path_soup


def test_greedy_soup_keeps_each_ingredient_that_does_not_lower_the_score():
    scores = {("a",): 0.50, ("a", "b"): 0.48, ("a", "c"): 0.50, ("a", "c", "d"): 0.53}
    asked = []

    def score(ids):
        asked.append(tuple(ids))
        return scores[tuple(ids)]

    assert greedy_soup(["a", "b", "c", "d"], score) == (["a", "c", "d"], 0.53)
    assert asked == [("a",), ("a", "b"), ("a", "c"), ("a", "c", "d")]  # b lowered it: never tried again
    assert greedy_soup(["a"], score) == (["a"], 0.50)


def test_average_is_the_uniform_mean_in_float32():
    a = {"w": torch.tensor([1.0, 2.0], dtype=torch.bfloat16), "b": torch.tensor([0.0])}
    b = {"w": torch.tensor([3.0, 6.0], dtype=torch.bfloat16), "b": torch.tensor([1.0])}
    avg = average([a, b])
    assert avg["w"].dtype == torch.float32 and avg["w"].tolist() == [2.0, 4.0] and avg["b"].tolist() == [0.5]


@pytest.mark.slow
def test_a_saved_soup_is_the_average_and_scores_as_in_memory(xs_base, small_sizes, tmp_path):
    from safetensors.torch import load_file, save_file

    from llmzero.tasks import get_task
    from llmzero.training.evaluate import evaluate_checkpoint

    for nid in ("n1", "n2"):
        shutil.copytree(xs_base.path, tmp_path / nid)
    w = load_file(str(tmp_path / "n2" / WEIGHTS))
    save_file({k: v * 0.5 if v.ndim == 2 else v for k, v in w.items()}, str(tmp_path / "n2" / WEIGHTS))
    task = get_task("number_sorting", sizes=small_sizes)
    souper = Souper(task, {"n1": str(tmp_path / "n1"), "n2": str(tmp_path / "n2")}, 16)
    out = souper.save(["n1", "n2"], tmp_path / "soup")
    saved = load_file(str(out / WEIGHTS))
    k = next(k for k, v in w.items() if v.ndim == 2)
    assert torch.allclose(saved[k], w[k] * 0.75)  # (1 + 0.5) / 2 of the first model's matrix
    assert evaluate_checkpoint(task, str(out), "test", 16) == souper.score(["n1", "n2"], "test")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no half-written dir left


def test_a_path_soup_needs_two_scored_stages_and_a_top_of_two(tmp_path):
    import json

    stage = {"stage": {"params": {"max_completion_length": 8}}, "val_score": 0.5}
    (tmp_path / "stages.json").write_text(json.dumps([stage, {**stage, "val_score": None}]))
    (tmp_path / "stage-0").mkdir()
    (tmp_path / "stage-1").mkdir()
    assert path_soup(None, tmp_path, 5) is None  # one stage has a validation score: nothing to average
    (tmp_path / "stages.json").write_text(json.dumps([stage, stage]))
    assert path_soup(None, tmp_path, 1) is None  # a soup of at most one is the stage itself
    (tmp_path / "stage-1").rmdir()
    assert path_soup(None, tmp_path, 5) is None  # a stage without its checkpoint cannot be averaged
    assert not (tmp_path / "soup.json").exists()
