"""The former positional API of detection runs, for sslt_pipeline/pipeline.py until it builds a DetectionRecipe
(transfer/detection_recipe.py) and a DetectionRun (transfer/detection_run.py) itself; delete then."""
from pathlib import Path

from transfer.detection_recipe import load_recipe, read_chain
from transfer.detection_run import DetectionRun
from transfer.trials import run_trials as _run_trials


def config_chain(config_file):
    """The config file and every file of its _BASE_ chain (paths), the file itself first."""
    return [Path(path) for path, _ in read_chain(config_file)]


def build_config(config_file, opts, weights, output_dir, seed, world_size, trust=False):
    """(cfg, notes) of one trial."""
    return load_recipe(config_file, opts, trust).trial_config(weights, output_dir, seed, world_size)


def run_trials(config_file, weights, output_dir, trials=1, seed=0, opts=(), data_root=None, resume=False,
               quiet=False, trust=False):
    """transfer/trials.py's run_trials of that run."""
    return _run_trials(DetectionRun(load_recipe(config_file, opts, trust), weights, output_dir, trials=trials,
                                    seed=seed, data_root=data_root, resume=resume, trust=trust, quiet=quiet))
