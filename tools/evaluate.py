"""Any registered evaluation of one checkpoint (evaluations/), its record with provenance as JSON.

    python tools/evaluate.py --help                       # the registered evaluations
    python tools/evaluate.py knn --weights simsiam.pth --data /datasets/imagenet --output knn.json
    python tools/evaluate.py linear --weights mocov2.pth --data /datasets/imagenet --cached
    python tools/evaluate.py label_free --weights simsiam.pth --data /datasets/imagenet --samples 25600
    python tools/evaluate.py voc07 --weights simsiam.pkl --output-dir out/voc07 --trials 5

`tools/evaluate.py NAME --help` lists an evaluation's arguments.
"""
from evaluations.cli import main
from sslt_core.cli import run

if __name__ == "__main__":
    run(main)
