"""Weighted kNN accuracy of a frozen encoder on an ImageFolder dataset (train = bank, val = queries).

    python tools/eval_knn.py --weights simsiam.pth --data /datasets/imagenet --k 10 20 100 200
    python tools/eval_knn.py --weights random --data data/demo --image-size 64 --backend torch

Prints top-1 / top-5 for every k and writes them as JSON (--output). Features are cached (--cache-dir) by
content, so a second evaluation of the same checkpoint on the same images reuses them. Checkpoints are read
without running code from them; --trust-checkpoint allows a full unpickle of a file you trust.
"""
from eval.features import ARCHS, build_encoder, split_features
from eval.knn import accuracy, knn_classify
from sslt_core.atomic import write_json_atomic
from sslt_core.cli import (
    ToolParser,
    crop_size,
    non_negative_int,
    positive_float,
    positive_int,
    run,
    writable_file,
    writable_folder,
)
from sslt_core.safe_load import TRUST_FLAG


def main(argv=None):
    parser = ToolParser(description=__doc__)
    parser.add_argument("--weights", required=True, help="a checkpoint in any layout tools/convert_to_d2.py reads, "
                                                         "or 'random'")
    parser.add_argument("--data", help="an ImageFolder root with train/ and val/, or a datasets root holding "
                                       "imagenet/ (default: $DETECTRON2_DATASETS)")
    parser.add_argument("--k", type=positive_int, nargs="+", default=[10, 20, 100, 200], help="neighbour counts")
    parser.add_argument("--temperature", type=positive_float, default=0.07, help="T in the vote weight exp(s/T)")
    parser.add_argument("--backend", choices=("faiss", "torch"), default="faiss")
    parser.add_argument("--image-size", type=crop_size, default=224,
                        help="center-crop size (resize to size/0.875)")
    parser.add_argument("--arch", choices=ARCHS, default="resnet50", help="architecture for --weights random")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--workers", type=non_negative_int, default=4, help="data loading processes")
    parser.add_argument("--cache-dir", default="output/feature_cache", help="where features are cached")
    parser.add_argument("--output", help="write the results JSON here")
    parser.add_argument(TRUST_FLAG, action="store_true", help="the checkpoint is trusted: allow a full unpickle "
                                                               "(it can run code)")
    args = parser.parse_args(argv)
    output = writable_file(args.output) if args.output else None
    cache_dir = writable_folder(args.cache_dir)
    encoder, description = build_encoder(args.weights, args.arch, trust=args.trust_checkpoint)
    splits, classes, reused = split_features(encoder, description, args.weights, args.data, args.image_size,
                                             cache_dir, batch_size=args.batch_size, num_workers=args.workers)
    (train_x, train_y), (test_x, test_y) = splits["train"], splits["val"]
    rankings = knn_classify(train_x, train_y, test_x, args.k, args.temperature, len(classes), args.backend)
    results = {"weights": args.weights, "encoder": description, "backend": args.backend,
               "temperature": args.temperature, "train_size": len(train_y), "test_size": len(test_y),
               "classes": len(classes), "features": "reused from cache" if all(reused.values()) else "extracted",
               "knn": {str(k): accuracy(r, test_y) for k, r in rankings.items()}}
    beyond = [k for k in args.k if k > len(train_y)]
    if beyond:  # knn_classify votes with the whole bank then: said, and recorded with the results
        results["note"] = f"k {beyond} exceed the {len(train_y)} training images: those votes use the whole bank"
    for k, acc in results["knn"].items():
        whole = f" (whole bank of {len(train_y)})" if int(k) > len(train_y) else ""
        print(f"kNN k={k:>4} T={args.temperature}: top-1 {acc['top1']:.2f}  top-5 {acc['top5']:.2f}{whole}")
    if output:
        write_json_atomic(output, results)


if __name__ == "__main__":
    run(main)
