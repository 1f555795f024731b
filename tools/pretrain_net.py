"""Self-supervised pretraining of a ResNet encoder: SimCLR, MoCo v2, BYOL, SwAV or SimSiam.

    python tools/pretrain_net.py --config configs/pretrain/simsiam_r50.yaml --data /datasets/imagenet
    python tools/pretrain_net.py --config configs/pretrain/simsiam_demo.yaml --data data/demo model.stop_gradient=false
    torchrun --nproc_per_node 8 tools/pretrain_net.py --config configs/pretrain/mocov2_r50.yaml --data /datasets/imagenet

Writes OUTPUT/encoder.pth (a torchvision state dict with metadata; tools/convert_to_d2.py and the eval tools
read it), checkpoints, metrics.jsonl and TensorBoard scalars. --resume continues from the last checkpoint.
"""
import argparse
import sys

from pretrain.config import load_config
from pretrain.train import TrainingDiverged, train
from sslt_core.errors import ConfigError, DatasetError


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a YAML under configs/pretrain/")
    parser.add_argument("--data", help="ImageFolder root with train/ (val/ for the kNN monitor), or a datasets root")
    parser.add_argument("--output-dir", default="output/pretrain", help="where checkpoints and logs go")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pth")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.epochs=2 model.predictor=none")
    args = parser.parse_args()
    try:
        run = load_config(args.config, args.overrides + ([f"train.data={args.data}"] if args.data else []))
        summary = train(run, args.output_dir, resume=args.resume)
    except (ConfigError, DatasetError, TrainingDiverged, FileExistsError, ValueError) as error:
        sys.exit(f"error: {error}")
    print({k: v for k, v in summary.items() if v is not None})


if __name__ == "__main__":
    main()
