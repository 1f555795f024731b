"""A results bundle per model: what a model hub or a spreadsheet reads (evaluations/bundle.py).

    python tools/export_bundle.py output/simsiam_r50 bundles/simsiam    # a pretraining run folder
    python tools/export_bundle.py output/pipeline bundles                # a pipeline output: bundles/<model>/ each

writes encoder.safetensors (a copy; --no-weights leaves it out), results.json (every record with its provenance),
results-<evaluation>.csv (one flat row per model: runs concatenate), README.md (a Hugging Face model card with
`model-index` front matter, and prose from the records: method, recipe, hardware, time, known deviations, the
comparison with the published numbers) and SHA256SUMS. A run folder's records are its results.json, or the record
files in it (tools/evaluate.py NAME --output RUN/NAME.json; a detection run's RUN/<task>/record.json). Nothing is
uploaded; the card says how to push the folder with huggingface_hub.
"""
import evaluations  # noqa: F401  (registers every evaluation)
from evaluations.bundle import export
from sslt_core.cli import ToolParser, run


def main(argv=None):
    parser = ToolParser(description=__doc__)
    parser.add_argument("run_dir", help="a pretraining run folder or a pipeline output folder")
    parser.add_argument("out_dir", help="the bundle folder (a pipeline output: one subfolder per model)")
    parser.add_argument("--name", help="the model's name (a pretraining run folder; default: the folder's name)")
    parser.add_argument("--no-weights", action="store_true", help="leave encoder.safetensors out of the bundle")
    args = parser.parse_args(argv)
    for folder in export(args.run_dir, args.out_dir, name=args.name, copy_weights=not args.no_weights):
        print(f"bundle written: {folder}")
    return 0


if __name__ == "__main__":
    run(main)
