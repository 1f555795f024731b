"""Checkpoints for an exact resume: model, optimizer, step, and every rank's own state (its RNG, whatever the
model keeps per rank) gathered to rank 0, which writes the one file atomically.

    {"model": state_dict, "optimizer": state_dict, "step": int, "ranks": [{"rng": ..., **rank_state()}, ...],
     **extra(loop, epochs_done)}
"""
import io

import torch

from sslt_core.atomic import write_bytes_atomic
from sslt_core.engine import distributed
from sslt_core.engine.loop import HookBase
from sslt_core.rng import rng_state, set_rng_state
from sslt_core.safe_load import load_file


def save_atomic(path, obj):
    """torch.save into a temporary file renamed over `path`: a kill leaves the old checkpoint or the new one."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getvalue())


class Checkpointer(HookBase):
    """Saves every `period` steps inside an epoch, after each complete epoch (after the writers, hooks placed
    before it in the list), and where the loop stops part way through an epoch (max_steps).

    model, optimizer: what state_dict() is saved of (the bare model, not its DDP wrapper). rank_state(): this
    rank's extra state. extra(loop, epochs_done): more entries (metadata, the partial epoch's monitors).
    save(path, obj): the writer (save_atomic), looked up when called. Every rank must run the hook: the per-rank
    state is gathered with a collective."""

    def __init__(self, path, model, optimizer, period=0, rank_state=None, extra=None, save=None):
        self.path, self.model, self.optimizer, self.period = path, model, optimizer, period
        self.rank_state, self.extra, self.save_file = rank_state, extra, save

    def save(self, loop, epochs_done):
        ranks = distributed.gather_to_main({"rng": rng_state(), **(self.rank_state() if self.rank_state else {})})
        if distributed.rank() == 0:
            state = {**(self.extra(loop, epochs_done) if self.extra else {}), "model": self.model.state_dict(),
                     "optimizer": self.optimizer.state_dict(), "step": loop.step, "ranks": ranks}
            (self.save_file or save_atomic)(self.path, state)

    def after_step(self, loop):
        inside_epoch = not loop.steps_per_epoch or loop.step % loop.steps_per_epoch
        if self.period and loop.step % self.period == 0 and inside_epoch:
            self.save(loop, loop.epoch)  # at an epoch's end: in after_epoch, once the epoch's summary is written

    def after_epoch(self, loop):
        self.save(loop, loop.epoch + 1 if loop.summary is not None else loop.epoch)


def load_checkpoint(path, model, optimizer):
    """Restore what Checkpointer saved: model, optimizer and this rank's RNG; return the whole state (its "step"
    is where the loop resumes, start_step; its "ranks"[rank] this rank's extra state). Read weights-only."""
    state = load_file(path)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(state["ranks"][distributed.rank()]["rng"])
    return state
