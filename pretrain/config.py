"""Pretraining configs: dataclass defaults, a YAML of differences, `key=value` overrides; unknown keys fail.

    method: simsiam
    train: {epochs: 100, batch_size: 512, base_lr: 0.05}
    model: {predictor: none}

Overrides on the command line: `train.epochs=2 model.stop_gradient=false`.
"""
import dataclasses
import difflib
from dataclasses import dataclass, field

import yaml

from sslt_core.errors import ConfigError


@dataclass
class TrainConfig:
    data: str = ""  # ImageFolder root with train/ (and val/ for the kNN monitor), or a datasets root
    image_size: int = 224  # crop size of the large views
    epochs: int = 100
    batch_size: int = 256  # global, over all processes
    optimizer: str = "sgd"  # sgd | lars (BN and bias excluded from decay and adaptation) | larc (apex, all params)
    base_lr: float = 0.05
    lr_rule: str = "linear"  # linear: lr = base_lr * batch / 256 | sqrt: base_lr * sqrt(batch) | none
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 0.0  # linear warm-up, then cosine decay
    warmup_start_lr: float = 0.0  # the warm-up's first lr, scaled by lr_rule like base_lr (SwAV: 0.3)
    lr_schedule_unit: str = "step"  # step: the lr changes every step | epoch: once per epoch (MoCo, SimSiam)
    final_lr: float = 0.0  # the cosine schedule's end (SwAV: 0.0048 at batch 4096)
    workers: int = 8
    seed: int = 0
    sync_bn: bool = False  # SyncBatchNorm across GPUs (SimCLR's global BN, BYOL, SimSiam)
    knn_every: int = 1  # epochs between kNN monitors on the val split (0: off)
    knn_k: int = 20
    knn_temperature: float = 0.07
    checkpoint_every: int = 0  # steps between checkpoints (0: at the end of every epoch only)
    max_steps: int = 0  # stop (with a checkpoint) after this many steps; 0: the whole schedule
    log_every: int = 10  # steps between metric lines
    precision: str = "auto"  # auto: bf16 autocast + channels_last on GPU, fp32 on CPU | fp32


@dataclass
class RunConfig:
    method: str
    train: TrainConfig = field(default_factory=TrainConfig)
    model: object = None

    def to_dict(self):
        return {"method": self.method, "train": dataclasses.asdict(self.train), "model": dataclasses.asdict(self.model)}


def _coerce(cls, key, value, where):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if key not in fields:
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f"did you mean {where}.{close[0]}? " if close else ""
        raise ConfigError(f"unknown config key {where}.{key}; {hint}valid: {', '.join(fields)}")
    default = fields[key].default
    kind = type(default) if default is not dataclasses.MISSING else str
    if kind is bool:
        if isinstance(value, str):
            value = {"true": True, "false": False}.get(value.lower(), value)
        if not isinstance(value, bool):
            raise ConfigError(f"{where}.{key} must be true or false, got {value!r}")
        return value
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{key} must be of type {kind.__name__}, got {value!r}") from None


def _apply(instance, values, where):
    if not isinstance(values, dict):
        raise ConfigError(f"'{where}' must be a mapping of keys to values, got {values!r}")
    for key, value in values.items():
        setattr(instance, key, _coerce(type(instance), key, value, where))


def load_config(path=None, overrides=(), methods=None):
    """RunConfig from a YAML file (or none) and `section.key=value` overrides."""
    if methods is None:
        from pretrain.train import METHODS as methods
    raw = {}
    if path:
        with open(path) as file:
            raw = yaml.safe_load(file) or {}
    unknown = set(raw) - {"method", "train", "model"}
    if unknown:
        raise ConfigError(f"unknown top-level config keys {sorted(unknown)} in {path}; valid: method, train, model")
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like train.epochs=2 or model.stop_gradient=false")
        key, value = item.split("=", 1)
        pairs.append((key, yaml.safe_load(value) if value else value))
    method = next((v for k, v in pairs if k == "method"), raw.get("method"))
    if method not in methods:
        raise ConfigError(f"unknown method {method!r}; choose one of {', '.join(methods)}")
    config_cls = methods[method][0]
    run = RunConfig(method=method, train=TrainConfig(), model=config_cls())
    _apply(run.train, raw.get("train") or {}, "train")
    _apply(run.model, raw.get("model") or {}, "model")
    for key, value in pairs:
        if key == "method":
            continue
        section, _, name = key.partition(".")
        if section not in ("train", "model"):
            raise ConfigError(f"override {key}: the section must be train or model")
        _apply(getattr(run, section), {name: value}, section)
    return run
