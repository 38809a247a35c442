"""The executor port: the search submits stages and collects futures, and never names a concrete pool.

An executor runs ``RunnerSpec.build().run_stage(...)`` somewhere (a local worker process, a Ray actor
on a cluster) and returns a future that always resolves to a ``StageResult``: a worker that dies fails
its stage as data, never as an exception at the search.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from llmzero.config import ExecutorConfig
    from llmzero.execution.local import RunnerSpec
    from llmzero.strategy import Stage
    from llmzero.training import StageResult


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


def make_executor(cfg: ExecutorConfig, workers: int | None = None) -> Executor:
    """The executor ``cfg`` names, with ``workers`` workers (default ``cfg.workers``)."""
    n = workers or cfg.workers
    if cfg.kind == "ray":
        from llmzero.execution.ray_pool import RayPool

        return RayPool(n, address=cfg.address, cpus_per_worker=cfg.cpus_per_worker)
    from llmzero.execution.local import LocalPool

    return LocalPool(n)
