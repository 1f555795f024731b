"""Linear-probe accuracy of a frozen encoder (tools/evaluate.py linear).

    python tools/eval_linear.py --weights simsiam.pth --data /datasets/imagenet --protocol simsiam
    python tools/eval_linear.py --weights mocov2.pth --data /datasets/imagenet --cached     # fast
    python tools/eval_linear.py --weights random --data data/demo --image-size 64 --cached --batch-size 256

Without --cached, each epoch trains on features of freshly augmented crops (RandomResizedCrop + flip) through
the frozen backbone, as the papers did; with --cached, on center-crop features computed once (fast). The
output says which ran. The backbone stays in eval mode; its BN statistics are checked to be unchanged.
Checkpoints are read without running code from them; --trust-checkpoint allows a full unpickle.
"""
import sys

from evaluations.cli import main as evaluate
from sslt_core.cli import run


def main(argv=None):
    return evaluate(["linear", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    run(main)
