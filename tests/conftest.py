import os

import pytest

from llmzero.runtime import configure_process


@pytest.fixture(autouse=True, scope="session")
def _process(tmp_path_factory):
    # Tests never touch the user's cache; one torch thread as everywhere else.
    os.environ["LLMZERO_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    configure_process(1)
    yield


@pytest.fixture(scope="session")
def small_sizes():
    from llmzero.tasks import Sizes

    return Sizes(train=2000, val=100, test=100)


# A tiny base that earns some reward (GRPO's gradient is zero for a model that is never right).
XS_SFT = dict(target_accuracy=0.1, max_steps=300, eval_every=25, eval_size=50)


@pytest.fixture(scope="session")
def xs_base(small_sizes):
    from llmzero.models.base import SFTSettings, build_base
    from llmzero.tasks import get_task

    return build_base(get_task("number_sorting", sizes=small_sizes), "xs", seed=0, sft=SFTSettings(**XS_SFT))
