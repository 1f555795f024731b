"""The collectives of the losses and the loop (sslt_core/engine/distributed.py, re-exported for pretrain's
modules), and SyncBN's process groups."""
import torch

from sslt_core.engine.distributed import (  # noqa: F401 (re-exported)
    all_ranks_agree,
    all_reduce,
    gather_no_grad,
    gather_to_main,
    gather_with_grad,
    mean_over_ranks,
    rank,
    setup_distributed,
    world_size,
)
from sslt_core.errors import ConfigError


def sync_bn_group(train_cfg, world):
    """The process group of SyncBN: all processes, or consecutive groups of train.sync_bn_group_size (as apex's
    create_syncbn_process_group, which SwAV's batch-4096 run uses with 8 GPUs per group)."""
    size = train_cfg.sync_bn_group_size
    if size in (0, world):
        return None
    if world % size:
        raise ConfigError(f"train.sync_bn_group_size {size} must divide the {world} processes")
    group, _ = torch.distributed.new_subgroups(size)
    return group
