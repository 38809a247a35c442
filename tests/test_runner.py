"""Real short GRPO runs on a CPU: stages, resume, parameters applied, determinism, failure as data."""

import os
from pathlib import Path

import pytest
import torch

from llmzero.execution import LocalPool, RunnerSpec
from llmzero.models.tiny import build_tiny, preset
from llmzero.strategy import Stage, StageMode
from llmzero.tasks import TaskSpec, task_space
from llmzero.training import CheckpointError, check_checkpoint
from llmzero.training.grpo import GRPOStageRunner, TrainingSettings

pytestmark = pytest.mark.slow

TIMING_KEYS = {"step_time"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory, small_sizes, xs_base):
    root = tmp_path_factory.mktemp("runner")
    os.symlink(xs_base.path, root / "base")
    spec = TaskSpec("number_sorting", sizes=small_sizes)
    task = spec.build()
    settings = TrainingSettings(prompts_per_step=4)
    runner = GRPOStageRunner(task, str(root / "base"), settings)
    space = task_space(task)
    return root, spec, task, runner, space, settings


def stage(space, steps=4, mode=StageMode.CONTINUE, **params):
    return Stage({**space.defaults(), "num_generations": 4, **params}, steps, mode)


def test_stage_reports_trl_metrics_cost_and_checkpoint(setup):
    root, _, _, runner, space, _ = setup
    res = runner.run_stage(None, stage(space), str(root / "a"), seed=0)
    assert res.ok, res.error
    assert res.start_step == 0 and res.end_step == 4 and len(res.history) == 4
    for key in ("reward", "reward_std", "frac_reward_zero_std", "entropy", "completions/mean_length",
                "completions/clipped_ratio", "grad_norm", "clip_ratio/region_mean", "learning_rate"):
        assert key in res.history[0], key
    assert 0.0 <= res.val_score <= 1.0
    assert res.cost.steps == 4 and res.cost.generated_tokens > 0
    assert set(res.cost.phases) >= {"model_load", "trainer_build", "training", "evaluation", "checkpoint_save"}
    info = check_checkpoint(res.checkpoint)
    assert info["end_step"] == 4 and info["reference"] == str(root / "base")
    assert not list(root.glob("*.tmp-*"))  # nothing half-written left behind


def test_changed_learning_rate_is_applied_on_resume(setup):
    root, _, _, runner, space, _ = setup
    # An entropy bonus gives every step a gradient. Without it, on a second machine, these 4 steps left
    # the weights exactly unchanged, as when every group shares one reward (GRPO's loss then has none).
    bonus = {"entropy_coef": 0.01}
    parent = runner.run_stage(None, stage(space, learning_rate=3e-3, **bonus), str(root / "p"), seed=0)
    child = runner.run_stage(parent.checkpoint, stage(space, learning_rate=1e-5, **bonus), str(root / "c"),
                             seed=0)
    assert child.ok, child.error
    assert child.start_step == 4 and child.end_step == 8
    assert [h["step"] for h in child.history] == [5, 6, 7, 8]
    assert all(h["learning_rate"] == pytest.approx(1e-5) for h in child.history)
    # The applied rate moves the weights: a 1e-5 stage changes them far less than a 3e-3 one.
    from safetensors.torch import load_file

    def delta(a, b):
        wa, wb = load_file(f"{a}/model.safetensors"), load_file(f"{b}/model.safetensors")
        return sum((wa[k] - wb[k]).norm() ** 2 for k in wa) ** 0.5

    big = runner.run_stage(parent.checkpoint, stage(space, learning_rate=3e-3, **bonus), str(root / "c_big"),
                           seed=0)
    assert 0 < delta(child.checkpoint, parent.checkpoint) * 20 < delta(big.checkpoint, parent.checkpoint)


def test_changed_max_completion_length_changes_lengths(setup):
    root, _, _, runner, space, _ = setup
    short = runner.run_stage(None, stage(space, max_completion_length=3), str(root / "short"), seed=0)
    long = runner.run_stage(None, stage(space, max_completion_length=12), str(root / "long"), seed=0)
    assert max(h["completions/max_length"] for h in short.history) <= 3
    assert max(h["completions/max_length"] for h in long.history) > 3
    assert short.history[-1]["completions/clipped_ratio"] >= long.history[-1]["completions/clipped_ratio"]


def test_continue_keeps_optimizer_restart_resets_it(setup):
    root, _, _, runner, space, _ = setup
    parent = runner.run_stage(None, stage(space, beta=0.05, learning_rate=3e-3, steps=8), str(root / "kp"), seed=0)
    cont = runner.run_stage(parent.checkpoint, stage(space, beta=0.05), str(root / "kc"), seed=1)
    rest = runner.run_stage(parent.checkpoint, stage(space, beta=0.05, mode=StageMode.RESTART), str(root / "kr"), seed=1)
    assert cont.ok and rest.ok, (cont.error, rest.error)
    ci, ri = check_checkpoint(cont.checkpoint), check_checkpoint(rest.checkpoint)
    assert ci["reference"] == str(root / "base") and ri["reference"] == parent.checkpoint
    assert ci["trl_step"] == 12 and ri["trl_step"] == 4  # continue resumed TRL's step counter, restart did not
    assert ci["end_step"] == ri["end_step"] == 12
    # Restart's KL reference is the parent itself: the first step's KL is exactly 0; continue's is not.
    assert rest.history[0]["kl"] == 0.0 and cont.history[0]["kl"] > 0.0
    # AdamW's step count: continued from 4, restarted from 0.
    opt_c = torch.load(f"{cont.checkpoint}/optimizer.pt", weights_only=False)["state"][0]["step"]
    opt_r = torch.load(f"{rest.checkpoint}/optimizer.pt", weights_only=False)["state"][0]["step"]
    assert float(opt_c) == 12 and float(opt_r) == 4


def _strip(history):
    return [{k: v for k, v in h.items() if k not in TIMING_KEYS} for h in history]


def test_same_seed_parent_and_stage_give_the_same_metrics_in_workers(setup):
    root, spec, _, _, space, settings = setup
    rspec = RunnerSpec(spec, str(root / "base"), settings)
    st = stage(space, steps=3)
    with LocalPool(workers=2) as pool:
        futs = [pool.submit(rspec, None, st, str(root / f"det{i}"), 7) for i in range(2)]
        a, b = (f.result() for f in futs)
        other = pool.run(rspec, None, st, str(root / "det_other"), 8)
        again = pool.run(rspec, None, st, str(root / "det2"), 7)
    assert a.ok and b.ok and again.ok
    assert _strip(a.history) == _strip(b.history) == _strip(again.history)  # bit for bit
    assert a.val_score == b.val_score
    assert _strip(other.history) != _strip(a.history)
    # Persistent workers: imports and task loading are paid by each worker's first stage only.
    assert "worker_start" not in again.cost.phases and "task_load" not in again.cost.phases


def test_failures_are_data(setup, tmp_path):
    root, spec, _, runner, space, settings = setup
    # A diverged model: NaN weights.
    nan_dir = tmp_path / "nan"
    model, tok = build_tiny(preset("xs"), seed=0, out_dir=nan_dir)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    model.save_pretrained(nan_dir)
    res = GRPOStageRunner(runner.task, str(nan_dir), settings).run_stage(None, stage(space), str(tmp_path / "o"), 0)
    assert res.status == "failed" and res.error and res.checkpoint is None
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob("o.tmp-*"))
    # A missing parent.
    res = runner.run_stage(str(tmp_path / "missing"), stage(space), str(tmp_path / "o2"), 0)
    assert res.status == "failed" and "does not exist" in res.error
    # A corrupt parent.
    good = runner.run_stage(None, stage(space), str(tmp_path / "g"), 0)
    (Path(good.checkpoint) / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt model.safetensors"):
        check_checkpoint(good.checkpoint)
    res = runner.run_stage(good.checkpoint, stage(space), str(tmp_path / "o3"), 0)
    assert res.status == "failed" and "corrupt" in res.error
    # A worker that dies mid-stage fails that stage only; the pool goes on.
    with LocalPool(workers=1) as pool:
        rspec = RunnerSpec(spec, str(root / "base"), settings)
        pool.run(rspec, None, stage(space, steps=1), str(tmp_path / "warm"), 0)
        fut = pool.submit(rspec, None, stage(space, steps=400), str(tmp_path / "killed"), 0)
        import time

        import psutil

        time.sleep(3)
        for child in psutil.Process(os.getpid()).children(recursive=True):
            if "spawn" in " ".join(child.cmdline()):
                child.kill()
        dead = fut.result(timeout=120)
        assert dead.status == "failed" and "worker" in dead.error
        after = pool.run(rspec, None, stage(space, steps=1), str(tmp_path / "after"), 0)
        assert after.ok, after.error


def test_token_limit_ends_a_stage_early_with_a_checkpoint_and_is_never_crossed(setup):
    root, _, _, runner, space, settings = setup
    full = runner.run_stage(None, stage(space, steps=6), str(root / "tl_full"), seed=0)
    per_step = full.cost.generated_tokens / 6
    worst = settings.prompts_per_step * 4 * space.defaults()["max_completion_length"]  # every completion capped
    limit = int(2.5 * per_step + worst)
    cut = runner.run_stage(None, stage(space, steps=6), str(root / "tl_cut"), seed=0, token_limit=limit)
    assert cut.ok, cut.error
    assert 2 <= cut.cost.steps < 6 and cut.end_step == cut.cost.steps
    assert cut.cost.generated_tokens <= limit  # never past the cap: the budget a search gives it holds
    assert cut.cost.generated_tokens + worst > limit  # stopped because one more step could cross it
    assert check_checkpoint(cut.checkpoint)["end_step"] == cut.cost.steps
    assert _strip(cut.history) == _strip(full.history[: cut.cost.steps])  # the same run, cut short


@pytest.mark.parametrize("busy", ["time.sleep(60)", "x = 9 ** 9 ** 9  # one C call holding the GIL for minutes"])
def test_a_worker_exits_when_its_search_process_dies(tmp_path, busy):
    """No orphan may finish a stage and publish into a directory the resumed search trains again,
    not even one stuck in a long computation (a reward function's big-number arithmetic)."""
    import subprocess
    import sys
    import time

    import psutil

    script = tmp_path / "parent.py"
    script.write_text(
        "import multiprocessing as mp, os, sys, time\n"
        "def child(ready):\n"
        "    from llmzero.execution.local import _exit_with_parent\n"
        "    _exit_with_parent(0.1)\n"
        "    ready.set()\n"
        f"    {busy}\n"
        "if __name__ == '__main__':\n"
        "    ctx = mp.get_context('spawn')\n"
        "    ready = ctx.Event()\n"
        "    p = ctx.Process(target=child, args=(ready,))\n"
        "    p.start()\n"
        "    ready.wait(120)\n"
        "    open(sys.argv[1], 'w').write(str(p.pid))\n"
        "    os._exit(0)  # dies like a killed search: no clean-up, the child is orphaned\n")
    pid_file = tmp_path / "child.pid"
    # no pipes: the orphan must not keep run() waiting, so the check below sees it within seconds
    subprocess.run([sys.executable, str(script), str(pid_file)], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=150, check=True)
    pid = int(pid_file.read_text())
    deadline = time.time() + 10
    while time.time() < deadline and psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie":
        time.sleep(0.2)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def test_a_stage_of_draws_is_the_greedy_soup_of_its_draws_and_continues(setup):
    from safetensors.torch import load_file

    from llmzero.training.soup import WEIGHTS, Souper, average, draw_seed

    root, _, task, runner, space, _ = setup
    # an entropy bonus and a high learning rate make every draw move the weights (see above)
    st = stage(space, learning_rate=3e-3, entropy_coef=0.01)
    res = runner.run_stage(None, Stage(st.params, 4, draws=3), str(root / "soup"), seed=5)
    assert res.ok, res.error
    singles = [runner.run_stage(None, Stage(st.params, 4, seed=draw_seed(5, d)), str(root / f"draw{d}"),
                                draw_seed(5, d)) for d in range(3)]
    assert [d["seed"] for d in res.draws] == [5, draw_seed(5, 1), draw_seed(5, 2)]
    # the same draws, bit for bit
    assert [d["val_score"] for d in res.draws] == [s.val_score for s in singles]
    assert res.cost.generated_tokens == sum(s.cost.generated_tokens for s in singles)
    assert res.cost.steps == 12 and (res.start_step, res.end_step) == (0, 4)  # 4 steps along the path
    kept = [str(d) for d, info in enumerate(res.draws) if info["in_soup"]]
    best = max(range(3), key=lambda d: (singles[d].val_score, -d))
    assert kept[0] == str(best) and res.val_score >= singles[best].val_score  # never below the best draw
    weights = {str(d): load_file(str(Path(s.checkpoint) / WEIGHTS)) for d, s in enumerate(singles)}
    got = load_file(str(root / "soup" / WEIGHTS))
    want = average([weights[d] for d in kept])
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    souper = Souper(task, {d: singles[int(d)].checkpoint for d in kept},
                    int(st.params["max_completion_length"]))
    assert souper.score(kept, "val") == res.val_score
    info = check_checkpoint(res.checkpoint)  # the best draw's trainer state: the next stage continues
    assert info["end_step"] == 4 and info["stage"]["draws"] == 3 and info["val_score"] == res.val_score
    assert _strip(res.history) == _strip(singles[best].history) and not list(root.glob("soup.tmp-*"))
    child = runner.run_stage(res.checkpoint, stage(space), str(root / "after-soup"), seed=1)
    assert child.ok and (child.start_step, child.end_step) == (4, 8)


def test_a_merged_stage_is_the_average_of_itself_and_its_siblings(setup):
    from safetensors.torch import load_file

    from llmzero.training.soup import WEIGHTS, average

    root, _, task, runner, space, _ = setup
    a = stage(space, learning_rate=3e-3, entropy_coef=0.01)
    b = stage(space, learning_rate=1e-3, beta=0.02)
    merged = Stage(a.params, 4, seed=5, merge=(Stage(b.params, 4, seed=9),))
    res = runner.run_stage(None, merged, str(root / "merged"), seed=5)
    assert res.ok, res.error
    alone = [runner.run_stage(None, Stage(p.params, 4, seed=s), str(root / f"alone{s}"), s)
             for p, s in ((a, 5), (b, 9))]
    assert [d["seed"] for d in res.draws] == [5, 9] and all(d["in_soup"] for d in res.draws)
    assert [d["val_score"] for d in res.draws] == [s.val_score for s in alone]  # each, bit for bit
    assert res.cost.steps == 8 and (res.start_step, res.end_step) == (0, 4)
    got = load_file(str(root / "merged" / WEIGHTS))  # all of them averaged, in order, no greedy choice
    want = average([load_file(str(Path(s.checkpoint) / WEIGHTS)) for s in alone])
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    info = check_checkpoint(res.checkpoint)  # the first's trainer state: the next stage continues
    assert info["stage"]["merge"] == [{"params": b.params, "seed": 9}] and info["val_score"] == res.val_score
    assert _strip(res.history) == _strip(alone[0].history) and not list(root.glob("merged.tmp-*"))
