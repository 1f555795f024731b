"""Weighted kNN accuracy of a frozen encoder (tools/evaluate.py knn).

    python tools/eval_knn.py --weights simsiam.pth --data /datasets/imagenet --k 10 20 100 200
    python tools/eval_knn.py --weights random --data data/demo --image-size 64 --backend torch

Prints top-1 / top-5 for every k and writes them as JSON (--output). Features are cached (--cache-dir) by
content, so a second evaluation of the same checkpoint on the same images reuses them. Checkpoints are read
without running code from them; --trust-checkpoint allows a full unpickle of a file you trust.
"""
import sys

from evaluations.cli import main as evaluate
from sslt_core.cli import run


def main(argv=None):
    return evaluate(["knn", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    run(main)
