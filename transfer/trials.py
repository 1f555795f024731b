"""The trials of a detection run (transfer/detection_run.py): fine-tune and evaluate a detector K times (seeds
seed..seed+K-1) and summarise them in OUTPUT/metrics.json: what tools/train_det.py runs."""
import logging
import math
from pathlib import Path

from detectron2.engine import hooks
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from sslt_core.atomic import check_no_links, check_replaceable, write_bytes_atomic, write_json_atomic
from sslt_core.errors import ToolkitError
from sslt_core.lock import OutputLock
from sslt_core.rng import rng_scope
from transfer.detection import DetectionTrainer, register_detection_sets, summarize_trials
from transfer.detection_recipe import check_precision, precision
from transfer.detection_run import read_result, start_run

logger = logging.getLogger("transfer")


class _Trainer(DetectionTrainer):
    """The trial's trainer: evaluation runs once, after training, from run_trial (not from a hook)."""

    def build_hooks(self):
        return [h for h in super().build_hooks() if not isinstance(h, hooks.EvalHook)]


def _json_safe(results):
    """detectron2's results with NaN (nothing to score, e.g. COCO's APs without small objects) as None."""
    return {task: {k: None if math.isnan(v) else float(v) for k, v in metrics.items()}
            for task, metrics in results.items()}


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
    register_detection_sets(tuple(cfg.DATASETS.TRAIN) + tuple(cfg.DATASETS.TEST), data_root)  # once a process
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
        log_file = Path(output_dir) / f"log{name_suffix}.txt"  # detectron2 opens it to append, following links
        check_replaceable(log_file if comm.get_rank() == 0 else Path(f"{log_file}.rank{comm.get_rank()}"))
        handlers = setup_logger(str(log_file), distributed_rank=comm.get_rank(), name=name,
                                configure_stdout=not quiet).handlers
        for handler in handlers:  # the log file keeps detectron2's traceback; the tool says one line
            if not isinstance(handler, logging.FileHandler):
                handler.addFilter(_no_toolkit_traceback)


def run_one_trial(run, trial):
    """Trial `trial` (seed + trial) of a started run, its folder locked while it runs; its results (rank 0)."""
    weights = "" if run.weights == "random" else run.weights
    cfg, notes = run.recipe.trial_config(weights, run.folder(trial), run.seed + trial, comm.get_world_size())
    for note in notes:
        logger.info(note)
    lock = OutputLock(run.folder(trial)).acquire() if comm.is_main_process() else None
    try:
        return run_trial(cfg, run.data_root, run.trust)
    finally:
        if lock:
            lock.release()


def summarize_run(run):
    """OUTPUT/metrics.json from every trial's result.json, once all trials have one; its content (else None)."""
    files = [run.folder(k) / "result.json" for k in range(run.trials)]
    if not all(f.is_file() for f in files):
        return None
    read = [read_result(f) for f in files]
    per_trial = [{"trial": k, "seed": run.seed + k, "precision": r.get("precision", "fp32"), "results": r["results"]}
                 for k, r in enumerate(read)]
    mean, std = summarize_trials([t["results"] for t in per_trial])
    summary = {"config": run.recipe.config_file, "weights": run.weights, "opts": list(run.recipe.opts),
               "trials": per_trial, "mean": mean, "std": std}
    write_json_atomic(Path(run.output_dir) / "metrics.json", summary)
    return summary


def run_trials(run, identity=None):
    """Run every trial of `run` in this process (and those of its launch); write OUTPUT/metrics.json; return its
    content on the main process (else None). `identity`: the run was checked by the caller (start_run)."""
    start_run(run, identity=identity)
    setup_logging(run.output_dir, run.quiet)
    for trial in range(run.trials):
        run_one_trial(run, trial)
    return summarize_run(run) if comm.is_main_process() else None
