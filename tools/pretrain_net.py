"""Self-supervised pretraining of a ResNet encoder: SimCLR, MoCo v2, BYOL, SwAV or SimSiam.

    python tools/pretrain_net.py --config configs/pretrain/simsiam_r50.yaml --data /datasets/imagenet
    python tools/pretrain_net.py --config configs/pretrain/simsiam_demo.yaml --data data/demo model.stop_gradient=false
    torchrun --nproc_per_node 8 tools/pretrain_net.py --config configs/pretrain/mocov2_r50.yaml --data /datasets/imagenet

Writes OUTPUT/encoder.safetensors (a torchvision state dict with metadata; tools/convert_to_d2.py and the eval
tools read it), checkpoints, metrics.jsonl, log.txt and TensorBoard scalars. --resume continues from the last
checkpoint. Values are overridden as section.key=value; a mistyped key or value fails before any work.
"""
from pretrain.config import load_config
from pretrain.train import train
from sslt_core.cli import ToolParser, run


def main(argv=None):
    parser = ToolParser(description=__doc__)
    parser.add_argument("--config", help="a YAML under configs/pretrain/")
    parser.add_argument("--data", help="ImageFolder root with train/ (val/ for the kNN monitor), or a datasets root")
    parser.add_argument("--output-dir", default="output/pretrain", help="where checkpoints and logs go (locked "
                                                                        "while the run lives)")
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint.pth")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.epochs=2 model.predictor=none")
    args = parser.parse_args(argv)
    config = load_config(args.config, args.overrides + ([f"train.data={args.data}"] if args.data else []))
    summary = train(config, args.output_dir, resume=args.resume)
    print({k: v for k, v in summary.items() if v is not None})


if __name__ == "__main__":
    run(main)
