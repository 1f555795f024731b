"""What a run shows: metric lines (a JSON line each, and the same scalars for TensorBoard) and a progress bar."""
import json

from tqdm import tqdm

from sslt_core.atomic import check_output_folder, open_output
from sslt_core.engine.loop import HookBase


class MetricsWriter(HookBase):
    """Every `every` steps, {"step", "epoch" (1-based), **loop.metrics}; after each complete epoch, loop.summary (if
    filled) without the keys in `leave_out`. Into `path` (appended, flushed per line) and `tensorboard_dir` (numbers
    only, at the record's step; purge_step drops what a killed run wrote after its checkpoint). Disabled (rank
    other than 0): writes nothing, opens nothing."""

    def __init__(self, path, tensorboard_dir=None, every=1, purge_step=0, leave_out=(), enabled=True):
        self.every, self.leave_out, self.enabled = every, tuple(leave_out), enabled
        self.file = self.tensorboard = None
        if enabled:
            if tensorboard_dir is not None:
                from torch.utils.tensorboard import SummaryWriter

                self.tensorboard = SummaryWriter(str(check_output_folder(tensorboard_dir)), purge_step=purge_step)
            self.file = open_output(path, "a")  # noqa: SIM115 (closed by close(), after_train)

    def write(self, record):
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tensorboard is not None:
            for key, value in record.items():
                if key not in ("step", "epoch") and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, record["step"])

    def after_step(self, loop):
        if self.every and loop.step % self.every == 0:
            self.write({"step": loop.step, "epoch": loop.epoch + 1, **loop.metrics})

    def after_epoch(self, loop):
        if loop.summary:  # a complete epoch that some hook summarised
            self.write({k: v for k, v in loop.summary.items() if k not in self.leave_out})

    def close(self):
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.file is not None:
            self.file.close()
        self.file = self.tensorboard = None

    def after_train(self, loop):
        self.close()


class ProgressBar(HookBase):
    """A tqdm bar per epoch over its steps (per="step"), with loop.metrics in the postfix as `postfix` formats
    them ({"loss": ".4f"}), or one bar over the epochs (per="epoch")."""

    def __init__(self, desc, per="step", postfix=None, enabled=True):
        if per not in ("step", "epoch"):
            raise ValueError(f"ProgressBar per {per!r}: use 'step' or 'epoch'")
        self.desc, self.per, self.postfix, self.enabled = desc, per, dict(postfix or {}), enabled
        self.bar = None

    def _open(self, loop, total):
        desc = self.desc(loop) if callable(self.desc) else self.desc
        self.bar = tqdm(total=total, desc=desc, disable=not self.enabled, leave=False)

    def _close(self):
        if self.bar is not None:
            self.bar.close()
        self.bar = None

    def before_train(self, loop):
        if self.per == "epoch":
            first = loop.step // loop.steps_per_epoch if loop.steps_per_epoch else 0
            self._open(loop, max(loop.epochs - first, 0))

    def before_epoch(self, loop):
        if self.per == "step":
            self._open(loop, len(loop.epoch_batches) if hasattr(loop.epoch_batches, "__len__") else None)

    def after_step(self, loop):
        if self.per == "step":
            self.bar.update(1)
            shown = {k: format(loop.metrics[k], spec) for k, spec in self.postfix.items() if k in loop.metrics}
            if shown:
                self.bar.set_postfix(**shown)

    def after_epoch(self, loop):
        if self.per == "step":
            self._close()
        else:
            self.bar.update(1)

    def after_train(self, loop):
        self._close()
