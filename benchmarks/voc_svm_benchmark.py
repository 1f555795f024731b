"""Time the VOC07 SVMs (eval/voc_svm.py) per layer on the generated demo VOC2007, and project the time for VOC07's
5,011 trainval images.

    python benchmarks/voc_svm_benchmark.py                      # demo set "default" (400 trainval), 26 costs
    python benchmarks/voc_svm_benchmark.py --size small --costs 0.01 1 --jobs 2    # seconds

Features are a random-init trunk's (--arch) at --image-size; each layer's full protocol (a LinearSVC per class,
every cost on 3 folds and a refit) is timed on all classes. For the projection the class with the most positives
is timed alone on all images and on half of them, which gives the exponent a of t ~ N^a; VOC07's time is that
class's time scaled by (5011 / N)^a, by ResNet-50's width of that layer over the one measured (liblinear's work is
linear in the dimension), times 20 classes over the parallel jobs: an estimate, not a measurement.
"""
import argparse
import math
import tempfile
import time

import numpy as np
import torch
from joblib import cpu_count

from eval.features import build_encoder
from eval.voc_features import voc_layer_features
from eval.voc_svm import COSTS, full_svm
from sslt_demo.writer import make_demo_data

VOC07_TRAINVAL, VOC07_CLASSES = 5011, 20
RESNET50_DIMS = {"conv1": 9216, "res2": 9216, "res3": 8192, "res4": 9216, "res5": 8192, "pool": 2048}


def timed(*args, **kwargs):
    """(seconds, result) of full_svm(*args, **kwargs)."""
    start = time.perf_counter()
    result = full_svm(*args, **kwargs)
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=("small", "default"), default="default", help="demo data size")
    parser.add_argument("--arch", default="resnet18", help="random-init trunk of the features")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--costs", type=float, nargs="+", default=list(COSTS))
    parser.add_argument("--jobs", type=int, default=-1, help="classes in parallel (-1: every core)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_demo_data(f"{tmp}/demo", size_name=args.size)
        encoder, description = build_encoder("random", args.arch)
        start = time.perf_counter()
        splits, classes, _, dims = voc_layer_features(encoder, description, "random", f"{tmp}/demo/VOC2007",
                                                      ("trainval", "test"), args.image_size, batch_size=32)
        extraction = time.perf_counter() - start
    (train, train_labels), (test, test_labels) = splits["trainval"], splits["test"]
    n = len(train_labels)
    print(f"{args.arch} features of {n} trainval + {len(test_labels)} test images: {extraction:.1f} s; "
          f"{len(args.costs)} costs, {len(classes)} classes, jobs {args.jobs}, {torch.get_num_threads()} threads")
    print(f"{'layer':<7}{'dim':>6}{'seconds':>9}{'1 class':>9}{'half N':>9}{'a':>6}{'mAP':>7}"
          f"{'VOC07 R50 projected':>22}")
    full_svm(train["pool"], train_labels, test["pool"], test_labels, args.costs[:1], jobs=args.jobs)  # workers up
    busiest = int(np.argmax((train_labels > 0).sum(0)))  # the class of the most positives: timed alone
    one = [busiest]
    parallel = min(VOC07_CLASSES, cpu_count() if args.jobs < 0 else args.jobs)
    total = 0.0
    for layer, dim in dims.items():
        seconds, result = timed(train[layer], train_labels, test[layer], test_labels, args.costs, jobs=args.jobs)
        half = np.arange(0, n, 2)
        single, _ = timed(train[layer], train_labels[:, one], test[layer], test_labels[:, one], args.costs)
        seconds_half, halved = timed(train[layer][half], train_labels[half][:, one], test[layer],
                                     test_labels[:, one], args.costs)
        mean_ap = "-" if result["map"] is None else f"{result['map']:.1f}"
        if halved["classes"][0]["cost"] is None:  # too few positives in half the images: no exponent
            print(f"{layer:<7}{dim:>6}{seconds:>9.2f}{single:>9.2f}{'-':>9}{'-':>6}{mean_ap:>7}"
                  f"{'- (a larger --size)':>22}")
            continue
        exponent = min(max(math.log(single / seconds_half, 2), 1.0), 2.0)  # liblinear: between N and N^2
        projected = (single * (VOC07_TRAINVAL / n) ** exponent * RESNET50_DIMS[layer] / dim
                     * math.ceil(VOC07_CLASSES / parallel))
        total += projected
        print(f"{layer:<7}{dim:>6}{seconds:>9.2f}{single:>9.2f}{seconds_half:>9.2f}{exponent:>6.2f}{mean_ap:>7}"
              f"{projected / 3600:>20.2f} h")
    print(f"projected VOC07 total (6 layers, ResNet-50, {parallel} classes at a time): {total / 3600:.1f} h")


if __name__ == "__main__":
    main()
