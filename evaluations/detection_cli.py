"""Fine-tune a detector from converted weights and evaluate it (MoCo / SimSiam protocol, detectron2): the
arguments and flow of tools/evaluate.py TASK and tools/train_det.py.

    python tools/evaluate.py voc07 --weights simsiam.pkl --output-dir out/voc07 --trials 5
    python tools/train_det.py --config configs/voc07.yaml --weights simsiam.pkl --output-dir out/voc07 --trials 5
    python tools/train_det.py --config configs/demo/voc07.yaml --data-root data/demo --weights random
    python tools/train_det.py --config configs/voc07.yaml --weights w.pkl --num-gpus 8 SOLVER.IMS_PER_BATCH 16
    python tools/train_det.py --config configs/voc07.yaml --weights w.pkl --trials 5 --launcher slurm --wait

Writes OUTPUT/metrics.json (each trial's VOC AP/AP50/AP75 or COCO bbox/segm AP, their mean and std) and
OUTPUT/record.json (the evaluation record: protocol, trials with their seeds, provenance), and keeps detectron2's
logs, TensorBoard events and checkpoints per trial; --resume continues an interrupted run (with the config,
overrides, weights and seed it started with). The config, the weights (read without running code from them) and
the datasets are checked before anything is written; OUTPUT is locked while the run lives. train_det.py names
the task from the config's datasets (VOC07 test after VOC07 / VOC07+12 trainval, COCO with or without masks).

With --launcher slurm each trial is its own job (the trials run in parallel), with detectron2's launch over the
job's --gpus-per-node and --nodes; the last trial to end writes OUTPUT/metrics.json (and, with --wait, the
record). A trial that fails is reported with its log (with --wait) and is run again, alone, by the same command
with --resume.
"""
import json
import time
from pathlib import Path

from evaluations.detection import CheckedDetection, DetectionSettings, check_task, record_from_summary, task_of
from evaluations.registry import Weights
from evaluations.running import with_provenance
from sslt_core import cluster
from sslt_core.atomic import write_json_atomic
from sslt_core.cli import ToolParser, add_cluster_arguments, non_negative_int, positive_int
from sslt_core.errors import ClusterError, ConfigError
from sslt_core.lock import OutputLock
from sslt_core.safe_load import TRUST_FLAG

RECORD_FILE = "record.json"


def add_arguments(parser, default_config=None):
    parser.add_argument("--config", required=default_config is None, default=default_config,
                        help="a detectron2 YAML, e.g. configs/voc07.yaml" + (
                            f" (default: {default_config})" if default_config else ""))
    parser.add_argument("--weights", required=True, help="a .pkl from tools/convert_to_d2.py, or 'random'")
    parser.add_argument("--output-dir", default="output/detection", help="where trials and metrics.json go")
    parser.add_argument("--data-root", help="datasets root (default: $DETECTRON2_DATASETS, else ./datasets)")
    parser.add_argument("--trials", type=positive_int, default=1,
                        help="fine-tunings with seeds SEED..SEED+K-1 (paper: 5)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the first trial")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    parser.add_argument("--num-gpus", type=positive_int, default=1,
                        help="processes per machine (GPUs; CPU processes without one)")
    parser.add_argument("--num-machines", type=positive_int, default=1)
    parser.add_argument("--machine-rank", type=non_negative_int, default=0)
    parser.add_argument("--dist-url", default="auto", help="e.g. tcp://host:port for several machines")
    parser.add_argument(TRUST_FLAG, action="store_true", help="the weights (and MODEL.LOAD_PROPOSALS' proposal files) "
                        "are trusted: allow a full unpickle")
    parser.add_argument("opts", nargs="*", help="KEY VALUE pairs overriding the config")
    add_cluster_arguments(parser)


def _write_record(task, checked, run, summary, seconds):
    record = record_from_summary(task, checked, summary)
    record = with_provenance(record, Weights(run.weights, trust=run.trust), checked, seconds)
    write_json_atomic(Path(run.output_dir) / RECORD_FILE, record.to_dict())
    return record


def _worker(run, identity, task, checked, start):
    from transfer.trials import run_trials

    summary = run_trials(run, identity)
    if summary is not None:  # the main process
        _write_record(task, checked, run, summary, time.time() - start)
        print(json.dumps({"mean": summary["mean"], "std": summary["std"]}, indent=2))


def _submit(args, run, identity, task, checked, start):
    """Each unfinished trial as its own job; with --wait, one line per failed trial and its log."""
    from transfer.detection_run import start_run
    from transfer.job import submit_trials

    output = Path(run.output_dir)
    with OutputLock(output):  # no local run holds the folder; the trial jobs lock their own trial folders
        start_run(run, here=False, identity=identity)
    resources = cluster.Resources(nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                                  cpus_per_task=args.cpus_per_task, time=args.time, partition=args.partition,
                                  account=args.account)
    outcome = submit_trials(run, args.launcher, resources, args.slurm_dir or output / "slurm")
    jobs = {trial: job for trial, job in outcome.items() if not isinstance(job, str)}
    for trial, job in outcome.items():
        print(f"trial {trial}: " + (job if isinstance(job, str) else f"submitted job {job.job_id}, log "
                                                                     f"{job.paths.stderr}"))
    if not args.wait:
        return 0
    failed = []
    for trial, job in jobs.items():
        try:
            cluster.wait(job)
        except ClusterError as error:
            failed.append(f"trial {trial}: {error}")
    if failed:
        raise ClusterError(f"{len(failed)} of {args.trials} trials failed ({'; '.join(failed)}); re-run them with "
                           "the same command and --resume")
    metrics = output / "metrics.json"
    if not metrics.is_file():
        raise ClusterError(f"no {metrics} yet: trials of an earlier submission still run; see {output / 'jobs.json'}")
    summary = json.loads(metrics.read_text())
    _write_record(task, checked, run, summary, time.time() - start)
    print(json.dumps({"mean": summary["mean"], "std": summary["std"]}, indent=2))
    return 0


def main_of(task=None):
    """The tool flow of detection task `task` (None: the task the config's datasets name)."""

    def main(args):
        """The config is read and checked once, here, into a recipe; the run (recipe, weights, folder, trials,
        ...) is checked once and passed down."""
        from transfer.detection_recipe import load_recipe
        from transfer.detection_run import DetectionRun, check_run

        start = time.time()
        if args.machine_rank >= args.num_machines:
            raise ConfigError(f"--machine-rank {args.machine_rank} must be below --num-machines {args.num_machines}")
        if args.launcher != "local":
            cluster.check_launcher(args.launcher)
        recipe = load_recipe(args.config, args.opts, trust=args.trust_checkpoint)
        name = task or task_of(recipe)
        check_task(name, recipe)
        checked = CheckedDetection(DetectionSettings(config=str(args.config), trials=args.trials, seed=args.seed,
                                                     opts=tuple(args.opts)), recipe)
        run = DetectionRun(recipe, args.weights, args.output_dir, trials=args.trials, seed=args.seed,
                           data_root=args.data_root, resume=args.resume, trust=args.trust_checkpoint,
                           gpus_per_node=args.gpus_per_node)
        if args.launcher != "local":
            identity = check_run(run, world_size=max(1, args.gpus_per_node) * args.nodes, here=False)
            return _submit(args, run, identity, name, checked, start)
        identity = check_run(run, world_size=args.num_gpus * args.num_machines)
        from detectron2.engine import launch  # after transfer/, which quiets detectron2's import-time warnings

        launched = dict(num_machines=args.num_machines, machine_rank=args.machine_rank, dist_url=args.dist_url,
                        args=(run, identity, name, checked, start))
        if args.machine_rank:  # the first machine holds the lock of the shared output folder
            return launch(_worker, args.num_gpus, **launched)
        with OutputLock(run.output_dir):
            launch(_worker, args.num_gpus, **launched)
        return 0

    return main


def main(argv=None):
    """tools/train_det.py: --config required, the task named by its datasets."""
    parser = ToolParser(prog="train_det.py", description=__doc__)
    add_arguments(parser)
    return main_of()(parser.parse_args(argv))
