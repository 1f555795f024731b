"""The training loop with hooks, after detectron2's engine/train_loop.py and engine/hooks.py: the loop holds the
state (step, epoch, this step's outputs and metrics, the epoch's summary); everything a run adds (schedules,
clipping, writers, checkpoints, monitors) is a hook.

    for each epoch:   batches(epoch, skip) -> iterable;  model.train();  before_epoch
        for each batch: before_step;  train_step (-> before_optimizer_step);  step += 1;  after_step
                        stop once max_steps are done
        after_epoch (loop.summary is a dict to fill when the epoch is complete, None when it stopped part way)
    after_train (also when the loop raises)
"""
from sslt_core.engine.step import TrainingDiverged, train_step


class HookBase:
    """Called by TrainLoop with the loop; override what the hook needs. During after_step, loop.step counts the
    steps done (this one included), loop.outputs and loop.metrics are this step's."""

    def before_train(self, loop):
        pass

    def before_epoch(self, loop):
        pass

    def before_step(self, loop):
        pass

    def before_optimizer_step(self, loop):
        """After backward, before the update: gradient clipping, gradients cancelled or frozen."""

    def after_step(self, loop):
        pass

    def after_epoch(self, loop):
        pass

    def after_train(self, loop):
        pass


def _diverged(loop, loss):
    return TrainingDiverged(f"loss is {loss} at step {loop.step} (epoch {loop.epoch + 1}); lower the learning rate")


class TrainLoop:
    """Train `forward` (the model, or any callable of a batch returning the loss or {"loss": ...}) with `optimizer`.

    batches(epoch, skip): the epoch's batches, its first `skip` already trained on (an exact resume; a sampler such
    as EpochSampler starts there). steps_per_epoch: needed to resume part way (start_step); None: an epoch is
    whatever batches() yields. prepare(batch): moves a batch to the device. model: put in train mode each epoch.
    diverged(loop, loss): the error of a non-finite loss. sync_loss: average the loss over ranks (the NaN guard
    of every rank); off for a loop that runs on one rank alone."""

    def __init__(self, forward, optimizer, batches, epochs, *, hooks=(), steps_per_epoch=None, start_step=0,
                 max_steps=0, prepare=None, model=None, autocast=None, diverged=_diverged, sync_loss=True):
        self.forward, self.optimizer, self.batches, self.epochs = forward, optimizer, batches, epochs
        self.hooks, self.steps_per_epoch, self.max_steps = list(hooks), steps_per_epoch, max_steps
        self.prepare, self.model, self.autocast, self.diverged, self.sync_loss = (prepare, model, autocast, diverged,
                                                                                 sync_loss)
        self.step, self.epoch = start_step, 0
        self.epoch_batches, self.outputs, self.metrics = None, None, {}
        self.summary, self.last_summary = None, {}
        self.completed = False  # every epoch ran (not stopped by max_steps, no error)

    def _call(self, name):
        for hook in self.hooks:
            getattr(hook, name)(self)

    def stop_now(self):
        return bool(self.max_steps) and self.step >= self.max_steps

    def run_step(self, batch):
        if self.prepare is not None:
            batch = self.prepare(batch)
        self.outputs, loss = train_step(self.forward, self.optimizer, batch, autocast=self.autocast,
                                        before_optimizer_step=lambda: self._call("before_optimizer_step"),
                                        diverged=lambda value: self.diverged(self, value), sync_loss=self.sync_loss)
        self.metrics = {"loss": loss}

    def run(self):
        """Train from self.step to the end (or max_steps); return the last complete epoch's summary."""
        self._call("before_train")
        try:
            first = self.step // self.steps_per_epoch if self.steps_per_epoch else 0
            for epoch in range(first, self.epochs):
                self.epoch = epoch
                skip = self.step - self.epoch * self.steps_per_epoch if self.steps_per_epoch else 0
                self.epoch_batches = self.batches(self.epoch, skip)
                if self.model is not None:
                    self.model.train()
                self._call("before_epoch")
                for batch in self.epoch_batches:
                    self._call("before_step")
                    self.run_step(batch)
                    self.step += 1
                    self._call("after_step")
                    if self.stop_now():
                        break
                complete = not self.steps_per_epoch or self.step % self.steps_per_epoch == 0
                self.summary = {} if complete else None
                self._call("after_epoch")
                if complete:
                    self.last_summary = self.summary
                if self.stop_now():
                    return self.last_summary
            self.completed = True
            return self.last_summary
        finally:
            self._call("after_train")
