"""bench/schedules.py: schedules trained by `llmzero train`, paired by seed, resumed, souped; bad input."""

import json

import pytest
import yaml

from conftest import assert_bad_config_is_one_line, probe_script

probe = probe_script("schedules.py")


@pytest.mark.parametrize(("config", "words"), [
    ("task: number_sorting\nseeds: [0]\n", "schedules=None is not allowed: expected a dict"),
    ("task: number_sorting\nseeds: 0\nschedules: {a: []}\n", "seeds=0 is not allowed: expected a list"),
    ("task: number_sorting\nseeds: [0]\nschedules: {}\n", "schedules is empty"),
    ("[1, 2\n", "cannot be read as YAML"),
    ("task: number_sorting\nseeds: [0]\ndifficulty: 4\nschedules: {a: []}\n", "difficulty=4 is not allowed: expected 1, 2 or 3"),
])
def test_a_bad_config_is_one_line_and_exit_2(config, words, tmp_path):
    assert_bad_config_is_one_line(probe, "table", config, words, tmp_path)


def test_a_run_that_fails_is_reported_and_exit_1(tmp_path):
    cfg = {"task": "number_sorting", "seeds": [0], "schedules": {"bad": [{"steps": 1, "params": {"beta": 9}}]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = probe("run", "c.yaml", "--out", "runs", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "bad seed 0: FAILED (exit 2)" in r.stdout and "beta=9" in r.stdout, r.stdout


@pytest.mark.slow
def test_schedules_pair_by_seed_resume_and_soup(xs_base, tmp_path):
    one = {"steps": 2, "params": {"num_generations": 4, "max_completion_length": 8}}
    cfg = {"task": "number_sorting", "model": xs_base.path, "seeds": [3],
           "schedules": {"same": [one, one], "halved": [one, {**one, "params": {**one["params"],
                                                                               "learning_rate": 5e-5}}]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = probe("run", "c.yaml", "--out", "runs", "--json", "res.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    recs = {x["schedule"]: x for x in json.loads((tmp_path / "res.json").read_text())["records"]}
    assert set(recs) == {"same", "halved"} and all(len(x["val_scores"]) == 2 for x in recs.values())
    # the same base, stage seeds and data order: the first stages are the same stage
    assert recs["same"]["val_scores"][0] == recs["halved"]["val_scores"][0]
    stages = [json.loads((tmp_path / "runs" / s / "seed3" / "stages.json").read_text()) for s in ("same", "halved")]
    untimed = [[{k: v for k, v in row.items() if "time" not in k} for row in s[0]["history"]] for s in stages]
    assert untimed[0] == untimed[1]
    assert stages[1][1]["stage"]["params"]["learning_rate"] == 5e-5
    again = probe("run", "c.yaml", "--out", "runs", cwd=tmp_path)  # done runs are kept, not trained again
    assert again.returncode == 0 and again.stdout.count("done before") == 2, again.stdout
    table = probe("table", "c.yaml", "--out", "runs", "--soup", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if line.startswith("| same") or line.startswith("| halved")]
    diff = recs["halved"]["val_scores"][-1] - recs["same"]["val_scores"][-1]
    assert len(rows) == 2 and f"{diff:+.3f}" in rows[1] and "soup test" in table.stdout
    soup = json.loads((tmp_path / "runs" / "same" / "seed3" / "soup.json").read_text())
    assert soup["stages"][0] in ("stage-0", "stage-1") and 0 <= soup["test_score"] <= 1
