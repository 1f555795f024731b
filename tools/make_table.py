"""The linear-classification and transfer tables (SimSiam Tables 4 and 5) from models' results files.

    python tools/make_table.py output/pipeline/results/*.json
    python tools/make_table.py simsiam.json mocov2.json --format latex > tables.tex

See eval/tables.py for the results format. Best value per column in bold, mean +- std over trials.
"""
import argparse
import sys

from eval.tables import load_results, make_tables
from sslt_core.errors import DatasetError


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+", help="results JSON files, one or more per model")
    parser.add_argument("--format", choices=("md", "csv", "latex", "json"), default="md")
    args = parser.parse_args()
    try:
        print(make_tables(load_results(args.results), args.format), end="")
    except DatasetError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
