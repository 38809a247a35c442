"""Executors run stages; the search only submits and collects."""

from llmzero.execution.local import LocalPool, RunnerSpec

__all__ = ["LocalPool", "RunnerSpec"]
