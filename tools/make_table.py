"""The linear-classification and transfer tables (SimSiam Tables 4 and 5) from models' results files.

    python tools/make_table.py output/pipeline/results/*.json
    python tools/make_table.py simsiam.json mocov2.json --format latex > tables.tex

See eval/results.py for the results format. Best value per column in bold (none on a tie), mean +- std over
trials; a results file of the wrong shape fails with one line naming the file and the key.
"""
from eval.results import load_results
from eval.tables import make_tables
from sslt_core.cli import ToolParser, run


def main(argv=None):
    parser = ToolParser(description=__doc__)
    parser.add_argument("results", nargs="+", help="results JSON files, one or more per model")
    parser.add_argument("--format", choices=("md", "csv", "latex", "json"), default="md")
    args = parser.parse_args(argv)
    print(make_tables(load_results(args.results), args.format), end="")


if __name__ == "__main__":
    run(main)
