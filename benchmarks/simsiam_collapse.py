"""A small-scale SimSiam Figure 2 and Table 1 (Chen & He 2021): collapse without stop-gradient or predictor.

    python benchmarks/simsiam_collapse.py --data data/demo     # ResNet-18, 32 px, 10 epochs: ~6 min on 2 cores

Trains each variant with pretrain/train.py on the demo data and prints, per variant, the final loss, the
per-channel std of the l2-normalised output next to 1/sqrt(d) (0: collapsed), the effective rank (RankMe) of the
projector and backbone outputs on the label-free monitors' probe set, and kNN top-1 on the val split.
"""
import argparse
import json
import tempfile

from pretrain.config import load_config
from pretrain.train import train

VARIANTS = {  # name -> overrides (SimSiam Fig. 2 and Table 1)
    "baseline (stop-grad, predictor)": [],
    "w/o stop-grad": ["model.stop_gradient=false"],
    "w/o predictor": ["model.predictor=none"],
    "fixed random predictor": ["model.predictor=fixed_random"],
    "predictor lr decayed": ["model.predictor=mlp"],
}


def run_variants(data, epochs, image_size, arch, batch_size, base_lr, variants=VARIANTS, extra=()):
    rows = {}
    for name, overrides in variants.items():
        run = load_config("configs/pretrain/simsiam_demo.yaml", [
            f"train.data={data}", f"train.epochs={epochs}", f"train.image_size={image_size}",
            f"model.arch={arch}", f"train.batch_size={batch_size}", f"train.base_lr={base_lr}",
            f"train.knn_every={epochs}", f"train.diagnostics_every={epochs}", "train.diagnostics_samples=512",
            *overrides, *extra])
        with tempfile.TemporaryDirectory() as out:
            rows[name] = train(run, out, progress=False)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the demo datasets root (tools/make_demo_data.py)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--base-lr", type=float, default=0.5, help="lr = base_lr x batch / 256")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    rows = run_variants(args.data, args.epochs, args.image_size, args.arch, args.batch_size, args.base_lr)
    print(f"\nSimSiam ablations, {args.arch}, {args.image_size} px, {args.epochs} epochs, batch {args.batch_size}, "
          f"lr {args.base_lr * args.batch_size / 256:g}")
    print("| variant | loss | output std | 1/sqrt(d) | RankMe projector | RankMe backbone | probe images | "
          "kNN top-1 |\n|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['loss']:.3f} | {r['output_std']:.4f} | {r['output_std_reference']:.4f} | "
              f"{r['diag_projector_rankme']:.1f} | {r['diag_backbone_rankme']:.1f} | {r['diag_samples']} | "
              f"{r['knn_top1']:.1f} |")
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=2)


if __name__ == "__main__":
    main()
