"""The executor port: the search submits stages and collects futures, and never names a concrete pool.

An executor runs ``RunnerSpec.build().run_stage(...)`` somewhere (a local worker process, a Ray actor
on a cluster) and returns a future that always resolves to a ``StageResult``: a worker that dies fails
its stage as data, never as an exception at the search.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol

from llmzero.training import StageResult

if TYPE_CHECKING:
    from llmzero.config import ExecutorConfig
    from llmzero.execution.local import RunnerSpec
    from llmzero.strategy import Stage

log = logging.getLogger(__name__)


class Executor(Protocol):
    workers: int

    def start(self) -> None:
        """Acquire the workers now if they can fail to come (a cluster to join): before the search
        trains anything. An error is a ConfigError, one line."""
        ...

    def submit(self, spec: RunnerSpec, parent: str | None, stage: Stage, out_dir: str, seed: int,
               token_limit: int | None = None) -> Future:
        """Start a stage; the future resolves to its StageResult (a failed one if the worker died)."""
        ...

    def run(self, spec: RunnerSpec, parent: str | None, stage: Stage, out_dir: str, seed: int,
            token_limit: int | None = None) -> StageResult:
        ...

    def close(self) -> None:
        ...

    def __enter__(self) -> Executor:
        ...

    def __exit__(self, *exc: object) -> None:
        ...


def failures_as_results(inner: Future, parent: str | None, stage: Stage, seed: int,
                        on_done: Callable[[Future], None] | None = None) -> Future:
    """A future that resolves to ``inner``'s StageResult, or to a failed one if ``inner`` raised
    (a dead worker, an unpicklable result): an executor never raises a stage's failure at the search.
    ``on_done(inner)`` runs first, before the search can see the result."""
    outer: Future = Future()

    def done(f: Future) -> None:
        try:
            if on_done is not None:
                on_done(f)
        except Exception:  # the executor's bookkeeping must not keep the result from the search
            log.exception("executor bookkeeping failed after a stage")
        try:
            outer.set_result(f.result())
        except BaseException as e:  # noqa: BLE001 - a dead worker or an unpicklable result
            outer.set_result(StageResult(status="failed", stage=stage.to_dict(), seed=seed, parent=parent,
                                         error=f"worker process failed: {e.__class__.__name__}: {e}"))

    inner.add_done_callback(done)
    return outer


def make_executor(cfg: ExecutorConfig, workers: int | None = None) -> Executor:
    """The executor ``cfg`` names, with ``workers`` workers (default ``cfg.workers``)."""
    n = workers or cfg.workers
    if cfg.kind == "ray":
        from llmzero.execution.ray_pool import RayPool

        return RayPool(n, address=cfg.address, cpus_per_worker=cfg.cpus_per_worker,
                       gpus_per_worker=cfg.gpus_per_worker, device=cfg.device, bf16=cfg.bf16)
    from llmzero.execution.local import LocalPool

    return LocalPool(n, device=cfg.device, bf16=cfg.bf16)
