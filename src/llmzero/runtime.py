"""Process set-up for code that trains: offline hubs, one torch thread, quiet third-party output, and
the device that the process trains and evaluates on.

Called explicitly by the CLI and by every worker process; nothing is configured at import time.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


DEVICES = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """A device that cannot be had in this process (``cuda`` where no CUDA device is visible)."""


_PLACEMENT = {"device": "cpu", "bf16": False}  # this process's: set by use_device, read by the code that trains


def resolve_device(setting: str, field: str = "executor.device") -> str:
    """``cpu`` or ``cuda``: what ``setting`` (one of DEVICES) means in this process. ``auto`` is CUDA
    when a CUDA device is visible, else the CPU; ``cuda`` where none is visible is a DeviceError that
    names ``field``."""
    if setting not in DEVICES:
        raise DeviceError(f"{field}={setting!r} is not allowed: expected one of {', '.join(DEVICES)}")
    if setting == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if setting == "cuda":
        shown = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise DeviceError(f"{field}='cuda' is not allowed here: no CUDA device is visible to this process"
                          f"{'' if shown is None else f' (CUDA_VISIBLE_DEVICES={shown!r})'}; use 'auto' or 'cpu'")
    return "cpu"


def use_device(setting: str = "cpu", bf16: bool = False) -> str:
    """Make this process train and evaluate on ``setting`` (resolved by resolve_device), stages in bf16
    mixed precision if ``bf16``; returns the device, ``cpu`` or ``cuda``."""
    _PLACEMENT.update(device=resolve_device(setting), bf16=bool(bf16))
    return _PLACEMENT["device"]


def device() -> str:
    """The device this process trains and evaluates on: ``cpu`` unless use_device chose ``cuda``."""
    return _PLACEMENT["device"]


def bf16() -> bool:
    """Whether this process trains stages in bf16 mixed precision (use_device)."""
    return _PLACEMENT["bf16"]


def device_name() -> str:
    """The device in words, for a stage's record: ``cpu``, or ``cuda:0 (NVIDIA H100 80GB HBM3)``."""
    if device() != "cuda":
        return "cpu"
    import torch

    i = torch.cuda.current_device()
    return f"cuda:{i} ({torch.cuda.get_device_name(i)})"


def configure_process(threads: int = 1) -> None:
    """One torch thread by default: on 2 cores more threads were up to 100x slower."""
    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import warnings

    import torch

    torch.set_num_threads(threads)
    # transformers 5 warns about its own gradient_checkpointing alias that TRL still sets.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    import datasets
    import transformers

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
