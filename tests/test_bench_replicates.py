"""bench/replicates.py: which first stages of two runs are replicates, and how their differences add up."""

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

spec = importlib.util.spec_from_file_location("bench_replicates",
                                              Path(__file__).parent.parent / "bench" / "replicates.py")
replicates = importlib.util.module_from_spec(spec)
spec.loader.exec_module(replicates)


def node(nid, parent, seed, **params):
    return SimpleNamespace(id=nid, parent_id=parent, seed=seed, params={"learning_rate": 1e-4, **params})


def tree(*nodes):
    return SimpleNamespace(nodes={"root": node("root", None, 0), **{n.id: n for n in nodes}})


def kept(tmp_path, name, *ids):
    for i in ids:
        (tmp_path / name / i).mkdir(parents=True)
        (tmp_path / name / i / "model.safetensors").write_bytes(b"")
    return tmp_path / name


def test_first_stages_are_the_root_children_with_a_checkpoint(tmp_path):
    t = tree(node("n1", "root", 11), node("n2", "root", 12, learning_rate=5e-5), node("n3", "n1", 13),
             node("n4", "root", 14, learning_rate=2e-4))
    got = replicates.first_stages(t, kept(tmp_path, "a", "n1", "n2", "n3"))  # n4's checkpoint was not kept
    assert sorted(n.id for n in got.values()) == ["n1", "n2"]


def test_replicates_share_parameters_and_differ_in_seed(tmp_path):
    a = tree(node("n1", "root", 11), node("n2", "root", 12, learning_rate=5e-5),
             node("n3", "root", 13, temperature=0.9))
    b = tree(node("n1", "root", 21), node("n4", "root", 12, learning_rate=5e-5),
             node("n2", "root", 22, temperature=1.1))
    pairs = replicates.replicate_pairs(replicates.first_stages(a, kept(tmp_path, "a", "n1", "n2", "n3")),
                                       replicates.first_stages(b, kept(tmp_path, "b", "n1", "n4", "n2")))
    # n1/n1: same parameters, other seeds; n2/n4: same parameters and seed, so the same stage; n3/n2 differ
    assert [(x.id, y.id) for x, y in pairs] == [("n1", "n1")]


def test_summary_of_differences():
    rows = [{"val": [0.30, 0.33], "test": [0.30, 0.32], "fresh": [0.31, 0.34]},
            {"val": [0.40, 0.36], "test": [0.40, 0.39], "fresh": [0.40, 0.37]},
            {"val": [0.50, 0.51], "test": [0.50, 0.48], "fresh": [0.50, 0.49]}]
    s = replicates.summary(rows)
    assert s["pairs"] == 3 and s["same_sign_val_fresh"] == 2
    rms = ((0.03 ** 2 + 0.03 ** 2 + 0.01 ** 2) / 3) ** 0.5
    assert s["rms_fresh_difference"] == pytest.approx(rms, abs=1e-4)
    assert s["max_fresh_difference"] == pytest.approx(0.03)
    assert 0 < s["corr_val_fresh"] <= 1 and json.dumps(s)


def test_runs_must_come_in_pairs(capsys):
    assert replicates.main(["bench/configs/ci.yaml", "runs:grid"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pairs of RUNS_DIR:METHOD" in err
    assert replicates.main(["bench/configs/ci.yaml", "a:grid", "b:grid", "--extra", "0"]) == 2
    capsys.readouterr()
    assert replicates.main(["nope.yaml", "a:grid", "b:grid"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'nope.yaml' does not exist" in err
