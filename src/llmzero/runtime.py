"""Process set-up for code that trains: offline hubs, one torch thread, quiet third-party output.

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
