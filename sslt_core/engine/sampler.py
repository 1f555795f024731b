"""The sampler of an exactly resumable run: a seeded shuffle per epoch, split over ranks, that starts part way."""
import torch

from sslt_core.engine import distributed


class EpochSampler(torch.utils.data.Sampler):
    """This rank's share of a seeded shuffle of epoch `epoch`, from batch `skip_batches` on (exact resume)."""

    def __init__(self, size, batch_per_rank, seed):
        self.size, self.batch, self.seed, self.epoch, self.skip_batches = size, batch_per_rank, seed, 0, 0
        self.world, self.rank = distributed.world_size(), distributed.rank()

    def batches_per_epoch(self):
        return self.size // (self.batch * self.world)

    def set_position(self, epoch, skip_batches):
        """Where the next iteration starts: epoch `epoch`, its first `skip_batches` batches already trained on."""
        self.epoch, self.skip_batches = epoch, skip_batches

    def __iter__(self):
        order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 10007 + self.epoch))
        used = order[: self.batches_per_epoch() * self.batch * self.world].view(-1, self.world, self.batch)
        return iter(used[self.skip_batches:, self.rank].reshape(-1).tolist())

    def __len__(self):
        return (self.batches_per_epoch() - self.skip_batches) * self.batch
