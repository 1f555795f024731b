"""Fine-tune and evaluate a detector K times (different seeds) and summarise: what tools/train_det.py runs.

    OUTPUT/log.txt          the log of all trials
    OUTPUT/trial_<k>/       detectron2's own output: metrics.json (per iteration), TensorBoard events,
                            checkpoints, config.yaml, result.json (that trial's evaluation, written last)
    OUTPUT/metrics.json     every trial's results, their mean and std
"""
import difflib
import json
import logging
import math
from pathlib import Path

import torch
from detectron2.config import get_cfg
from detectron2.engine import hooks
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from sslt_core.atomic import write_json_atomic
from sslt_core.checkpoints import is_detectron2_checkpoint, load_file
from sslt_core.errors import CheckpointError
from transfer.convert import detectron2_resnet50_names
from transfer.detection import DetectionTrainer, register_detection_sets, summarize_trials

logger = logging.getLogger("transfer")


class FinetuneError(ValueError):
    """Bad input to a detection run; the message names the problem and the fix."""


def check_weights(weights):
    """'' for random init, else the path of a detectron2 .pkl that covers the whole ResNet-50 backbone."""
    if weights == "random":
        return ""
    path = Path(weights)
    if path.suffix != ".pkl":
        raise FinetuneError(f"--weights {weights}: detectron2 needs a converted .pkl; run "
                            f"python tools/convert_to_d2.py {weights}")
    try:
        checkpoint = load_file(path)
    except CheckpointError as error:
        raise FinetuneError(f"--weights: {error}") from None
    if not is_detectron2_checkpoint(checkpoint):
        raise FinetuneError(f"--weights {weights} is not a detectron2 checkpoint (no 'model'/'__author__'); "
                            f"convert it with python tools/convert_to_d2.py")
    expected = detectron2_resnet50_names()
    missing = expected - set(checkpoint["model"])
    if missing:
        raise FinetuneError(f"--weights {weights} covers {len(expected) - len(missing)} of detectron2's "
                            f"{len(expected)} R50 tensors (missing e.g. {sorted(missing)[:2]}); re-convert it "
                            "with python tools/convert_to_d2.py")
    return str(path)


def _flat_keys(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _flat_keys(value, f"{prefix}{key}.")
        else:
            yield prefix + key


def build_config(config_file, opts, weights, output_dir, seed, world_size):
    """The detectron2 config of one trial. Returns (cfg, notes): what was adjusted, to be said."""
    cfg, notes = get_cfg(), []
    try:
        cfg.merge_from_file(str(config_file))
        batch, lr = cfg.SOLVER.IMS_PER_BATCH, cfg.SOLVER.BASE_LR
        cfg.merge_from_list(list(opts))
    except (KeyError, AssertionError, ValueError) as error:
        message = str(error).strip("'\"")
        close = difflib.get_close_matches(message.rsplit(" ", 1)[-1], _flat_keys(get_cfg()), n=1)
        hint = f"did you mean {close[0]}?" if close else "see detectron2's config reference for valid keys"
        raise FinetuneError(f"config {config_file} {' '.join(opts)}: {message}; {hint}") from None
    except FileNotFoundError as error:
        raise FinetuneError(f"config file not found: {error.filename}") from None
    if batch != cfg.SOLVER.IMS_PER_BATCH and "SOLVER.BASE_LR" not in list(opts)[::2]:
        # Linear scaling rule (Goyal et al. 2017), as the MoCo / SimSiam recipes state their lr at batch 16.
        cfg.SOLVER.BASE_LR = lr * cfg.SOLVER.IMS_PER_BATCH / batch
        notes.append(f"SOLVER.IMS_PER_BATCH {batch} -> {cfg.SOLVER.IMS_PER_BATCH}: SOLVER.BASE_LR scaled linearly "
                     f"{lr:g} -> {cfg.SOLVER.BASE_LR:g} (iterations unchanged)")
    if world_size == 1:
        for key in ("RESNETS", "FPN"):
            node = getattr(cfg.MODEL, key)
            if node.NORM == "SyncBN":  # synchronised BN over one process is plain BN (MoCo's naiveSyncBN)
                node.NORM = "BN"
                notes.append(f"MODEL.{key}.NORM SyncBN -> BN: one process")
    cfg.MODEL.WEIGHTS = weights
    cfg.MODEL.DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
    cfg.SOLVER.AMP.ENABLED = torch.cuda.is_available()
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


def run_trial(cfg, data_root):
    """Train (resuming from the trial folder's last checkpoint if any) and evaluate; rank 0 gets the results."""
    result_file = Path(cfg.OUTPUT_DIR) / "result.json"
    if result_file.is_file():
        logger.info(f"{result_file} exists: trial already done")
        return json.loads(result_file.read_text())["results"]
    Path(cfg.OUTPUT_DIR).mkdir(parents=True, exist_ok=True)
    register_detection_sets(tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.TEST), data_root)
    seed_all_rng(cfg.SEED + comm.get_rank())
    if comm.is_main_process():
        (Path(cfg.OUTPUT_DIR) / "config.yaml").write_text(cfg.dump())
    trainer = _Trainer(cfg)
    trainer.resume_or_load(resume=True)
    trainer.train()
    results = _json_safe(_Trainer.test(cfg, trainer.model))
    if comm.is_main_process():
        for task, metrics in results.items():
            missing = [k for k in ("AP", "AP50", "AP75") if metrics.get(k) is None]
            if missing:
                logger.warning(f"{task} {missing} are undefined: the test set has no instance to score")
        write_json_atomic(result_file, {"seed": cfg.SEED, "results": results})
    return results


def run_trials(config_file, weights, output_dir, trials=1, seed=0, opts=(), data_root=None, resume=False,
               quiet=False):
    """Run `trials` fine-tunings with seeds seed..seed+trials-1; write OUTPUT/metrics.json; return its content.
    `quiet`: detectron2's log goes to OUTPUT/log.txt only, not to the console."""
    output_dir = Path(output_dir)
    if output_dir.is_dir() and any(output_dir.iterdir()) and not resume:
        raise FinetuneError(f"{output_dir} is not empty; pass --resume to continue that run, or choose "
                            "another --output-dir")
    weights_path = check_weights(weights)
    setup_logger.cache_clear()  # a second run in this process logs to its own folder only
    for name in ("detectron2", "transfer"):
        for handler in list(logging.getLogger(name).handlers):
            logging.getLogger(name).removeHandler(handler)
            handler.close()
        setup_logger(str(output_dir), distributed_rank=comm.get_rank(), name=name, configure_stdout=not quiet)
    per_trial = []
    for trial in range(trials):
        cfg, notes = build_config(config_file, opts, weights_path, output_dir / f"trial_{trial}", seed + trial,
                                  comm.get_world_size())
        for note in notes:
            logger.info(note)
        per_trial.append({"trial": trial, "seed": seed + trial, "results": run_trial(cfg, data_root)})
    summary = None
    if comm.is_main_process():
        mean, std = summarize_trials([t["results"] for t in per_trial])
        summary = {"config": str(config_file), "weights": weights, "opts": list(opts), "trials": per_trial,
                   "mean": mean, "std": std}
        write_json_atomic(output_dir / "metrics.json", summary)
    return summary
