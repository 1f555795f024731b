"""The linear-classification and transfer tables (SimSiam Tables 4 and 5) from models' results files.

    python tools/make_table.py output/pipeline/results/*.json
    python tools/make_table.py simsiam.json mocov2.json --format latex > tables.tex
    python tools/make_table.py output/pipeline/results/*.json --compare   # beside the published numbers

See evaluations/results.py for the results format. Each column says the protocol of its numbers; two results of
different protocols in one column are refused unless --mix-protocols. Best value per column in bold (none on a
tie), mean +- std over trials; a results file of the wrong shape fails with one line naming the file and the key.
--compare adds each measured cell with its published reference (configs/references/, matched by method, epochs and
protocol: evaluations/references.py), the difference, a mark where it exceeds twice the larger std, and one
reproduction summary line per model.
"""
import json

import evaluations  # noqa: F401  (registers every evaluation: their columns)
from evaluations.comparison import comparison_text
from evaluations.results import load_results
from evaluations.tables import make_tables
from sslt_core.cli import ToolParser, run


def main(argv=None):
    parser = ToolParser(description=__doc__)
    parser.add_argument("results", nargs="+", help="results JSON files, one or more per model")
    parser.add_argument("--format", choices=("md", "csv", "latex", "json"), default="md")
    parser.add_argument("--mix-protocols", action="store_true",
                        help="allow results of different protocols in one column (each column lists them)")
    parser.add_argument("--compare", action="store_true",
                        help="add the published numbers beside each measured cell (configs/references/)")
    args = parser.parse_args(argv)
    results = load_results(args.results)
    text = make_tables(results, args.format, mix_protocols=args.mix_protocols)
    if args.compare and args.format == "json":
        text = json.dumps({**json.loads(text), **json.loads(comparison_text(results, "json"))}, indent=2,
                          ensure_ascii=False) + "\n"
    elif args.compare:
        text += "\n" + comparison_text(results, args.format)
    print(text, end="")


if __name__ == "__main__":
    run(main)
