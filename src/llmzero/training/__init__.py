"""Stage runners: train one stage of GRPO from a parent checkpoint and report what happened."""

from llmzero.training._base import (STAGE_INFO, CheckpointError, Cost, StageResult, StageRunner,
                                    check_checkpoint, locate_checkpoint, locate_soup,
                                    read_stage_info)

__all__ = ["STAGE_INFO", "CheckpointError", "Cost", "StageResult", "StageRunner", "check_checkpoint",
           "locate_checkpoint", "locate_soup", "read_stage_info"]
