"""Linear-probe accuracy of a frozen encoder on an ImageFolder dataset (MoCo or SimSiam protocol).

    python tools/eval_linear.py --weights simsiam.pth --data /datasets/imagenet --protocol simsiam
    python tools/eval_linear.py --weights mocov2.pth --data /datasets/imagenet --cached     # fast
    python tools/eval_linear.py --weights random --data data/demo --image-size 64 --cached --batch-size 256

Without --cached, each epoch trains on features of freshly augmented crops (RandomResizedCrop + flip) through
the frozen backbone, as the papers did; with --cached, on center-crop features computed once (fast). The
output says which ran. The backbone stays in eval mode; its BN statistics are checked to be unchanged.
Checkpoints are read without running code from them; --trust-checkpoint allows a full unpickle.
"""
from dataclasses import asdict

from eval.features import ARCHS, build_encoder, split_features
from eval.linear import PROTOCOLS, adapted, linear_probe, train_transform
from sslt_core.atomic import write_json_atomic
from sslt_core.cli import ToolParser, crop_size, non_negative_int, positive_int, run, writable_file, writable_folder
from sslt_core.datasets import image_folder
from sslt_core.safe_load import TRUST_FLAG


def main(argv=None):
    parser = ToolParser(description=__doc__)
    parser.add_argument("--weights", required=True, help="a checkpoint tools/convert_to_d2.py reads, or 'random'")
    parser.add_argument("--data", help="an ImageFolder root with train/ and val/, or a datasets root with imagenet/")
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), default="moco")
    parser.add_argument("--cached", action="store_true", help="train on cached center-crop features (fast)")
    parser.add_argument("--batch-size", type=positive_int,
                        help="default: the protocol's; the lr scales linearly with it")
    parser.add_argument("--epochs", type=positive_int, help="default: the protocol's; lr milestones scale with it")
    parser.add_argument("--image-size", type=crop_size, default=224, help="crop size")
    parser.add_argument("--arch", choices=ARCHS, default="resnet50", help="architecture for --weights random")
    parser.add_argument("--workers", type=non_negative_int, default=4)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--cache-dir", default="output/feature_cache")
    parser.add_argument("--output", help="write the results JSON here")
    parser.add_argument(TRUST_FLAG, action="store_true", help="the checkpoint is trusted: allow a full unpickle "
                                                               "(it can run code)")
    args = parser.parse_args(argv)
    output = writable_file(args.output) if args.output else None
    cache_dir = writable_folder(args.cache_dir)
    protocol = adapted(PROTOCOLS[args.protocol], args.batch_size, args.epochs)
    encoder, description = build_encoder(args.weights, args.arch, trust=args.trust_checkpoint)
    splits, classes, _ = split_features(encoder, description, args.weights, args.data, args.image_size,
                                        cache_dir, num_workers=args.workers)
    augmented = None if args.cached else image_folder("imagenet", "train", args.data,
                                                      transform=train_transform(args.image_size))
    result, mode = linear_probe(encoder, splits["train"], splits["val"], len(classes), protocol, augmented,
                                seed=args.seed)
    print(f"linear probe ({args.protocol} protocol, {mode}): top-1 {result['top1']:.2f}  top-5 {result['top5']:.2f}")
    if output:
        write_json_atomic(output, {"weights": args.weights, "encoder": description, "mode": mode,
                                   "protocol": args.protocol, **asdict(protocol), "linear": result})


if __name__ == "__main__":
    run(main)
