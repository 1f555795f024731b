"""Pretraining configs: dataclass defaults, a YAML of differences, `section.key=value` overrides, every value
type- and range-checked (sslt_core/config.py).

    method: simsiam
    train: {epochs: 100, batch_size: 512, base_lr: 0.05}
    model: {predictor: none}

Overrides on the command line: `train.epochs=2 model.stop_gradient=false`.
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pretrain.methods import METHODS
from sslt_core.config import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    build,
    parse_override,
    read_yaml,
    replace_value,
    unknown_key,
)
from sslt_core.errors import ConfigError


@dataclass
class TrainConfig:
    data: str = ""  # ImageFolder root with train/ (and val/ for the kNN monitor), or a datasets root
    image_size: Annotated[int, Range(min=32, max=1024)] = 224  # crop size of the large views
    epochs: PositiveInt = 100
    batch_size: PositiveInt = 256  # global, over all processes
    optimizer: Literal["sgd", "lars", "larc"] = "sgd"  # lars: BN and bias excluded; larc (apex): every parameter
    base_lr: PositiveFloat = 0.05
    lr_rule: Literal["linear", "sqrt", "none"] = "linear"  # lr = base_lr * batch / 256 | * sqrt(batch) | as is
    weight_decay: NonNegativeFloat = 1e-4
    momentum: Annotated[float, Range(min=0, max=0.9999)] = 0.9
    warmup_epochs: NonNegativeFloat = 0.0  # linear warm-up, then cosine decay
    warmup_start_lr: NonNegativeFloat = 0.0  # the warm-up's first lr, scaled by lr_rule like base_lr (SwAV: 0.3)
    lr_schedule_unit: Literal["step", "epoch"] = "step"  # step: the lr changes every step | epoch: once per epoch
    final_lr: NonNegativeFloat = 0.0  # the cosine schedule's end, scaled by lr_rule like base_lr (SwAV: 0.0048)
    lr_in_momentum: bool = False  # lars/larc: mu <- m mu + lr u; w -= mu (TF's MomentumOptimizer, SimCLR's LARS)
    workers: Annotated[int, Range(min=0, max=256)] = 8  # data loading processes per training process
    seed: Annotated[int, Range(min=0, max=2**31 - 1)] = 0  # numpy takes 32-bit seeds
    sync_bn: bool = False  # SyncBatchNorm across GPUs (SimCLR's global BN, BYOL, SimSiam, SwAV)
    sync_bn_group_size: NonNegativeInt = 0  # processes per SyncBN group; 0: all (SwAV's apex groups: 8)
    knn_every: NonNegativeInt = 0  # epochs between kNN monitors on the val split (0: off; for small data, see README)
    knn_k: PositiveInt = 20
    knn_temperature: PositiveFloat = 0.07
    # Label-free monitors (pretrain/label_free_monitor.py): epochs between them (0: off), probe images, their seed.
    diagnostics_every: NonNegativeInt = 1
    diagnostics_samples: Annotated[int, Range(min=2, max=1_000_000)] = 4096
    diagnostics_seed: Annotated[int, Range(min=0, max=2**31 - 1)] = 0
    checkpoint_every: NonNegativeInt = 0  # steps between checkpoints (0: at the end of every epoch only)
    max_steps: NonNegativeInt = 0  # stop (with a checkpoint) after this many steps; 0: the whole schedule
    log_every: PositiveInt = 10  # steps between metric lines
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast + channels_last on a GPU, fp32 on a CPU
    # pil: PIL decoding and augmentation in the workers | tensor: workers read bytes; the device decodes (nvJPEG on a
    # GPU) and augments whole batches. pil stays the default until tensor is measured on a GPU (README).
    data_pipeline: Literal["pil", "tensor"] = "pil"


@dataclass
class RunConfig:
    method: str
    train: TrainConfig = field(default_factory=TrainConfig)
    model: object = None
    warnings: tuple = ()  # for the run's log, not part of the recipe (to_dict leaves them out)

    def to_dict(self):
        return {"method": self.method, "train": dataclasses.asdict(self.train), "model": dataclasses.asdict(self.model)}


def _check_together(run):
    """Rules that tie two values together."""
    train = run.train
    if train.warmup_epochs > train.epochs:
        raise ConfigError(f"train.warmup_epochs {train.warmup_epochs} is longer than train.epochs {train.epochs}")
    if train.lr_in_momentum and train.optimizer == "sgd":
        raise ConfigError("train.lr_in_momentum is for train.optimizer lars or larc (torch's SGD keeps lr outside)")


def _batch_warning(run, raw, path):
    """A preset's lr values are for its batch size; with lr_rule none nothing rescales them at another."""
    made_for = (raw.get("train") or {}).get("batch_size")  # the YAML's own, before overrides
    train = run.train
    if train.lr_rule != "none" or made_for is None or made_for == train.batch_size:
        return ()
    hint = (" (SwAV at batch 256: configs/pretrain/swav_r50_bs256.yaml, the official batch-256 recipe)"
            if run.method == "swav" and train.batch_size == 256 else "")
    return (f"warning: {path} is made for batch {made_for}; this run has batch {train.batch_size} with train.lr_rule "
            f"none, so base_lr {train.base_lr:g}, warmup_start_lr {train.warmup_start_lr:g} and final_lr "
            f"{train.final_lr:g} are used as they are: set them for this batch, or use a preset made for it{hint}",)


def load_config(path=None, overrides=(), data=None):
    """RunConfig from a YAML file (or none) and `section.key=value` overrides; `data`, a path given as it is (not
    read as YAML, so '2024' or 'yes' stay folder names), sets train.data."""
    raw = read_yaml(path) if path else {}
    for key in raw:
        if key not in ("method", "train", "model"):
            raise unknown_key(key, ("method", "train", "model"), "(top level)")
    pairs = [parse_override(item) for item in overrides]
    method = next((v for k, v in pairs if k == "method"), raw.get("method"))
    if method is None:
        raise ConfigError(f"no method: pass --config configs/pretrain/<method>_r50.yaml, or set method: (one of "
                          f"{', '.join(METHODS)}) in the config or as the override method=NAME")
    if not isinstance(method, str) or method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    run = RunConfig(method=method, train=build(TrainConfig, raw.get("train"), "train"),
                    model=build(METHODS[method][0], raw.get("model"), "model"))
    for key, value in pairs:
        if key == "method":
            continue
        section, _, name = key.partition(".")
        if section not in ("train", "model") or not name:
            raise ConfigError(f"override {key}={value}: the key must be train.<key> or model.<key>")
        setattr(run, section, replace_value(getattr(run, section), name, value, section))
    if data is not None:
        run.train = dataclasses.replace(run.train, data=str(data))
    _check_together(run)
    return dataclasses.replace(run, warnings=_batch_warning(run, raw, path))
