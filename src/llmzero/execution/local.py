"""A pool of persistent worker processes that run stages.

Each worker pays the imports of torch, transformers and TRL once, uses one torch thread, and keeps
its tasks (their data splits) and runners between stages, so that many short stages are cheap.
A worker that dies (killed, out of memory) fails only the stage it was running: the pool is
rebuilt and the stage comes back as a failed result.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from llmzero.execution._base import failures_as_results
from llmzero.strategy import Stage
from llmzero.tasks import TaskSpec
from llmzero.training import StageResult
from llmzero.training.grpo import GRPOStageRunner, TrainingSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunnerSpec:
    """What a worker needs to build a stage runner: picklable, and a cache key."""

    task: TaskSpec
    base_dir: str
    settings: TrainingSettings = field(default_factory=TrainingSettings)

    def build(self) -> GRPOStageRunner:
        return GRPOStageRunner(self.task.build(), self.base_dir, self.settings)


# -- inside a worker process ------------------------------------------------------------------------

_WORKER: dict[str, Any] = {}


def _exit_with_parent(poll_seconds: float = 1.0) -> None:
    """Start a daemon thread that ends this worker as soon as its parent process is gone.

    A search killed (or stopped with SIGTERM) must not leave orphaned workers that finish their stage
    and publish a checkpoint into a directory that the resumed search is about to train again.

    On Linux the kernel also sends the worker SIGKILL when its parent dies (PR_SET_PDEATHSIG): a
    thread cannot run while the main thread holds the GIL in one long C call (a reward function
    doing big-number arithmetic, say), a signal from the kernel can.
    """
    import os
    import sys
    import threading

    parent = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # no prctl here: the thread below still watches
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:  # re-parented: the search process died
                os._exit(1)

    threading.Thread(target=watch, name="llmzero-parent-watch", daemon=True).start()


def _quiet_interrupt() -> None:
    """Ctrl-C reaches the whole process group: a worker ends at once and without a traceback (the
    search process reports the stop; a stage in flight publishes nothing, its temporary directory is
    cleared on resume)."""
    import os
    import signal

    signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    if hasattr(signal, "pthread_sigmask"):  # born with SIGINT blocked (_born_deaf): a Ctrl-C while starting
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # up is delivered now, to the handler


@contextmanager
def _born_deaf() -> Iterator[None]:
    """Processes started inside start with SIGINT blocked (a spawned process inherits the signal mask):
    a Ctrl-C during a worker's imports waits for its quiet handler instead of printing a traceback."""
    import signal
    from multiprocessing import resource_tracker

    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    resource_tracker.ensure_running()  # now, not inside: starting it unblocks SIGINT in this thread
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as ``CUDA_VISIBLE_DEVICES`` names them (indexes or UUIDs); every
    CUDA device when it is unset."""
    import os

    shown = os.environ.get("CUDA_VISIBLE_DEVICES")
    if shown is not None:
        return [g.strip() for g in shown.split(",") if g.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def _take_gpu(gpus: list[str], slots: Any) -> None:
    """A pool's worker takes the next of ``gpus`` in turn (the k-th worker to start the k-th, modulo their
    number) and sees only that one, before anything here touches CUDA."""
    import os

    if len(gpus) < 2 or slots is None:
        return
    with slots.get_lock():
        k = slots.value
        slots.value += 1
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus[k % len(gpus)]


def _use_device(device: str, bf16: bool) -> None:
    """This process trains on ``device``; one it cannot have is kept as the error of its stages."""
    from llmzero.runtime import DeviceError, use_device

    _WORKER.pop("device_error", None)
    try:
        use_device(device, bf16)
    except DeviceError as e:
        _WORKER["device_error"] = str(e)


def _init_worker(threads: int, watch_parent: bool = True, device: str = "cpu", bf16: bool = False,
                 gpus: list[str] | None = None, slots: Any = None) -> None:
    """Set up a process that trains stages. ``watch_parent``: it is a pool's worker, which ends with the
    search process and on Ctrl-C; not for stages run in the search process itself or in Ray's actors.
    ``device`` and ``bf16``: see ``runtime.use_device``; a device that cannot be had here fails every
    stage of this worker with the reason (failure is data), it does not kill the worker. ``gpus`` and
    ``slots``: a pool's workers spread over several GPUs, one each in turn."""
    import psutil

    from llmzero.runtime import configure_process

    if watch_parent:
        _exit_with_parent()
        _quiet_interrupt()
    if device != "cpu":
        _take_gpu(gpus or [], slots)
    configure_process(threads)
    _use_device(device, bf16)
    import trl  # noqa: F401 - pay the import here, once per worker

    # From the process's birth: the spawn and every import (most happen while unpickling the task).
    _WORKER["start_seconds"] = time.time() - psutil.Process().create_time()
    _WORKER["runners"] = {}


def _run_in_worker(spec: RunnerSpec, parent: str | None, stage: Stage, out_dir: str, seed: int,
                   token_limit: int | None = None) -> StageResult:
    if "device_error" in _WORKER:
        return StageResult(status="failed", stage=stage.to_dict(), seed=seed, parent=parent,
                           error=_WORKER["device_error"])
    phases: dict[str, float] = {}
    if "start_seconds" in _WORKER:  # the first stage of this worker reports its start-up
        phases["worker_start"] = round(_WORKER.pop("start_seconds"), 4)
    runner = _WORKER["runners"].get(spec)
    if runner is None:
        t = time.perf_counter()
        runner = _WORKER["runners"][spec] = spec.build()
        runner.task.split("val")  # load the held-out splits now, not inside the first stage
        runner.task.split("train")
        phases["task_load"] = round(time.perf_counter() - t, 4)
    result = runner.run_stage(parent, stage, out_dir, seed, token_limit)
    result.cost.phases = {**phases, **result.cost.phases}
    return result


def _run_inline(spec: RunnerSpec, parent: str | None, stage: Stage, out_dir: str, seed: int,
                token_limit: int | None = None, device: str = "cpu", bf16: bool = False) -> StageResult:
    if "runners" not in _WORKER:  # this is the search process: its parent is the user's shell
        _init_worker(1, watch_parent=False, device=device, bf16=bf16)
    else:
        _use_device(device, bf16)
    return _run_in_worker(spec, parent, stage, out_dir, seed, token_limit)


# -- the pool -----------------------------------------------------------------------------------------


class LocalPool:
    """Runs stages in ``workers`` persistent processes (``workers=0`` runs them in this process), on
    ``device`` (``runtime.resolve_device``: auto, cpu or cuda), stages in bf16 mixed precision if
    ``bf16``. On CUDA with several GPUs visible, the workers take one GPU each in turn."""

    def __init__(self, workers: int = 1, threads: int = 1, *, device: str = "cpu", bf16: bool = False):
        if workers < 0:
            raise ValueError(f"workers={workers} is not allowed: expected an integer >= 0")
        self.workers, self.threads, self.device, self.bf16 = workers, threads, device, bf16
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Check that the device can be had here (a ConfigError, one line, if not); the worker
        processes start with the first stage."""
        from llmzero.config import ConfigError
        from llmzero.runtime import DeviceError, resolve_device

        try:
            resolve_device(self.device)
        except DeviceError as e:
            raise ConfigError(str(e)) from None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            ctx = mp.get_context("spawn")
            gpus = visible_gpus() if self.device != "cpu" else []
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=ctx, initializer=_init_worker,
                initargs=(self.threads, True, self.device, self.bf16, gpus, ctx.Value("i", 0)))
        return self._pool

    def submit(self, spec: RunnerSpec, parent: str | None, stage: Stage, out_dir: str, seed: int,
               token_limit: int | None = None) -> Future:
        """Start a stage; the future resolves to a StageResult (a failed one if the worker died)."""
        if self.workers == 0:
            fut: Future = Future()
            fut.set_result(_run_inline(spec, parent, stage, out_dir, seed, token_limit, self.device, self.bf16))
            return fut
        with _born_deaf():  # a submit may start the workers
            try:
                inner = self._executor().submit(_run_in_worker, spec, parent, stage, out_dir, seed, token_limit)
            except BrokenProcessPool:
                self._reset()
                inner = self._executor().submit(_run_in_worker, spec, parent, stage, out_dir, seed, token_limit)
        return failures_as_results(inner, parent, stage, seed)

    def run(self, spec: RunnerSpec, parent: str | None, stage: Stage, out_dir: str, seed: int,
            token_limit: int | None = None) -> StageResult:
        return self.submit(spec, parent, stage, out_dir, seed, token_limit).result()

    def _reset(self) -> None:
        """Drop a pool whose worker died; the next submit starts a fresh one."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
