"""Executors run stages; the search only submits and collects (see ``_base.Executor``)."""

from llmzero.execution._base import Executor, make_executor
from llmzero.execution.local import LocalPool, RunnerSpec

__all__ = ["Executor", "LocalPool", "RunnerSpec", "make_executor"]
