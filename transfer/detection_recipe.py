"""A detectron2 YAML with its _BASE_ chain and overrides, read and checked once into an immutable recipe.

load_recipe reads every file of the chain once, merges detectron2's config once (from the texts it read, not from
the files again) and checks keys and values; each trial's config is then a clone of that merged config with the
run's weights, output folder, seed and process count (DetectionRecipe.trial_config).
"""
import difflib
import functools
import hashlib
import io
import math
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from detectron2.config import CfgNode, get_cfg

from sslt_core.config import read_yaml_text
from sslt_core.errors import ConfigError
from sslt_core.safe_load import TRUST_FLAG

# Set by the run itself: an override would be silently replaced.
RUN_KEYS = (("MODEL.WEIGHTS", "--weights"), ("OUTPUT_DIR", "--output-dir"), ("SEED", "--seed"))


@dataclass(frozen=True)
class DetectionRecipe:
    """A detectron2 YAML with its _BASE_ chain and overrides, checked once (load_recipe)."""

    config_file: str
    chain: tuple  # ((path, text), ...): the file first, then its bases; every file read once
    opts: tuple  # KEY VALUE ... as strings
    datasets: tuple  # sorted set of DATASETS.TRAIN + DATASETS.TEST
    _cfg: CfgNode = field(default=None, compare=False, repr=False)  # merged and checked, frozen
    _notes: tuple = field(default=(), compare=False, repr=False)  # what the merge adjusted, said by every trial

    def digest(self):
        """sha256 over the text of the config and of its whole _BASE_ chain (the files' bytes)."""
        digest = hashlib.sha256()
        for _, text in self.chain:
            digest.update(text.encode())
        return digest.hexdigest()

    def texts(self):
        """{path: text} of the chain."""
        return dict(self.chain)

    @functools.cached_property
    def base_config(self):
        """The config of a one-process trial (no weights, seed 0), made once: what a protocol id and a record say
        of the run (its length, batch, test sets, device, resolved config)."""
        return self.trial_config("", "unused", 0, 1)[0]

    def trial_config(self, weights, output_dir, seed, world_size):
        """(frozen detectron2 config of one trial, notes: what was adjusted, to be said); nothing is read."""
        if not 0 <= seed < 2**31:  # detectron2 seeds numpy, which takes 32 bits, with seed + rank
            raise ConfigError(f"--seed must be in [0, 2**31), got {seed}")
        cfg, notes = self._cfg.clone(), list(self._notes)
        cfg.defrost()
        if cfg.SOLVER.IMS_PER_BATCH % world_size:
            raise ConfigError(f"SOLVER.IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH} must divide among {world_size} "
                              "processes")
        if world_size == 1:
            for key in ("RESNETS", "FPN"):
                node = getattr(cfg.MODEL, key)
                if node.NORM == "SyncBN":  # torch's SyncBatchNorm needs GPUs and several processes; over one, BN
                    node.NORM = "BN"
                    notes.append(f"MODEL.{key}.NORM SyncBN -> BN: one process")
        for key in ("RESNETS", "FPN"):
            if getattr(cfg.MODEL, key).NORM == "naiveSyncBN":
                notes.append(f"MODEL.{key}.NORM naiveSyncBN: BN statistics averaged over {world_size} process(es)"
                             + (" (plain BN on one)" if world_size == 1 else ""))
        cfg.MODEL.WEIGHTS = weights
        if "MODEL.DEVICE" not in self.opts[::2]:
            cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
        # fp32 unless asked for: MoCo's detection protocol (detection/configs, detectron2's default) trains in fp32.
        notes.append(f"MODEL.DEVICE {cfg.MODEL.DEVICE}, SOLVER.AMP.ENABLED {cfg.SOLVER.AMP.ENABLED}"
                     + ("" if cfg.SOLVER.AMP.ENABLED else " (fp32 as the protocol; SOLVER.AMP.ENABLED True for AMP)"))
        cfg.OUTPUT_DIR = str(output_dir)
        cfg.SEED = seed
        cfg.freeze()
        return cfg, notes


def read_chain(config_file):
    """((path, text), ...) of the config file and every file of its _BASE_ chain, the file itself first, each read
    once and checked (bad YAML, bad bytes, a list, a key given twice, empty, a loop, a base that is not a file)."""
    chain, path = [], Path(config_file)
    while True:
        if path.is_dir() or not path.is_file():
            raise ConfigError(f"config file {path} {'is a folder' if path.is_dir() else 'does not exist'}; give the "
                              "path of a detectron2 YAML, e.g. configs/voc07.yaml")
        if path.resolve() in [Path(p).resolve() for p, _ in chain]:
            raise ConfigError(f"config {config_file}: its _BASE_ chain loops back to {path}")
        text, content = read_yaml_text(path)
        chain.append((str(path), text))
        if not content:
            raise ConfigError(f"config {path} is empty; give a detectron2 YAML, e.g. configs/voc07.yaml")
        if "_BASE_" not in content:
            return tuple(chain)
        base = content["_BASE_"]
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(f"config {path}: _BASE_ must name a YAML file, got {base!r}; give its path relative to "
                              f"{path.parent}, or remove the key")
        if base.startswith("~") or "://" in base:  # fvcore would expand or download it: not the file checked here
            raise ConfigError(f"config {path}: _BASE_ {base!r} starts with ~ or is a URL; give the base file's path "
                              f"relative to {path.parent}, or an absolute path")
        path = path.parent / base


def _key(path):
    return os.path.abspath(path)  # fvcore joins a base as os.path.join(dirname(file), base), read_chain as Path /


@contextmanager
def _served(chain):
    """detectron2's CfgNode opens the config and its bases through _open_cfg: served from the texts read once."""
    texts = {_key(path): text for path, text in chain}
    saved = CfgNode.__dict__["_open_cfg"]
    CfgNode._open_cfg = classmethod(lambda cls, filename: io.StringIO(texts[_key(filename)]))
    try:
        yield
    finally:
        CfgNode._open_cfg = saved


def _flat_keys(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _flat_keys(value, f"{prefix}{key}.")
        else:
            yield prefix + key


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Values detectron2 would only fail on (or silently misuse) once training runs: (key, test, what it must be).
_VALUE_RULES = (
    ("SOLVER.BASE_LR", lambda v: v > 0, "> 0"),
    ("SOLVER.IMS_PER_BATCH", lambda v: v >= 1, ">= 1"),
    ("SOLVER.MAX_ITER", lambda v: v >= 1, ">= 1"),
    ("SOLVER.WEIGHT_DECAY", lambda v: v >= 0, ">= 0"),
    ("SOLVER.MOMENTUM", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("SOLVER.GAMMA", lambda v: v > 0, "> 0"),
    ("SOLVER.WARMUP_ITERS", lambda v: v >= 0, ">= 0"),
    ("SOLVER.WARMUP_FACTOR", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("SOLVER.CHECKPOINT_PERIOD", lambda v: v >= 1, ">= 1"),
    ("SOLVER.STEPS", lambda v: all(_is_int(s) and s >= 0 for s in v) and list(v) == sorted(set(v)),
     "an increasing list of iterations >= 0, e.g. (300, 400)"),
    ("MODEL.PIXEL_MEAN", lambda v: len(v) == 3 and all(_is_number(x) for x in v), "3 numbers (one per channel)"),
    ("MODEL.PIXEL_STD", lambda v: len(v) == 3 and all(_is_number(x) and x > 0 for x in v),
     "3 numbers > 0 (one per channel)"),
    ("MODEL.RESNETS.DEPTH", lambda v: v in (18, 34, 50, 101, 152), "one of 18, 34, 50, 101, 152"),
    ("MODEL.ROI_HEADS.NUM_CLASSES", lambda v: v >= 1, ">= 1"),
    ("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", lambda v: v >= 1, ">= 1"),
    ("MODEL.RPN.BATCH_SIZE_PER_IMAGE", lambda v: v >= 1, ">= 1"),
    ("DATALOADER.NUM_WORKERS", lambda v: v >= 0, ">= 0"),
    ("TEST.EVAL_PERIOD", lambda v: v >= 0, ">= 0"),
    ("INPUT.MIN_SIZE_TRAIN", lambda v: all(s >= 1 for s in v), "a list of sizes >= 1"),
    ("INPUT.MIN_SIZE_TEST", lambda v: v >= 0, ">= 0 (0: no resizing)"),
    ("INPUT.MAX_SIZE_TRAIN", lambda v: v >= 1, ">= 1"),
    ("INPUT.MAX_SIZE_TEST", lambda v: v >= 1, ">= 1"),
    # detectron2 asserts a non-empty training set, and evaluates an empty test set to no result with exit 0
    ("DATASETS.TRAIN", lambda v: len(v) >= 1 and all(isinstance(n, str) for n in v), "one or more dataset names"),
    ("DATASETS.TEST", lambda v: len(v) >= 1 and all(isinstance(n, str) for n in v), "one or more dataset names"),
)


def _numbers(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, float) or isinstance(value, (list, tuple)) and any(isinstance(v, float) for v in value):
            yield prefix + key, value


def check_values(cfg):
    """Raise ConfigError on a NaN or infinite number anywhere in `cfg`, or a value out of the range of _VALUE_RULES."""
    for key, value in _numbers(cfg):
        values = value if isinstance(value, (list, tuple)) else [value]
        if not all(math.isfinite(v) for v in values if isinstance(v, float)):
            raise ConfigError(f"{key} must be a finite number, got {value}")
    for key, test, meaning in _VALUE_RULES:
        node = cfg
        for part in key.split("."):
            node = node[part]
        try:
            good = test(node)
        except TypeError:  # e.g. a nested list where numbers belong
            good = False
        if not good:
            raise ConfigError(f"{key} must be {meaning}, got {node}")


def check_proposals(cfg, trust):
    """detectron2 reads DATASETS.PROPOSAL_FILES_* with a full pickle.load (data/build.py
    load_proposals_into_dataset), which can run code: refused unless the user trusts the files."""
    files = tuple(cfg.DATASETS.PROPOSAL_FILES_TRAIN) + tuple(cfg.DATASETS.PROPOSAL_FILES_TEST)
    if (cfg.MODEL.LOAD_PROPOSALS or files) and not trust:
        raise ConfigError(f"MODEL.LOAD_PROPOSALS {cfg.MODEL.LOAD_PROPOSALS}, DATASETS.PROPOSAL_FILES_* {list(files)}: "
                          "detectron2 unpickles proposal files, which can run code (and the protocol's RPN computes "
                          f"its own proposals); remove these keys, or pass {TRUST_FLAG} to train_det if you trust "
                          "the files")


def check_precision(cfg):
    """AMP needs the GPU that detectron2's AMPTrainer asserts (engine/train_loop.py)."""
    if cfg.SOLVER.AMP.ENABLED and not cfg.MODEL.DEVICE.startswith("cuda"):
        raise ConfigError(f"SOLVER.AMP.ENABLED True needs a GPU, but the trial runs on MODEL.DEVICE "
                          f"{cfg.MODEL.DEVICE}: detectron2's AMPTrainer runs on CUDA only; remove it to train in fp32")


def precision(cfg):
    """How a trial trains, recorded in its result.json: 'amp' (SOLVER.AMP.ENABLED) or 'fp32' (the protocol's)."""
    return "amp" if cfg.SOLVER.AMP.ENABLED else "fp32"


def load_recipe(config_file, opts=(), trust=False):
    """The checked recipe of `config_file` with overrides `opts` (KEY VALUE ...). Precomputed proposal files (they
    are unpickled) only if `trust`. Raises ConfigError."""
    chain = read_chain(config_file)  # a missing file or base is named as such
    opts = tuple(map(str, opts))
    if len(opts) % 2:
        raise ConfigError(f"overrides come as KEY VALUE pairs; got {list(opts)}")
    for key, flag in RUN_KEYS:
        if key in opts[::2]:
            raise ConfigError(f"{key} is set by the run; give it with {flag} (in a pipeline: the model's weights and "
                              "the output folder are the pipeline's), not as an override")
    cfg, notes = get_cfg(), []
    try:
        with _served(chain):
            cfg.merge_from_file(str(config_file), allow_unsafe=False)  # yaml.safe_load: no Python tags
        batch, lr = cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError, ValueError, TypeError, SyntaxError, yaml.YAMLError) as error:
        message = str(error).strip("'\"").splitlines()[0] if str(error) else type(error).__name__
        word = message.rsplit(" ", 1)[-1]
        close = difflib.get_close_matches(word, _flat_keys(get_cfg()), n=1)
        if close and close[0] == word:  # a known key with a value of the wrong type
            hint = f"give {word} a value of the type its default has"
        else:
            hint = f"did you mean {close[0]}?" if close else "see detectron2's config reference for valid keys"
        raise ConfigError(f"config {config_file} {' '.join(opts)}: {message}; {hint}") from None
    check_values(cfg)
    check_proposals(cfg, trust)
    if batch != cfg.SOLVER.IMS_PER_BATCH and "SOLVER.BASE_LR" not in opts[::2]:
        # Linear scaling rule (Goyal et al. 2017), as the MoCo / SimSiam recipes state their lr at batch 16.
        cfg.SOLVER.BASE_LR = lr * cfg.SOLVER.IMS_PER_BATCH / batch
        notes.append(f"SOLVER.IMS_PER_BATCH {batch} -> {cfg.SOLVER.IMS_PER_BATCH}: SOLVER.BASE_LR scaled linearly "
                     f"{lr:g} -> {cfg.SOLVER.BASE_LR:g} (iterations unchanged)")
    cfg.freeze()
    datasets = tuple(sorted(set(cfg.DATASETS.TRAIN) | set(cfg.DATASETS.TEST)))
    return DetectionRecipe(str(config_file), chain, opts, datasets, cfg, tuple(notes))
