"""Stages on Ray: persistent actors on a local Ray instance or a cluster (``executor.kind: ray``).

Each actor is a stage worker like the local pool's: it pays the imports once, uses
``cpus_per_worker`` torch threads and keeps its runners between stages. Ray places the actors on the
cluster's nodes; a node or actor that dies fails only the stage it was running (a fresh actor
takes its place for the next one).

Checkpoints are files: the actors write them under the run directory and the search reads them (to
branch children from them, to score the best on test). On a cluster the run directory, and the
cache that holds the base models (``$LLMZERO_CACHE``), must be on a filesystem that every node mounts
at the same path. Every path is made absolute before it leaves this process.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import Future
from typing import Any

from llmzero.config import ConfigError
from llmzero.execution._base import failures_as_results
from llmzero.execution.local import RunnerSpec
from llmzero.strategy import Stage
from llmzero.training import StageResult

log = logging.getLogger(__name__)


class RayUnavailable(ConfigError):
    """``executor.kind: ray`` cannot be had: Ray is not installed, or the cluster cannot be reached."""


class _StageWorker:
    """The actor: one persistent stage worker (the local pool's worker code, in a Ray process)."""

    def __init__(self, threads: int, device: str = "cpu", bf16: bool = False):
        from llmzero.execution.local import _init_worker

        # Ray ends its actors when the search's driver exits; an actor that reserves GPUs sees only
        # those (Ray sets CUDA_VISIBLE_DEVICES).
        _init_worker(threads, watch_parent=False, device=device, bf16=bf16)

    def run(self, spec: RunnerSpec, parent: str | None, stage: Stage, out_dir: str, seed: int,
            token_limit: int | None) -> StageResult:
        from llmzero.execution.local import _run_in_worker

        return _run_in_worker(spec, parent, stage, out_dir, seed, token_limit)

    def pid(self) -> int:
        return os.getpid()

    def placement(self) -> dict[str, Any]:
        """Where this actor trains: its device, the GPUs Ray gave it, and a device error, if any."""
        import ray

        from llmzero.execution.local import _WORKER
        from llmzero.runtime import device

        return {"device": device(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "error": _WORKER.get("device_error")}


def _absolute(path: str | None) -> str | None:
    return None if path is None else os.path.abspath(path)


class RayPool:
    """Runs stages on ``workers`` Ray actors, each reserving ``cpus_per_worker`` CPUs and
    ``gpus_per_worker`` GPUs (a fraction shares one GPU between actors).

    An actor that reserves GPUs trains on CUDA (``device`` auto or cuda), one that reserves none on
    its CPUs: a GPU an actor has not reserved may be another's.

    ``address`` joins a running cluster ('auto', 'ray://HOST:10001'); None joins the one that
    ``RAY_ADDRESS`` names, if set, or starts a Ray instance on this machine, shut down again by
    :meth:`close`. A process that already called ``ray.init`` keeps its Ray as it is.
    """

    def __init__(self, workers: int = 1, *, address: str | None = None, cpus_per_worker: int = 1,
                 gpus_per_worker: float = 0, device: str = "auto", bf16: bool = False):
        if workers < 1:
            raise ValueError(f"workers={workers} is not allowed: expected an integer >= 1")
        self.workers, self.address, self.cpus_per_worker = workers, address, cpus_per_worker
        self.gpus_per_worker, self.bf16 = gpus_per_worker, bf16
        self.device = device if gpus_per_worker > 0 else "cpu"
        self._actors: list[Any] = []
        self._load: list[int] = []  # stages in flight per actor
        self._lock = threading.Lock()
        self._started_ray = False

    def _ray(self):
        try:
            import ray
        except ImportError:
            raise RayUnavailable("executor.kind='ray' needs Ray: pip install 'llmzero[ray]'") from None
        return ray

    def start(self) -> None:
        """Start or join Ray and create the actors (raises RayUnavailable, one line, if it cannot)."""
        if self._actors:
            return
        ray = self._ray()
        if not ray.is_initialized():
            env = {k: os.environ[k] for k in ("LLMZERO_CACHE",) if k in os.environ}
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.ERROR, runtime_env={"env_vars": env} if env else None)
            except Exception as e:  # noqa: BLE001 - ConnectionError, a timeout, a bad address: one line
                where = f"executor.address={self.address!r}" if self.address else "a local Ray instance"
                raise RayUnavailable(f"{where}: Ray could not start or connect: "
                                     f"{(str(e).strip().splitlines() or [e.__class__.__name__])[0]}") from None
            self._started_ray = True
        self._actor_class = ray.remote(num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker,
                                       max_restarts=0)(_StageWorker)
        self._actors = [self._new_actor() for _ in range(self.workers)]
        self._load = [0] * self.workers

    def _new_actor(self):
        return self._actor_class.remote(self.cpus_per_worker, self.device, self.bf16)

    def submit(self, spec: RunnerSpec, parent: str | None, stage: Stage, out_dir: str, seed: int,
               token_limit: int | None = None) -> Future:
        """Start a stage on the least busy actor; the future resolves to its StageResult."""
        self.start()
        spec = RunnerSpec(spec.task, _absolute(spec.base_dir), spec.settings)
        with self._lock:
            i = min(range(len(self._actors)), key=lambda k: self._load[k])
            self._load[i] += 1
            actor = self._actors[i]
        ray = self._ray()

        def release(f: Future) -> None:
            with self._lock:
                if i >= len(self._actors) or self._actors[i] is not actor:
                    return  # the pool was closed meanwhile
                self._load[i] -= 1
                if isinstance(f.exception(), ray.exceptions.RayActorError):
                    self._actors[i] = self._new_actor()  # the actor died (killed, out of memory, node lost)

        ref = actor.run.remote(spec, _absolute(parent), stage, _absolute(out_dir), seed, token_limit)
        return failures_as_results(ref.future(), parent, stage, seed, on_done=release)

    def run(self, spec: RunnerSpec, parent: str | None, stage: Stage, out_dir: str, seed: int,
            token_limit: int | None = None) -> StageResult:
        return self.submit(spec, parent, stage, out_dir, seed, token_limit).result()

    def worker_pids(self) -> list[int]:
        """The actors' process ids (on their nodes)."""
        self.start()
        ray = self._ray()
        return ray.get([a.pid.remote() for a in self._actors])

    def placements(self) -> list[dict[str, Any]]:
        """Where each actor trains (``_StageWorker.placement``)."""
        self.start()
        ray = self._ray()
        return ray.get([a.placement.remote() for a in self._actors])

    def close(self) -> None:
        if not self._actors and not self._started_ray:
            return
        ray = self._ray()
        with self._lock:
            actors, self._actors, self._load = self._actors, [], []
        for a in actors:
            ray.kill(a)
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> RayPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
