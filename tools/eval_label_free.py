"""Label-free diagnostics of a frozen encoder (tools/evaluate.py label_free).

    python tools/eval_label_free.py --weights simsiam.pth --data /datasets/imagenet --output lf.json
    python tools/eval_label_free.py --weights random --data data/demo --image-size 64 --samples 256

No labels are read. RankMe compares runs of one method (checkpoints of one run, hyperparameters), not one
method against another (Garrido et al. 2023). The images are --samples images of --split drawn with --seed
(25,600 as the RankMe paper; fewer when the split is smaller, recorded); alignment uses two views of each from
the --views recipe. Checkpoints are read without running code from them; --trust-checkpoint allows a full
unpickle.
"""
import sys

from evaluations.cli import main as evaluate
from sslt_core.cli import run


def main(argv=None):
    return evaluate(["label_free", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    run(main)
