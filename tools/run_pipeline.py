"""The whole run in one resumable command: pretrain every method, convert, every evaluation the config lists
under `evaluations:` (the registered ones: python tools/evaluate.py --help), the tables and a report.

    python tools/run_pipeline.py --config configs/pipeline/demo.yaml                 # the generated demo data
    python tools/run_pipeline.py --config configs/pipeline/imagenet_r50.yaml --output-dir out/r50

A second run skips what is done; an interrupted stage resumes; a changed config re-runs only the stages that
depend on the change. A failed stage marks its row as failed in the tables and the run goes on; the exit status
is 1 when anything failed. Every config (the pipeline's, each pretraining and detection config) is checked
before any work; OUTPUT is locked while the run lives.

    python tools/run_pipeline.py --config configs/pipeline/imagenet_r50.yaml --output-dir out/r50 \\
        --launcher slurm --max-parallel 20

--launcher slurm submits every stage as a job as soon as the stages it reads are done (the five pretrainings at
once; then each model's conversion and evaluations), with the resources of the config's `resources:` per stage
kind (pretrain, convert, or an evaluation's kind), at most --max-parallel jobs at a time. The manifest records
every job as it is submitted and as it ends: if this process is killed, the same command picks up the jobs that
run or have finished instead of submitting them again. --launcher submitit-local runs the same jobs as processes here.
"""
from sslt_core.cli import ToolParser, positive_float, positive_int, run
from sslt_pipeline.pipeline import run_pipeline


def main(argv=None):
    parser = ToolParser(description=__doc__)
    parser.add_argument("--config", default="configs/pipeline/demo.yaml", help="a pipeline YAML")
    parser.add_argument("--output-dir", default="output/pipeline", help="where every stage and the report go")
    parser.add_argument("--launcher", choices=("local", "submitit-local", "slurm"), default="local",
                        help="local: every stage in this process, one after another; slurm: every stage as a job")
    parser.add_argument("--max-parallel", type=positive_int, default=8, help="jobs at a time (job launchers)")
    parser.add_argument("--poll-seconds", type=positive_float, default=None,
                        help="seconds between two looks at the jobs' states (default: 60 on slurm, one sacct call "
                             "per job; 2 for submitit-local)")
    args = parser.parse_args(argv)
    status = run_pipeline(args.config, args.output_dir, launcher=args.launcher, max_parallel=args.max_parallel,
                          poll_seconds=args.poll_seconds)
    print(f"report: {args.output_dir}/report.md")
    return status


if __name__ == "__main__":
    run(main)
