"""tools/evaluate.py: any registered evaluation of one checkpoint, its record (with provenance) as JSON.

    python tools/evaluate.py knn --weights simsiam.pth --data /datasets/imagenet --output knn.json
    python tools/evaluate.py linear --weights mocov2.pth --data /datasets/imagenet --cached
    python tools/evaluate.py voc07 --weights simsiam.pkl --output-dir out/voc07 --trials 5

Each evaluation brings its own arguments (`tools/evaluate.py NAME --help`); tools/eval_knn.py, eval_linear.py,
eval_label_free.py and train_det.py are this tool with NAME given.
"""
import dataclasses
import sys

from evaluations.registry import EVALUATIONS, get
from evaluations.running import run_evaluation
from sslt_core.atomic import write_json_atomic
from sslt_core.cli import ToolParser, writable_file
from sslt_core.config import build
from sslt_core.errors import ConfigError


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        names = "\n".join(f"  {name:<14} {(e.description or '').strip().splitlines()[0]}"
                          for name, e in EVALUATIONS.items())
        print(f"{__doc__}\nevaluations:\n{names}")
        if not argv:
            raise ConfigError("name an evaluation: tools/evaluate.py NAME ...; choose one of "
                              f"{', '.join(EVALUATIONS)}")
        return 0
    if argv[0].startswith("-"):
        raise ConfigError(f"name the evaluation first: tools/evaluate.py NAME {' '.join(argv[:2])} ...; choose one of "
                          f"{', '.join(EVALUATIONS)}")
    evaluation = get(argv[0], "tools/evaluate.py: the evaluation")
    parser = ToolParser(prog=f"evaluate.py {evaluation.name}", description=evaluation.description)
    evaluation.cli(parser)
    args = parser.parse_args(argv[1:])
    if evaluation.main is not None:  # a flow of its own (detection: several processes, cluster jobs)
        return evaluation.main(args)
    output = writable_file(args.output) if getattr(args, "output", None) else None
    weights, data_root, output_dir, settings, context = evaluation.from_args(args)
    settings = build(evaluation.settings, dataclasses.asdict(settings), evaluation.name)  # every Range, as a config's
    checked = evaluation.prepare(settings)
    record = run_evaluation(evaluation, weights, data_root, output_dir, checked, context)
    print(evaluation.summary(record))
    if output:
        write_json_atomic(output, record.to_dict())
    return 0
