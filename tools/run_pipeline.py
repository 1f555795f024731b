"""The whole run in one resumable command: pretrain every method, convert, kNN, linear probe, VOC-format
detection, COCO-format instance segmentation, the tables and a report.

    python tools/run_pipeline.py --config configs/pipeline/demo.yaml                 # the generated demo data
    python tools/run_pipeline.py --config configs/pipeline/imagenet_r50.yaml --output-dir out/r50

A second run skips what is done; an interrupted stage resumes; a changed config re-runs only the stages that
depend on the change. A failed stage marks its row as failed in the tables and the run goes on; the exit status
is 1 when anything failed.
"""
import argparse
import sys

from sslt_core.errors import ConfigError, DatasetError
from sslt_pipeline.pipeline import run_pipeline


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/pipeline/demo.yaml", help="a pipeline YAML")
    parser.add_argument("--output-dir", default="output/pipeline", help="where every stage and the report go")
    args = parser.parse_args()
    try:
        status = run_pipeline(args.config, args.output_dir)
    except (DatasetError, ConfigError) as error:
        sys.exit(f"error: {error}")
    print(f"report: {args.output_dir}/report.md")
    sys.exit(status)


if __name__ == "__main__":
    main()
