"""Generate the demo datasets (ImageFolder, VOC2007/2012, COCO 2017 layouts) from a seed.

    python tools/make_demo_data.py --out data/demo                # the demo pipeline's data
    python tools/make_demo_data.py --out /tmp/tiny --size small   # seconds, for tests

A second run with the same settings reuses the folder; an interrupted run leaves nothing at --out; two runs on
one --out cannot interleave (the second stops with the first's PID).
"""
import json

from sslt_core.cli import ToolParser, non_negative_int, run
from sslt_demo.writer import SIZES, make_demo_data


def main(argv=None):
    parser = ToolParser(description=__doc__)
    parser.add_argument("--out", required=True, help="folder to create; it becomes a datasets root (--data-root)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="same seed, same bytes")
    parser.add_argument("--size", choices=sorted(SIZES), default="default",
                        help="small: seconds, for tests; default: sized for the demo pipeline")
    parser.add_argument("--force", action="store_true", help="replace --out if it holds other data")
    args = parser.parse_args(argv)
    manifest = make_demo_data(args.out, seed=args.seed, size_name=args.size, force=args.force)
    print(f"demo data in {args.out}: {json.dumps(manifest['counts'])}")


if __name__ == "__main__":
    run(main)
