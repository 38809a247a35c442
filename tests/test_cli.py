import json
import os
import subprocess
import sys

import pytest

SCHEDULE = "stages:\n  - steps: 3\n    params: {num_generations: 4}\n  - steps: 2\n    params: {learning_rate: 5e-5}\n"


def llmzero(*args, cwd=None):
    env = {**os.environ}
    return subprocess.run([sys.executable, "-m", "llmzero.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


def test_tasks_lists_builtin_tasks():
    r = llmzero("tasks")
    assert r.returncode == 0
    for name in ("number_sorting", "countdown", "word_sorting", "arithmetic"):
        assert name in r.stdout


@pytest.mark.parametrize("schedule, extra, words", [
    (SCHEDULE, ["--task", "nope"], "unknown task 'nope'"),
    ("stages:\n  - steps: 3\n    params: {learning_rate: 5}\n", [], "learning_rate=5 is out of range"),
    ("stages:\n  - steps: 3\n    params: {lr: 1}\n", [], "unknown parameter 'lr'"),
    ("stages: [\n", [], "does not parse as YAML"),
    (SCHEDULE, ["--difficulty", "9"], "difficulty=9"),
    (SCHEDULE, ["--model", "huge"], "does not exist"),
    (SCHEDULE, ["--parent", "no/such/checkpoint"], "checkpoint 'no/such/checkpoint' does not exist"),
    (SCHEDULE, ["--workers", "many"], "'--workers'"),
    (SCHEDULE, ["--device", "tpu"], "device='tpu' is not allowed: expected one of auto, cpu, cuda"),
    ("soup:\n  - stages: [{steps: 3}]\n  - stages: [{steps: 3, params: {beta: 9}}]\n", [],
     "soup[1].stages[0].params.beta=9"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, schedule, extra, words):
    (tmp_path / "s.yaml").write_text(schedule)
    args = ["train", "--schedule", "s.yaml", "--out", "run", *(["--task", "number_sorting"]
                                                               if "--task" not in extra else []), *extra]
    r = llmzero(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "run").exists()


def test_a_search_on_a_missing_model_directory_is_one_line_and_leaves_no_run(tmp_path):
    (tmp_path / "c.yaml").write_text("task: {name: countdown}\nmodel: no/such/model\nbudget: {compute: 1000}\n")
    r = llmzero("search", "c.yaml", "--out", "run", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "error: model directory 'no/such/model' does not exist", r.stderr
    assert not (tmp_path / "run").exists()


def test_a_search_with_a_bad_prior_is_one_line_and_leaves_no_run(tmp_path):
    (tmp_path / "c.yaml").write_text("task: {name: countdown}\nmodel: xs\nsearch: {prior: no/such/run}\n"
                                     "budget: {compute: 1000}\n")
    (tmp_path / "empty").mkdir()
    for out in ("run", "empty"):
        r = llmzero("search", "c.yaml", "--out", out, cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.startswith("error: search.prior: ") \
            and r.stderr.strip().count("\n") == 0, r.stderr
    assert not (tmp_path / "run").exists() and not any((tmp_path / "empty").iterdir())


def test_corrupt_parent_checkpoint(tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "llmzero_stage.json").write_text("{not json")
    (tmp_path / "s.yaml").write_text(SCHEDULE)
    r = llmzero("train", "--task", "number_sorting", "--schedule", "s.yaml", "--parent", "ckpt", "--out", "run",
                cwd=tmp_path)
    assert r.returncode == 2 and "not a finished llmzero stage" in r.stderr and not (tmp_path / "run").exists()


def test_existing_output_is_never_overwritten(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("results")
    (tmp_path / "s.yaml").write_text(SCHEDULE)
    r = llmzero("train", "--task", "number_sorting", "--schedule", "s.yaml", "--out", "run", cwd=tmp_path)
    assert r.returncode == 2 and "not empty" in r.stderr
    assert (tmp_path / "run" / "keep.txt").read_text() == "results"


@pytest.mark.slow
def test_train_a_fixed_schedule_on_a_model_directory(tmp_path, xs_base):
    (tmp_path / "s.yaml").write_text(SCHEDULE)
    r = llmzero("train", "--task", "number_sorting", "--schedule", "s.yaml", "--model", xs_base.path,
                "--out", "run", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["stages"] == 2 and summary["failed"] == 0 and summary["steps"] == 5
    assert 0 <= summary["test_score"] <= 1 and 0 <= summary["base_test_score"] <= 1
    stages = json.loads((tmp_path / "run" / "stages.json").read_text())
    assert stages[1]["parent"] == stages[0]["checkpoint"]
    assert stages[1]["history"][0]["learning_rate"] == pytest.approx(5e-5)
    assert (tmp_path / "run" / "strategy.yaml").exists()
    shown = llmzero("show", "run", cwd=tmp_path)  # a trained schedule shows its stages and scores
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines() if line.split()[:1] in (["1"], ["2"])]
    assert [r[:3] for r in rows] == [["1", "0->3", f"{stages[0]['val_score']:.3f}"],
                                     ["2", "3->5", f"{stages[1]['val_score']:.3f}"]]
    assert f"test accuracy {summary['test_score']:.3f}" in shown.stdout
    for command in ("report", "analyze"):  # which want a search, and say what this is
        r = llmzero(command, "run", cwd=tmp_path)
        assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "a trained schedule" in r.stderr, r.stderr


@pytest.mark.parametrize("command", ["show", "report", "analyze"])
@pytest.mark.parametrize("made, words", [
    (None, "no such directory"),
    ({}, "it holds none of them"),
    ({"stages.json": "[]"}, "it holds none of them"),  # a summary is written last: no summary, no finished run
])
def test_a_directory_that_holds_no_run_is_one_line_and_exit_2(tmp_path, command, made, words):
    if made is not None:
        (tmp_path / "d").mkdir()
        for name, text in made.items():
            (tmp_path / "d" / name).write_text(text)
    r = llmzero(command, "d", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: run='d' is not allowed: ") and (
        words in lines[0] or command != "show" and "expected a search run directory" in lines[0]), lines


def test_the_command_list_wraps_each_summary_at_the_terminal_not_at_the_source():
    r = subprocess.run([sys.executable, "-m", "llmzero.cli", "--help"], capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "400"}, timeout=600)
    assert r.returncode == 0, r.stderr
    train = [line for line in r.stdout.splitlines() if "Train a fixed multi-stage schedule" in line]
    assert len(train) == 1, r.stdout
    assert "report each stage's scores and key metrics. A search's strategy.yaml" in train[0], r.stdout
