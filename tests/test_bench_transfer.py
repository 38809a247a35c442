"""bench/transfer.py: `llmzero transfer` over source runs and targets, paired, resumed; bad input."""

import json

import pytest
import yaml

from conftest import assert_bad_config_is_one_line, probe_script

probe = probe_script("transfer.py")


@pytest.mark.parametrize(("config", "words"), [
    ("targets: [countdown]\n", "sources=None is not allowed: expected a non-empty list"),
    ("sources: [src]\ntargets: []\n", "targets=[] is not allowed"),
    ("sources: [nowhere/*]\ntargets: [countdown]\n", "'nowhere/*', which matches no directory"),
    ("sources: [.]\ntargets: [countdown]\nparts: [replay, all]\n", "parts has 'all', which is not allowed"),
    ("sources: [.]\ntargets: [countdown]\nparams: [0.5]\n", "params=[0.5] is not allowed: expected a mapping"),
    ("[1, 2\n", "cannot be read as YAML"),
])
def test_a_bad_config_is_one_line_and_exit_2(config, words, tmp_path):
    assert_bad_config_is_one_line(probe, "run", config, words, tmp_path)


def test_a_pair_that_fails_is_reported_and_exit_1(tmp_path):
    (tmp_path / "src" / "number_sorting" / "llmzero" / "seed0").mkdir(parents=True)  # no journal in it
    cfg = {"sources": ["src/*/*/seed0"], "targets": ["countdown"]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = probe("run", "c.yaml", "--out", "runs", cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "number_sorting-llmzero-seed0 -> countdown: FAILED (exit 2)" in r.stdout and "journal" in r.stdout, r.stdout


@pytest.mark.slow
def test_transfers_pair_the_replay_with_its_control_and_resume(xs_base, small_sizes, tmp_path):
    from llmzero.config import parse_config
    from llmzero.search import SearchRun
    from llmzero.strategy import Strategy

    from test_search import BUDGET, config

    cfg = config(xs_base, BUDGET // 3, method="mcts")
    cfg["task"]["sizes"] = small_sizes.__dict__
    src = tmp_path / "runs" / "number_sorting" / "llmzero" / "seed1"
    r = SearchRun(parse_config(cfg), src)
    r.run()
    r.close()
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"sources": ["runs/*/llmzero/seed1"],
                                                     "targets": ["number_sorting"], "params": {"temperature": 0.9}}))
    res = probe("run", "c.yaml", "--out", "tr", "--json", "res.json", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    [rec] = json.loads((tmp_path / "res.json").read_text())["records"]
    assert rec["source"] == "runs/number_sorting/llmzero/seed1" and rec["task"] == "number_sorting"
    assert 0 <= rec["replay_test_score"] <= 1 and 0 <= rec["default_test_score"] <= 1
    assert "search_test_score" not in rec  # only the parts the config names
    d = tmp_path / "tr" / "number_sorting-llmzero-seed1-to-number_sorting"
    report = json.loads((d / "transfer.json").read_text())["results"]
    assert rec["replay_is_default"] == (report["default"].get("same_as") == "replay")
    control = Strategy.load(d / ("replay" if rec["replay_is_default"] else "default") / "strategy.yaml")
    assert {s.params["temperature"] for s in control.stages} == {0.9}  # the targets' start (params)
    assert rec["target_params"] == {"temperature": 0.9}
    assert json.loads((d / "transfer.json").read_text())["params"] == {"temperature": 0.9}
    if rec["replay_is_default"]:
        assert rec["default_test_score"] == rec["replay_test_score"]
    row = next(line for line in res.stdout.splitlines() if line.startswith("| number_sorting -> number_sorting"))
    diff = rec["replay_test_score"] - rec["default_test_score"]
    assert f"| {diff:+.3f} |" in row and f"{int(rec['replay_is_default'])} of 1" in row, row
    before = (d / "replay" / "summary.json").stat().st_mtime
    again = probe("run", "c.yaml", "--out", "tr", cwd=tmp_path)  # done pairs are kept, not trained again
    assert again.returncode == 0 and (d / "replay" / "summary.json").stat().st_mtime == before
