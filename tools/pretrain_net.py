"""Self-supervised pretraining of a ResNet encoder: SimCLR, MoCo v2, BYOL, SwAV or SimSiam.

    python tools/pretrain_net.py --config configs/pretrain/simsiam_r50.yaml --data /datasets/imagenet
    python tools/pretrain_net.py --config configs/pretrain/simsiam_demo.yaml --data data/demo model.stop_gradient=false
    torchrun --nproc_per_node 8 tools/pretrain_net.py --config configs/pretrain/mocov2_r50.yaml \\
        --data /datasets/imagenet
    python tools/pretrain_net.py --config configs/pretrain/swav_r50.yaml --data /datasets/imagenet \\
        --launcher slurm --nodes 8 --gpus-per-node 8 --partition learnfair --time 4320

Writes OUTPUT/encoder.safetensors (a torchvision state dict with metadata; tools/convert_to_d2.py and the eval
tools read it), checkpoints, metrics.jsonl, log.txt and TensorBoard scalars. --resume continues from the last
checkpoint. Values are overridden as section.key=value; a mistyped key or value fails before any work.

With --launcher slurm the run is submitted as one SLURM job (one task per GPU, the distributed environment set
from SLURM's); on preemption or time-out it requeues itself and resumes from its last checkpoint, losing at most
train.checkpoint_every steps. --launcher submitit-local runs the same job as processes on this machine.
"""
from pathlib import Path

from pretrain.config import load_config
from pretrain.job import PretrainJob
from pretrain.train import train
from sslt_core import cluster
from sslt_core.atomic import write_json_atomic
from sslt_core.cli import ToolParser, add_cluster_arguments, run
from sslt_core.datasets import dataset_path
from sslt_core.errors import ClusterError, OutputError
from sslt_core.lock import OutputLock


def submit(args, config):
    """Submit the run as one job; return the job."""
    output = Path(args.output_dir)
    if (output / "checkpoint.pth").exists() and not args.resume:
        raise OutputError(f"{output / 'checkpoint.pth'} exists: pass --resume to continue it, or choose another "
                          "--output-dir")
    with OutputLock(output):  # fails now, not in the job, if a run holds the folder
        pass
    record_file = output / "job.json"  # the job last submitted for this folder: never two at once
    record = cluster.read_job_records(record_file, single=True)
    if record and cluster.job_state(record["launcher"], record["folder"], record["job_id"]) in ("running", "unknown"):
        raise ClusterError(f"job {record['job_id']} is still queued or running for {output}; wait for it, or "
                           f"cancel it (scancel {record['job_id']}) before submitting again")
    resources = cluster.Resources(nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                                  cpus_per_task=args.cpus_per_task, time=args.time, partition=args.partition,
                                  account=args.account)
    executor = cluster.executor(args.launcher, args.slurm_dir or output / "slurm", resources,
                                name=f"pretrain-{config.method}")
    job = cluster.submit(executor, PretrainJob(config, output))
    write_json_atomic(record_file, {"launcher": args.launcher, "folder": str(executor.folder), "job_id": job.job_id})
    print(f"submitted job {job.job_id}: {resources.nodes} node(s) x {resources.tasks_per_node} process(es); "
          f"log {job.paths.stdout}")
    return job


def main(argv=None):
    parser = ToolParser(description=__doc__)
    parser.add_argument("--config", help="a YAML under configs/pretrain/")
    parser.add_argument("--data", help="ImageFolder root with train/ (val/ for the kNN monitor), or a datasets root")
    parser.add_argument("--output-dir", default="output/pretrain", help="where checkpoints and logs go (locked "
                                                                        "while the run lives)")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pth")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.epochs=2 model.predictor=none")
    add_cluster_arguments(parser)
    args = parser.parse_intermixed_args(argv)  # overrides before or after the options
    config = load_config(args.config, args.overrides, data=args.data)
    if args.launcher == "local":
        summary = train(config, args.output_dir, resume=args.resume)
        print({k: v for k, v in summary.items() if v is not None})
        return 0
    cluster.check_launcher(args.launcher)
    dataset_path("imagenet", config.train.data or None)  # a wrong data root fails here, not in the job
    job = submit(args, config)
    if args.wait:
        cluster.wait(job)
        print(f"job {job.job_id} done: {Path(args.output_dir) / 'encoder.safetensors'}")
    return 0


if __name__ == "__main__":
    run(main)
