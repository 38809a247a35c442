"""Where stages train (``executor.device``, ``executor.bf16``, ``llmzero train --device``): the choice
of device, its errors, the local pool's workers spread over GPUs, and a stage trained in bf16.

No GPU is needed: CUDA's absence is what the errors are about, and the spreading is over the GPUs
that ``CUDA_VISIBLE_DEVICES`` names (which need not exist for a worker to be given one).
"""

import json
import multiprocessing as mp
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from llmzero.config import ConfigError, parse_config
from llmzero.execution import LocalPool, RunnerSpec
from llmzero.execution.local import _take_gpu
from llmzero import runtime
from llmzero.runtime import DeviceError, resolve_device, use_device
from llmzero.strategy import Stage, StageMode
from llmzero.tasks import TaskSpec, task_space
from llmzero.training._base import STAGE_INFO
from llmzero.training.grpo import TrainingSettings

NO_CUDA = not torch.cuda.is_available()
BASE = {"task": {"name": "countdown"}, "budget": {"compute": 1000}}


@pytest.fixture(autouse=True)
def _back_to_the_cpu():
    """Stages run in this process here (``workers=0``): the next test's train in fp32 on the CPU again."""
    yield
    use_device("cpu")


@pytest.mark.parametrize(("executor", "words"), [
    ({"device": "tpu"}, "executor.device='tpu' is not allowed"),
    ({"gpus_per_worker": 1}, "executor.gpus_per_worker=1.0 is not allowed with executor.kind='local'"),
    ({"kind": "ray", "device": "cpu", "gpus_per_worker": 0.5},
     "executor.gpus_per_worker=0.5 is not allowed with executor.device='cpu'"),
    ({"kind": "ray", "device": "cuda"}, "executor.device='cuda' is not allowed with executor.gpus_per_worker=0"),
    ({"kind": "ray", "gpus_per_worker": -1}, "executor.gpus_per_worker=-1 is not allowed"),
])
def test_bad_device_settings_name_field_value_and_allowed(executor, words):
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, "executor": executor})
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_device_settings_that_hold():
    assert parse_config(BASE).executor.device == "auto" and not parse_config(BASE).executor.bf16
    ex = parse_config({**BASE, "executor": {"kind": "ray", "device": "cuda", "gpus_per_worker": 0.5,
                                            "bf16": True}}).executor
    assert (ex.device, ex.gpus_per_worker, ex.bf16) == ("cuda", 0.5, True)


def test_auto_is_cuda_when_one_is_visible_else_the_cpu(monkeypatch):
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(DeviceError) as e:
        resolve_device("cuda", field="device")
    assert str(e.value).startswith("device='cuda' is not allowed here: no CUDA device is visible") \
        and "CUDA_VISIBLE_DEVICES=''" in str(e.value)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == resolve_device("cuda") == "cuda"
    assert resolve_device("cpu") == "cpu"


def test_workers_take_the_visible_gpus_in_turn(monkeypatch):
    slots = mp.get_context("spawn").Value("i", 0)
    # set through monkeypatch first, so that the variable is restored after the test whatever _take_gpu
    # wrote (a delenv of a variable that is not set records nothing to restore)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    seen = []
    for _ in range(5):
        _take_gpu(["3", "GPU-5f2a", "7"], slots)
        seen.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert seen == ["3", "GPU-5f2a", "7", "3", "GPU-5f2a"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2")
    _take_gpu(["2"], slots)  # one GPU: nothing to spread
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2"


def _visible() -> tuple[int, str | None]:
    import time

    time.sleep(1)  # long enough that the other worker takes the next call
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_a_local_pool_gives_its_workers_one_gpu_each(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    with LocalPool(workers=2, device="auto") as pool:
        futs = [pool._executor().submit(_visible) for _ in range(4)]
        seen = dict(f.result(timeout=300) for f in futs)
    assert sorted(seen.values()) == ["4", "6"], seen  # two workers, one GPU each
    with LocalPool(workers=2, device="cpu") as pool:  # on the CPU the workers see what the search sees
        seen = dict(f.result(timeout=300) for f in [pool._executor().submit(_visible) for _ in range(4)])
    assert set(seen.values()) == {"4,6"}, seen


@pytest.mark.skipif(not NO_CUDA, reason="about a machine without CUDA")
def test_a_stage_on_a_missing_gpu_fails_as_data_and_a_pool_cannot_start(xs_base, small_sizes, tmp_path):
    spec = TaskSpec("number_sorting", sizes=small_sizes)
    st = Stage({**task_space(spec.build()).defaults(), "num_generations": 4}, 1, StageMode.CONTINUE)
    with LocalPool(workers=0, device="cuda") as pool:
        with pytest.raises(ConfigError, match="no CUDA device is visible"):
            pool.start()
        res = pool.run(RunnerSpec(spec, xs_base.path), None, st, str(tmp_path / "o"), 0)
    assert res.status == "failed" and "executor.device='cuda' is not allowed here" in res.error
    assert not (tmp_path / "o").exists()
    with LocalPool(workers=0, device="cpu") as pool:  # the same process trains on the CPU again
        assert pool.run(RunnerSpec(spec, xs_base.path), None, st, str(tmp_path / "o2"), 0).ok


@pytest.mark.skipif(not NO_CUDA, reason="about a machine without CUDA")
def test_cuda_where_there_is_none_is_one_line_exit_2_and_leaves_nothing(tmp_path):
    cfg = {"task": {"name": "countdown", "sizes": {"train": 200, "val": 20, "test": 20}}, "model": "xs",
           "budget": {"compute": 1000}, "executor": {"device": "cuda"}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"stages": [{"steps": 1}]}))
    env = {**os.environ, "LLMZERO_CACHE": str(tmp_path / "cache")}
    (tmp_path / "plain.yaml").write_text(yaml.safe_dump({**cfg, "executor": {}}))
    for args, run in ((["search", "c.yaml", "--out", "run"], "run"),
                      (["search", "plain.yaml", "--device", "cuda", "--out", "run2"], "run2"),
                      (["train", "--task", "countdown", "--schedule", "s.yaml", "--model", "xs", "--out", "tr",
                        "--device", "cuda"], "tr")):
        r = subprocess.run([sys.executable, "-m", "llmzero.cli", *args], cwd=tmp_path, capture_output=True,
                           text=True, env=env, timeout=300)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip().count("\n") == 0 and "'cuda' is not allowed here" in r.stderr, r.stderr
        assert not (tmp_path / run).exists()


def test_a_stage_in_bf16_trains_and_says_so(xs_base, small_sizes, tmp_path):
    spec = TaskSpec("number_sorting", sizes=small_sizes)
    st = Stage({**task_space(spec.build()).defaults(), "num_generations": 4}, 3, StageMode.CONTINUE)
    results, infos = [], []
    for bf16 in (False, True):
        with LocalPool(workers=0, device="cpu", bf16=bf16) as pool:
            res = pool.run(RunnerSpec(spec, xs_base.path, TrainingSettings(prompts_per_step=4)), None, st,
                           str(tmp_path / f"bf16-{bf16}"), 0)
        assert res.ok, res.error
        results.append(res)
        infos.append(json.loads((Path(res.checkpoint) / STAGE_INFO).read_text()))
        args = torch.load(Path(res.checkpoint) / "training_args.bin", weights_only=False)
        assert (args.bf16, args.use_cpu) == (bf16, True)
    assert [(i["device"], i["bf16"]) for i in infos] == [("cpu", False), ("cpu", True)]
    assert (runtime.device(), runtime.bf16()) == ("cpu", True)  # this process's, until the fixture puts it back
    # the same draw in another precision: bf16's logits give other entropies
    assert [h["entropy"] for h in results[0].history] != [h["entropy"] for h in results[1].history]
    from safetensors.torch import load_file

    # mixed precision: the checkpoint's weights stay float32
    assert {t.dtype for t in load_file(str(Path(results[1].checkpoint) / "model.safetensors")).values()} \
        == {torch.float32}
