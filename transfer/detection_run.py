"""One detection run: K trials of a recipe from some weights into an output folder, and what is checked before that
folder is touched.

    OUTPUT/run.json         what the run is: the config chain's sha256, opts, the weights' sha256, the first seed
    OUTPUT/log.txt          the log of all trials
    OUTPUT/trial_<k>/       detectron2's own output: metrics.json (per iteration), TensorBoard events,
                            checkpoints, config.yaml, result.json (that trial's evaluation, written last)
    OUTPUT/metrics.json     every trial's results, their mean and std

A run is resumed (resume) only with the config, overrides, weights and seed it started with.
"""
import json
import math
from dataclasses import dataclass
from pathlib import Path

from detectron2.utils import comm

from sslt_core.atomic import check_no_links, write_json_atomic
from sslt_core.checkpoints import check_finite
from sslt_core.errors import CheckpointError, ConfigError, OutputError, ResultsError
from sslt_core.fingerprint import file_digest
from sslt_core.lock import LOCK_NAME
from sslt_core.safe_load import load_file
from transfer.detection import check_detection_sets, last_checkpoint
from transfer.detection_recipe import DetectionRecipe, check_precision
from transfer.detection_weights import check_weights


@dataclass(frozen=True)
class DetectionRun:
    """One run of `trials` fine-tunings (seeds seed..seed+trials-1); picklable (it is sent to submitit jobs and to
    the processes of detectron2's launch)."""

    recipe: DetectionRecipe
    weights: str  # 'random' or a converted .pkl
    output_dir: str
    trials: int = 1
    seed: int = 0
    data_root: str | None = None
    resume: bool = False
    trust: bool = False  # the weights, checkpoints (and proposal files) may be fully unpickled
    quiet: bool = False  # detectron2's log goes to OUTPUT/log.txt only, not to the console
    gpus_per_node: int = 0  # of each trial's cluster job (--launcher)

    def __post_init__(self):
        object.__setattr__(self, "weights", str(self.weights))
        object.__setattr__(self, "output_dir", str(self.output_dir))
        if self.data_root is not None:
            object.__setattr__(self, "data_root", str(self.data_root))

    def folder(self, trial):
        return Path(self.output_dir) / f"trial_{trial}"

    def identity(self):
        """What the run is, compared on resume: config chain and weights by content, overrides, first seed."""
        return {"config": self.recipe.config_file, "config_sha256": self.recipe.digest(),
                "opts": list(self.recipe.opts), "weights": self.weights,
                "weights_sha256": "random" if self.weights == "random" else file_digest(self.weights),
                "seed": self.seed}


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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


def check_folder(run, identity, trials=True):
    """The output folder's state: empty, or (resume) a run of the same identity whose trials' results and
    checkpoints (`trials`) read as the resume will read them."""
    output_dir = Path(run.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"--output-dir {output_dir} is a file; choose a folder")
    if output_dir.is_dir():
        check_no_links(output_dir)  # detectron2 writes log.txt, metrics.json, checkpoints by name, through links
    started = output_dir.is_dir() and any(p.name != LOCK_NAME for p in output_dir.iterdir())
    if started and not run.resume:
        raise OutputError(f"{output_dir} is not empty; pass --resume to continue that run, or choose another "
                          "--output-dir")
    if not started:
        return
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
    for trial in range(run.trials if trials else 0):  # what a resumed trial would read: its result, or checkpoint
        folder = run.folder(trial)
        if (folder / "result.json").is_file():
            read_result(folder / "result.json")
        elif last_checkpoint(folder):  # read as the resume will read it: no code run, complete
            checkpoint = load_file(last_checkpoint(folder), run.trust)
            if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
                raise CheckpointError(f"{last_checkpoint(folder)} holds no 'model' state; delete "
                                      f"{folder / 'last_checkpoint'} to restart this trial from the start")
            try:  # a NaN would train on and score AP 0 as if it were a result
                check_finite(checkpoint["model"])
            except CheckpointError as error:
                raise CheckpointError(f"{last_checkpoint(folder)}: {error}; delete {folder / 'last_checkpoint'} "
                                      "to restart this trial from the start") from None


def check_run(run, world_size, here=True):
    """Everything that can be checked before the output folder is touched: the trial config over `world_size`
    processes, weights, datasets, the folder's state; returns the run's identity. Raises ConfigError,
    CheckpointError, DatasetError, ResultsError or OutputError. `here`: the trials run on this machine (not in
    cluster jobs), so its device is theirs."""
    if isinstance(run.trials, bool) or not isinstance(run.trials, int) or run.trials < 1:
        raise ConfigError(f"--trials must be a positive integer, got {run.trials!r}")
    cfg, _ = run.recipe.trial_config("", run.folder(0), run.seed, world_size)
    if here:
        check_precision(cfg)
    check_weights(run.weights, run.trust)
    check_detection_sets(run.recipe.datasets, run.data_root)
    identity = run.identity()
    check_folder(run, identity)
    return identity


def start_run(run, here=True, identity=None):
    """Check everything (main process) and record the run's identity in OUTPUT/run.json. `identity`: what
    check_run returned to the caller just before (the entry point checked the run): only the folder's state is
    looked at again, as it may have changed until the caller held the folder's lock."""
    if comm.is_main_process():  # the other processes of a launch would see the run.json written here
        if identity is None:
            identity = check_run(run, comm.get_world_size(), here)
        else:
            check_folder(run, identity, trials=False)
        if not (Path(run.output_dir) / "run.json").is_file():
            write_json_atomic(Path(run.output_dir) / "run.json", identity)
    comm.synchronize()
