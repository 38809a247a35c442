"""The Ray executor (``executor.kind: ray``) on a local Ray instance: the same stages and the same tree
as the local pool, a dead actor fails only its stage, and a cluster out of reach is a one-line error."""

import os
import signal
import subprocess
import sys

import pytest
import yaml

from llmzero.config import ConfigError, parse_config
from llmzero.execution import LocalPool, RunnerSpec, make_executor
from llmzero.execution.ray_pool import RayPool, RayUnavailable
from llmzero.search import SearchRun
from llmzero.strategy import Stage, StageMode
from llmzero.tasks import TaskSpec, task_space
from llmzero.training.grpo import TrainingSettings

# make test spreads tests over processes (pytest-xdist, --dist loadgroup): one local Ray instance at a time.
pytestmark = pytest.mark.xdist_group("ray")

NO_CLUSTER = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}


def _stage(steps: int, spec: TaskSpec) -> Stage:
    space = task_space(spec.build())
    return Stage({**space.defaults(), "num_generations": 4}, steps, StageMode.CONTINUE)


def _strip(history):
    return [{k: v for k, v in h.items() if k != "step_time"} for h in history]


@pytest.mark.parametrize(("override", "words"), [
    ({"executor": {"kind": "slurm"}}, "executor.kind='slurm' is not allowed"),
    ({"executor": {"address": "auto"}}, "executor.address='auto' is not allowed with executor.kind='local'"),
    ({"executor": {"cpus_per_worker": 4}}, "executor.cpus_per_worker=4 is not allowed with executor.kind='local'"),
])
def test_bad_executor_config_names_field_value_and_allowed(override, words):
    with pytest.raises(ConfigError) as e:
        parse_config({"task": {"name": "countdown"}, "budget": {"compute": 1000}, **override})
    assert words in str(e.value) and "\n" not in str(e.value)


def test_make_executor_builds_the_kind_the_config_names():
    cfg = parse_config({"task": {"name": "countdown"}, "budget": {"compute": 1000},
                        "executor": {"kind": "ray", "workers": 3, "cpus_per_worker": 2, "gpus_per_worker": 0.5,
                                     "bf16": True}}).executor
    pool = make_executor(cfg)
    assert isinstance(pool, RayPool) and (pool.workers, pool.cpus_per_worker) == (3, 2)
    assert (pool.gpus_per_worker, pool.device, pool.bf16) == (0.5, "auto", True)
    assert make_executor(cfg, workers=5).workers == 5
    local = make_executor(parse_config({"task": {"name": "countdown"}, "budget": {"compute": 1000}}).executor)
    assert isinstance(local, LocalPool) and (local.workers, local.device, local.bf16) == (1, "auto", False)
    local = make_executor(parse_config({"task": {"name": "countdown"}, "budget": {"compute": 1000},
                                        "executor": {"device": "cpu", "bf16": True}}).executor)
    assert (local.device, local.bf16) == ("cpu", True)


def test_a_cluster_out_of_reach_is_one_line_and_leaves_no_run(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(RayUnavailable) as e:
        RayPool(1, address="auto").start()
    assert str(e.value).startswith("executor.address='auto': Ray could not start or connect") \
        and "\n" not in str(e.value)
    cfg = {"task": {"name": "countdown", "sizes": {"train": 200, "val": 20, "test": 20}}, "model": "xs",
           "budget": {"compute": 1000}, "executor": {"kind": "ray", "address": "auto"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    r = subprocess.run([sys.executable, "-m", "llmzero.cli", "search", "c.yaml", "--out", "run"], cwd=tmp_path,
                       capture_output=True, text=True, env=NO_CLUSTER, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "executor.address='auto'" in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_ray_actors_train_the_same_stages_as_the_local_pool_and_survive_a_dead_actor(xs_base, small_sizes,
                                                                                     tmp_path):
    spec = TaskSpec("number_sorting", sizes=small_sizes)
    rspec = RunnerSpec(spec, xs_base.path, TrainingSettings(prompts_per_step=4))
    st = _stage(3, spec)
    with LocalPool(workers=1) as pool:
        local = pool.run(rspec, None, st, str(tmp_path / "local"), 7)
    with RayPool(2) as pool:
        futs = [pool.submit(rspec, None, st, str(tmp_path / f"ray{i}"), 7) for i in range(2)]
        a, b = (f.result(timeout=600) for f in futs)
        assert len(set(pool.worker_pids())) == 2 and os.getpid() not in pool.worker_pids()
        # a child branches from a checkpoint an actor wrote, by its path
        child = pool.run(rspec, a.checkpoint, _stage(2, spec), str(tmp_path / "child"), 8)
        assert child.ok and child.parent == a.checkpoint and child.end_step == 5, child.error
        # an actor killed mid-stage fails that stage only; Ray restarts it for the next one
        pids = pool.worker_pids()
        long = [pool.submit(rspec, None, _stage(400, spec), str(tmp_path / f"long{i}"), 0) for i in range(2)]
        import time

        time.sleep(8)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        dead = [f.result(timeout=300) for f in long]
        assert all(d.status == "failed" and "worker" in d.error for d in dead), [d.error for d in dead]
        after = pool.run(rspec, None, _stage(1, spec), str(tmp_path / "after"), 0)
        assert after.ok, after.error
    assert local.ok and a.ok and b.ok, (local.error, a.error, b.error)
    assert _strip(a.history) == _strip(b.history) == _strip(local.history)  # bit for bit, across executors
    assert a.val_score == b.val_score == local.val_score
    assert "worker_start" in a.cost.phases and "worker_start" not in child.cost.phases  # persistent actors


@pytest.mark.slow
def test_a_search_on_ray_grows_the_same_tree_as_on_the_local_pool(xs_base, tmp_path):
    from test_search import BUDGET, config  # the tiny search of tests/test_search.py

    trees, tests = [], []
    for kind in ("local", "ray"):
        raw = {**config(xs_base, BUDGET // 2, method="mcts"), "executor": {"kind": kind, "workers": 2}}
        r = SearchRun(parse_config(raw), tmp_path / kind)
        summary = r.run()
        r.close()
        trees.append(r.tree.signature())
        tests.append(summary["test_score"])
        assert summary["nodes"] >= 3 and summary["failed"] == 0, summary  # a grown tree: see test_search
    assert trees[0] == trees[1] and tests[0] == tests[1]


def test_actors_that_reserve_gpus_get_them_from_ray_and_train_where_they_may(xs_base, small_sizes, tmp_path,
                                                                            monkeypatch):
    import ray

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)  # Ray's GPU "0" is then the first GPU

    # Ray schedules on the GPUs it is told of (none need exist): two actors share one by halves.
    ray.init(num_cpus=3, num_gpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        with RayPool(2, gpus_per_worker=0.5, device="auto") as pool:
            placed = pool.placements()
        assert [p["gpu_ids"] for p in placed] == [["0"], ["0"]], placed
        assert {p["cuda_visible_devices"] for p in placed} == {"0"}
        real = __import__("torch").cuda.is_available()
        assert {p["device"] for p in placed} == {"cuda" if real else "cpu"} and not any(p["error"] for p in placed)
        with RayPool(1, device="auto") as pool:  # no GPU reserved: the CPU, whatever the node has
            (alone,) = pool.placements()
        assert alone["gpu_ids"] == [] and alone["device"] == "cpu"
        if not real:  # cuda asked of an actor that has no real one: its stages fail with the reason
            spec = TaskSpec("number_sorting", sizes=small_sizes)
            with RayPool(1, gpus_per_worker=1, device="cuda") as pool:
                res = pool.run(RunnerSpec(spec, xs_base.path), None, _stage(1, spec), str(tmp_path / "o"), 0)
            assert res.status == "failed" and "no CUDA device is visible" in res.error, res.error
            assert "\n" not in res.error and not (tmp_path / "o").exists()
    finally:
        ray.shutdown()
