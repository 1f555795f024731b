"""Fine-tune and evaluate a detector K times (different seeds) and summarise: what tools/train_det.py runs.

    OUTPUT/run.json         what the run is: the config chain's sha256, opts, the weights' sha256, the first seed
    OUTPUT/log.txt          the log of all trials
    OUTPUT/trial_<k>/       detectron2's own output: metrics.json (per iteration), TensorBoard events,
                            checkpoints, config.yaml, result.json (that trial's evaluation, written last)
    OUTPUT/metrics.json     every trial's results, their mean and std

Everything is checked before the output folder is touched: the config (with its _BASE_ chain), the overrides
and the weights. A run is resumed (--resume) only with the config, overrides, weights and seed it started with.
"""
import difflib
import hashlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import torch
import yaml
from detectron2.config import get_cfg
from detectron2.engine import hooks
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from sslt_core.atomic import check_no_links, check_replaceable, write_bytes_atomic, write_json_atomic
from sslt_core.checkpoints import check_finite, is_detectron2_checkpoint
from sslt_core.config import read_yaml
from sslt_core.errors import CheckpointError, ConfigError, OutputError, ResultsError, ToolkitError
from sslt_core.fingerprint import file_digest
from sslt_core.lock import LOCK_NAME, OutputLock
from sslt_core.rng import rng_scope
from sslt_core.safe_load import TRUST_FLAG, load_file
from transfer.convert import detectron2_resnet50_shapes
from transfer.detection import (
    DetectionTrainer,
    check_detection_sets,
    last_checkpoint,
    register_detection_sets,
    summarize_trials,
)

logger = logging.getLogger("transfer")


def config_chain(config_file):
    """The config file and every file of its _BASE_ chain, the file itself first (what its values depend on)."""
    chain, path = [], Path(config_file)
    while True:
        if path.is_dir() or not path.is_file():
            raise ConfigError(f"config file {path} {'is a folder' if path.is_dir() else 'does not exist'}; give the "
                              "path of a detectron2 YAML, e.g. configs/voc07.yaml")
        if path.resolve() in [p.resolve() for p in chain]:
            raise ConfigError(f"config {config_file}: its _BASE_ chain loops back to {path}")
        chain.append(path)
        content = read_yaml(path)  # one-line errors for bad YAML, bad bytes, a list, a key given twice
        if not content:
            raise ConfigError(f"config {path} is empty; give a detectron2 YAML, e.g. configs/voc07.yaml")
        if "_BASE_" not in content:
            return chain
        base = content["_BASE_"]
        if not isinstance(base, str) or not base.strip():
            raise ConfigError(f"config {path}: _BASE_ must name a YAML file, got {base!r}; give its path relative to "
                              f"{path.parent}, or remove the key")
        if base.startswith("~") or "://" in base:  # fvcore would expand or download it: not the file checked here
            raise ConfigError(f"config {path}: _BASE_ {base!r} starts with ~ or is a URL; give the base file's path "
                              f"relative to {path.parent}, or an absolute path")
        path = path.parent / base


def config_digest(config_file):
    """sha256 over the text of the config and of its whole _BASE_ chain."""
    digest = hashlib.sha256()
    for path in config_chain(config_file):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def check_weights(weights, trust=False):
    """'' for random init, else the path of a detectron2 .pkl that covers the whole ResNet-50 backbone with finite
    values; read without running code from it unless `trust`."""
    if weights == "random":
        return ""
    path = Path(weights)
    if path.suffix != ".pkl":
        raise CheckpointError(f"--weights {weights}: detectron2 needs a converted .pkl; run "
                              f"python tools/convert_to_d2.py {weights}")
    checkpoint = load_file(path, trust)
    if not is_detectron2_checkpoint(checkpoint):
        raise CheckpointError(f"--weights {weights} is not a detectron2 checkpoint (no 'model'/'__author__'); "
                              "convert it with python tools/convert_to_d2.py")
    model = checkpoint["model"]
    if not isinstance(model, dict) or not all(isinstance(v, np.ndarray) for v in model.values()):
        raise CheckpointError(f"--weights {weights}: its 'model' must map names to numpy arrays, found a "
                              f"{type(model).__name__}; re-convert it with python tools/convert_to_d2.py")
    expected = detectron2_resnet50_shapes()
    missing = set(expected) - set(model)
    if missing:
        raise CheckpointError(f"--weights {weights} covers {len(expected) - len(missing)} of detectron2's "
                              f"{len(expected)} R50 tensors (missing e.g. {sorted(missing)[:2]}); re-convert it "
                              "with python tools/convert_to_d2.py")
    wrong = [(name, np.shape(model[name]), shape) for name, shape in sorted(expected.items())
             if tuple(np.shape(model[name])) != shape]
    if wrong:  # detectron2 skips a tensor of another shape with a warning: the run would train from random init
        name, found, shape = wrong[0]
        raise CheckpointError(f"--weights {weights}: {len(wrong)} tensors have another shape than detectron2's R50 "
                              f"(e.g. {name}: {found}, expected {shape}); re-convert it with python "
                              "tools/convert_to_d2.py")
    try:
        check_finite({k: torch.from_numpy(np.asarray(v)) for k, v in model.items() if np.asarray(v).dtype.kind == "f"})
    except CheckpointError as error:
        raise CheckpointError(f"--weights {weights}: {error}") from None
    if checkpoint.get("matching_heuristics") is not True:  # without it detectron2 matches none of these names
        raise CheckpointError(f"--weights {weights} lacks 'matching_heuristics': True, without which detectron2 "
                              "loads none of its backbone names and trains from random init; re-convert it with "
                              "python tools/convert_to_d2.py")
    return str(path)


def _flat_keys(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _flat_keys(value, f"{prefix}{key}.")
        else:
            yield prefix + key


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


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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


def build_config(config_file, opts, weights, output_dir, seed, world_size, trust=False):
    """The detectron2 config of one trial. Returns (cfg, notes): what was adjusted, to be said. Precomputed
    proposal files (they are unpickled) only if `trust`."""
    config_chain(config_file)  # a missing file or base is named as such
    if len(opts) % 2:
        raise ConfigError(f"overrides come as KEY VALUE pairs; got {list(opts)}")
    for key, flag in (("MODEL.WEIGHTS", "--weights"), ("OUTPUT_DIR", "--output-dir"), ("SEED", "--seed")):
        if key in map(str, list(opts)[::2]):  # set by the run itself: an override would be silently replaced
            raise ConfigError(f"{key} is set by the run; give it with {flag} (in a pipeline: the model's weights and "
                              "the output folder are the pipeline's), not as an override")
    cfg, notes = get_cfg(), []
    try:
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
        raise ConfigError(f"config {config_file} {' '.join(map(str, opts))}: {message}; {hint}") from None
    check_values(cfg)
    check_proposals(cfg, trust)
    if not 0 <= seed < 2**31:  # detectron2 seeds numpy, which takes 32 bits, with seed + rank
        raise ConfigError(f"--seed must be in [0, 2**31), got {seed}")
    if cfg.SOLVER.IMS_PER_BATCH % world_size:
        raise ConfigError(f"SOLVER.IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH} must divide among {world_size} processes")
    if batch != cfg.SOLVER.IMS_PER_BATCH and "SOLVER.BASE_LR" not in list(opts)[::2]:
        # Linear scaling rule (Goyal et al. 2017), as the MoCo / SimSiam recipes state their lr at batch 16.
        cfg.SOLVER.BASE_LR = lr * cfg.SOLVER.IMS_PER_BATCH / batch
        notes.append(f"SOLVER.IMS_PER_BATCH {batch} -> {cfg.SOLVER.IMS_PER_BATCH}: SOLVER.BASE_LR scaled linearly "
                     f"{lr:g} -> {cfg.SOLVER.BASE_LR:g} (iterations unchanged)")
    if world_size == 1:
        for key in ("RESNETS", "FPN"):
            node = getattr(cfg.MODEL, key)
            if node.NORM == "SyncBN":  # torch's SyncBatchNorm needs GPUs and several processes; over one it is BN
                node.NORM = "BN"
                notes.append(f"MODEL.{key}.NORM SyncBN -> BN: one process")
    for key in ("RESNETS", "FPN"):
        norm = getattr(cfg.MODEL, key).NORM
        if norm == "naiveSyncBN":
            notes.append(f"MODEL.{key}.NORM naiveSyncBN: BN statistics averaged over {world_size} process(es)"
                         + (" (plain BN on one)" if world_size == 1 else ""))
    cfg.MODEL.WEIGHTS = weights
    given = set(map(str, list(opts)[::2]))
    if "MODEL.DEVICE" not in given:
        cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    # fp32 unless asked for: MoCo's detection protocol (detection/configs, detectron2's default) trains in fp32.
    notes.append(f"MODEL.DEVICE {cfg.MODEL.DEVICE}, SOLVER.AMP.ENABLED {cfg.SOLVER.AMP.ENABLED}"
                 + ("" if cfg.SOLVER.AMP.ENABLED else " (fp32 as the protocol; SOLVER.AMP.ENABLED True for AMP)"))
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.SEED = seed
    cfg.freeze()
    return cfg, notes


class _Trainer(DetectionTrainer):
    """The trial's trainer: evaluation runs once, after training, from run_trial (not from a hook)."""

    def build_hooks(self):
        return [h for h in super().build_hooks() if not isinstance(h, hooks.EvalHook)]


def _json_safe(results):
    """detectron2's results with NaN (nothing to score, e.g. COCO's APs without small objects) as None."""
    return {task: {k: None if math.isnan(v) else float(v) for k, v in metrics.items()}
            for task, metrics in results.items()}


def precision(cfg):
    """How a trial trains, recorded in its result.json: 'amp' (SOLVER.AMP.ENABLED) or 'fp32' (the protocol's)."""
    return "amp" if cfg.SOLVER.AMP.ENABLED else "fp32"


def check_precision(cfg):
    """AMP needs the GPU that detectron2's AMPTrainer asserts (engine/train_loop.py)."""
    if cfg.SOLVER.AMP.ENABLED and not cfg.MODEL.DEVICE.startswith("cuda"):
        raise ConfigError(f"SOLVER.AMP.ENABLED True needs a GPU, but the trial runs on MODEL.DEVICE "
                          f"{cfg.MODEL.DEVICE}: detectron2's AMPTrainer runs on CUDA only; remove it to train in fp32")


def read_result(path):
    """A trial's result.json: {"seed", "results": {task: {metric: number or None}}, ...}; ResultsError if damaged."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict) or not results or not all(
            isinstance(m, dict) and all(v is None or _is_number(v) and math.isfinite(v) for v in m.values())
            for m in results.values()):
        raise ResultsError(f"{path} is not a trial result (JSON with 'results': task -> metric -> number); delete it "
                           "to run that trial's evaluation again (with --resume)")
    return data


def run_trial(cfg, data_root, trust=False):
    """Train (resuming from the trial folder's last checkpoint if any) and evaluate; rank 0 gets the results.
    Every checkpoint file is read without running code from it unless `trust` (SafeCheckpointer)."""
    result_file = Path(cfg.OUTPUT_DIR) / "result.json"
    if result_file.is_file():
        logger.info(f"{result_file} exists: trial already done")
        return read_result(result_file)["results"]
    check_precision(cfg)
    Path(cfg.OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
    check_no_links(cfg.OUTPUT_DIR)  # detectron2 opens its files by name: a planted link would be written through
    register_detection_sets(tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.TEST), data_root)
    if comm.is_main_process():
        write_bytes_atomic(Path(cfg.OUTPUT_DIR) / "config.yaml", cfg.dump().encode())
    with rng_scope():  # the trial seeds the global generators; the caller gets its own state back
        seed_all_rng(cfg.SEED + comm.get_rank())
        trainer = _Trainer(cfg, trust=trust)
        logger.info(f"training loop: detectron2's {type(trainer._trainer).__name__}")  # AMPTrainer with AMP
        trainer.resume_or_load(resume=True)
        trainer.train()
        results = _json_safe(_Trainer.test(cfg, trainer.model))
    if comm.is_main_process():
        for task, metrics in results.items():
            missing = [k for k in ("AP", "AP50", "AP75") if metrics.get(k) is None]
            if missing:
                logger.warning(f"{task} {missing} are undefined: the test set has no instance to score")
        write_json_atomic(result_file, {"seed": cfg.SEED, "precision": precision(cfg), "device": cfg.MODEL.DEVICE,
                                        "results": results})
    return results


def run_identity(config_file, opts, weights, seed):
    """What a run is, compared on --resume: config chain and weights by content, overrides, first seed."""
    return {"config": str(config_file), "config_sha256": config_digest(config_file), "opts": [str(o) for o in opts],
            "weights": str(weights), "weights_sha256": "random" if weights == "random" else file_digest(weights),
            "seed": seed}


def check_run(config_file, weights, output_dir, trials=1, seed=0, opts=(), resume=False, trust=False,
              data_root=None, world_size=None, here=True):
    """Everything that can be checked before the output folder is touched: config, weights, datasets, the folder's
    state; returns the run's identity. Raises ConfigError, CheckpointError, DatasetError, ResultsError or
    OutputError. `here`: the trials run on this machine (not in cluster jobs), so its device is theirs."""
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ConfigError(f"--trials must be a positive integer, got {trials!r}")
    cfg, _ = build_config(config_file, opts, "", Path(output_dir) / "trial_0", seed,
                          world_size or comm.get_world_size(), trust)
    if here:
        check_precision(cfg)
    check_weights(weights, trust)
    check_detection_sets(tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.TEST), data_root)
    identity = run_identity(config_file, opts, weights, seed)
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"--output-dir {output_dir} is a file; choose a folder")
    if output_dir.is_dir():
        check_no_links(output_dir)  # detectron2 writes log.txt, metrics.json, checkpoints by name, through links
    started = output_dir.is_dir() and any(p.name != LOCK_NAME for p in output_dir.iterdir())
    if started and not resume:
        raise OutputError(f"{output_dir} is not empty; pass --resume to continue that run, or choose another "
                          "--output-dir")
    if started:
        recorded_file = output_dir / "run.json"
        if not recorded_file.is_file():
            raise OutputError(f"{output_dir} holds no run.json, so it is not a run of this tool; choose another "
                              "--output-dir")
        try:
            recorded = json.loads(recorded_file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise OutputError(f"{recorded_file} is not valid JSON; choose another --output-dir") from None
        changed = [k for k in ("config_sha256", "opts", "weights_sha256", "seed") if recorded.get(k) != identity[k]]
        if changed:
            what = ", ".join(f"{k} {recorded.get(k)!r} -> {identity[k]!r}" for k in changed)
            raise ConfigError(f"--resume: {output_dir} was started with other settings ({what}); resume with the "
                              "same config, overrides, weights and seed, or choose another --output-dir")
        for trial in range(trials):  # what a resumed trial would read: its result, or the checkpoint it names
            folder = output_dir / f"trial_{trial}"
            if (folder / "result.json").is_file():
                read_result(folder / "result.json")
            elif last_checkpoint(folder):  # read as the resume will read it: no code run, complete
                checkpoint = load_file(last_checkpoint(folder), trust)
                if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
                    raise CheckpointError(f"{last_checkpoint(folder)} holds no 'model' state; delete "
                                          f"{folder / 'last_checkpoint'} to restart this trial from the start")
                try:  # a NaN would train on and score AP 0 as if it were a result
                    check_finite(checkpoint["model"])
                except CheckpointError as error:
                    raise CheckpointError(f"{last_checkpoint(folder)}: {error}; delete {folder / 'last_checkpoint'} "
                                          "to restart this trial from the start") from None
    return identity


def _no_toolkit_traceback(record):
    """False for a log record carrying one of the toolkit's errors (detectron2's "Exception during training"):
    the tool reports it as one line."""
    return not (record.exc_info and isinstance(record.exc_info[1], ToolkitError))


def setup_logging(output_dir, quiet, name_suffix=""):
    """detectron2's and our log to OUTPUT/log{suffix}.txt (and the console unless quiet), for this run only."""
    setup_logger.cache_clear()  # a second run in this process logs to its own folder only
    for name in ("detectron2", "transfer"):
        for handler in list(logging.getLogger(name).handlers):
            logging.getLogger(name).removeHandler(handler)
            handler.close()
        log_file = output_dir / f"log{name_suffix}.txt"  # detectron2 opens it to append, following links
        check_replaceable(log_file if comm.get_rank() == 0 else Path(f"{log_file}.rank{comm.get_rank()}"))
        handlers = setup_logger(str(log_file), distributed_rank=comm.get_rank(), name=name,
                                configure_stdout=not quiet).handlers
        for handler in handlers:  # the log file keeps detectron2's traceback; the tool says one line
            if not isinstance(handler, logging.FileHandler):
                handler.addFilter(_no_toolkit_traceback)


def start_run(config_file, weights, output_dir, trials=1, seed=0, opts=(), data_root=None, resume=False,
              trust=False, here=True):
    """Check everything (main process) and record the run's identity in OUTPUT/run.json."""
    output_dir = Path(output_dir)
    if comm.is_main_process():  # the other processes of a launch would see the run.json written here
        identity = check_run(config_file, weights, output_dir, trials, seed, opts, resume, trust, data_root, here=here)
        if not (output_dir / "run.json").is_file():
            write_json_atomic(output_dir / "run.json", identity)
    comm.synchronize()


def run_one_trial(config_file, weights, output_dir, trial, seed=0, opts=(), data_root=None, trust=False):
    """Trial `trial` (seed + trial) of a started run, its folder locked while it runs; its results (rank 0)."""
    weights_path = "" if weights == "random" else str(weights)
    folder = Path(output_dir) / f"trial_{trial}"
    cfg, notes = build_config(config_file, opts, weights_path, folder, seed + trial, comm.get_world_size(), trust)
    for note in notes:
        logger.info(note)
    lock = OutputLock(folder).acquire() if comm.is_main_process() else None
    try:
        return run_trial(cfg, data_root, trust)
    finally:
        if lock:
            lock.release()


def summarize_run(config_file, weights, output_dir, trials, seed=0, opts=()):
    """OUTPUT/metrics.json from every trial's result.json, once all `trials` have one; its content (else None)."""
    output_dir = Path(output_dir)
    files = [output_dir / f"trial_{k}" / "result.json" for k in range(trials)]
    if not all(f.is_file() for f in files):
        return None
    read = [read_result(f) for f in files]
    per_trial = [{"trial": k, "seed": seed + k, "precision": r.get("precision", "fp32"), "results": r["results"]}
                 for k, r in enumerate(read)]
    mean, std = summarize_trials([t["results"] for t in per_trial])
    summary = {"config": str(config_file), "weights": weights, "opts": list(opts), "trials": per_trial,
               "mean": mean, "std": std}
    write_json_atomic(output_dir / "metrics.json", summary)
    return summary


def run_trials(config_file, weights, output_dir, trials=1, seed=0, opts=(), data_root=None, resume=False,
               quiet=False, trust=False):
    """Run `trials` fine-tunings with seeds seed..seed+trials-1; write OUTPUT/metrics.json; return its content.
    `quiet`: detectron2's log goes to OUTPUT/log.txt only, not to the console."""
    output_dir = Path(output_dir)
    start_run(config_file, weights, output_dir, trials, seed, opts, data_root, resume, trust)
    setup_logging(output_dir, quiet)
    for trial in range(trials):
        run_one_trial(config_file, weights, output_dir, trial, seed, opts, data_root, trust)
    return summarize_run(config_file, weights, output_dir, trials, seed, opts) if comm.is_main_process() else None
