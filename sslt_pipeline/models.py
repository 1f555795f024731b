"""The rows of the tables: each method's pretraining, each external checkpoint, the random-init baseline."""
from pathlib import Path

from evaluations.registry import Weights
from pretrain.config import load_config
from pretrain.methods import METHODS
from pretrain.train import train
from sslt_core.checkpoints import read_encoder
from sslt_core.errors import CheckpointError, ConfigError
from sslt_core.fingerprint import file_digest
from sslt_core.safe_load import TRUST_FLAG
from sslt_pipeline.config import RANDOM_BASELINE, folder_name
from sslt_pipeline.manifest import Stage


class Model:
    """A row of the tables: a pretraining stage's export, an external checkpoint, or random init."""

    def __init__(self, name, pretrain=None, external=None, traits=None):
        self.name, self.folder = name, folder_name(name)
        self.pretrain, self.external, self.traits = pretrain, external, traits or {}

    def weights(self, inputs):
        """The checked Weights the evaluations read, once the stages this row needs are done."""
        if self.pretrain:
            return Weights(inputs[self.pretrain]["encoder"])
        if self.external:
            return Weights(self.external.path, trust=self.external.trust, source=self.external.source)
        return Weights("random")

    def weights_spec(self):
        """What the model's weights are, by content: its pretraining stage (whose hash the spec carries through
        `needs`), or an external file's sha256, or random init."""
        if self.pretrain:
            return {"weights": "pretrained"}
        if self.external:
            return {"weights": "external", "sha256": file_digest(self.external.path), "source": self.external.source}
        return {"weights": "random"}


def _texts(paths):
    return {str(p): Path(p).read_text() for p in paths}


def pretrain_stage(name, entry, run_config, config):
    """The pretraining of method row `name`, from its checked RunConfig."""
    def run(folder, inputs):
        summary = train(run_config, folder, resume=True, progress=True)
        return {"encoder": str(folder / "encoder.safetensors"), "final": summary}

    reads = ["imagenet/train", "imagenet/val"] if run_config.train.knn_every else ["imagenet/train"]  # kNN monitor
    return Stage(f"{folder_name(name)}/pretrain", {"config": _texts([entry.config]), "overrides": list(entry.overrides),
                                                   "data_root": str(config.data_root), "data": reads}, run,
                 kind="pretrain")


def build_models(config):
    """(models, pretraining stages), each pretraining config and external checkpoint checked once, here, before
    any work."""
    models, stages = [], []
    for name, entry in config.methods.items():
        run = load_config(entry.config, list(entry.overrides), data=config.data_root)
        stages.append(pretrain_stage(name, entry, run, config))
        method = METHODS[run.method][1]
        models.append(Model(name, pretrain=stages[-1].id, traits={
            "method": run.method, "batch_size": run.train.batch_size, "epochs": run.train.epochs,
            "negative_pairs": method.negative_pairs, "momentum_encoder": method.momentum_encoder}))
    if config.random_baseline:
        models.append(Model(RANDOM_BASELINE, traits={"epochs": 0}))  # no pretraining
    for name, entry in config.external.items():
        try:  # read now (without running code, finite weights, a known layout): a bad file fails before any work
            read_encoder(entry.path, entry.source, trust=entry.trust)
        except CheckpointError as error:
            message = str(error).replace(f"pass {TRUST_FLAG}", f"set external.{name}.trust: true in the config")
            raise ConfigError(f"pipeline: external '{name}': {message}") from None
        models.append(Model(name, external=entry))
    return models, stages
