"""Label-free diagnostics of a frozen encoder: RankMe, alpha-ReQ, covariance spectrum, alignment and uniformity.

    python tools/eval_label_free.py --weights simsiam.pth --data /datasets/imagenet --output lf.json
    python tools/eval_label_free.py --weights random --data data/demo --image-size 64 --samples 256

No labels are read. RankMe compares runs of one method (checkpoints of one run, hyperparameters), not one
method against another (Garrido et al. 2023). The images are --samples images of --split drawn with --seed
(25,600 as the RankMe paper; fewer when the split is smaller, recorded); alignment uses two views of each from
the --views recipe. Checkpoints are read without running code from them; --trust-checkpoint allows a full
unpickle.
"""
import torch

from eval.diagnostics import UNIFORMITY_T
from eval.features import ARCHS, build_encoder
from eval.label_free import PAPER_SAMPLES, evaluate_label_free
from pretrain.augment import BYOL_1, MOCO_V2, SIMCLR, SWAV_LARGE, SeededViews, collate, to_device_views
from sslt_core.atomic import write_json_atomic
from sslt_core.cli import ToolParser, crop_size, non_negative_int, positive_int, run, writable_file
from sslt_core.safe_load import TRUST_FLAG

VIEWS = {"moco_v2": MOCO_V2, "simclr": SIMCLR, "byol": BYOL_1, "swav": SWAV_LARGE}


def main(argv=None):
    parser = ToolParser(description=__doc__)
    parser.add_argument("--weights", required=True, help="a checkpoint tools/convert_to_d2.py reads, or 'random'")
    parser.add_argument("--data", help="an ImageFolder root, or a datasets root holding imagenet/")
    parser.add_argument("--split", default="train", choices=("train", "val"))
    parser.add_argument("--samples", type=positive_int, default=PAPER_SAMPLES, help="images embedded")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="draws the images and their views")
    parser.add_argument("--views", choices=sorted(VIEWS), default="moco_v2", help="augmentation of the two views "
                                                                                  "alignment compares")
    parser.add_argument("--image-size", type=crop_size, default=224, help="centre-crop size (resize to size/0.875)")
    parser.add_argument("--arch", choices=ARCHS, default="resnet50", help="architecture for --weights random")
    parser.add_argument("--batch-size", type=positive_int, default=256)
    parser.add_argument("--workers", type=non_negative_int, default=4)
    parser.add_argument("--output", help="write the results JSON here")
    parser.add_argument(TRUST_FLAG, action="store_true", help="the checkpoint is trusted: allow a full unpickle "
                                                               "(it can run code)")
    args = parser.parse_args(argv)
    output = writable_file(args.output) if args.output else None
    encoder, description = build_encoder(args.weights, args.arch, trust=args.trust_checkpoint)

    def view_dataset(folder, indices):
        views = SeededViews(folder, (VIEWS[args.views],) * 2, args.image_size, seed=args.seed)
        return torch.utils.data.Subset(views, indices)

    record, spectrum = evaluate_label_free(encoder, args.data, args.image_size, view_dataset, args.samples,
                                           args.seed, args.split, args.batch_size, args.workers,
                                           collate_fn=collate, to_device=to_device_views)
    record.update(views=args.views, uniformity_t=UNIFORMITY_T)
    fit = record["alpha_fit_range"]
    alpha = (f"alpha-ReQ {record['alpha']:.3f} (R^2 {record['alpha_r2']:.3f}, eigenvalues {fit[0]}..{fit[1]})"
             if fit else f"alpha-ReQ not defined ({record['alpha_note']})")
    print(f"{description}: RankMe {record['rankme']:.1f} of {record['dim']} on {record['samples']} images; {alpha}; "
          f"alignment {record['alignment']:.4f}, uniformity {record['uniformity']:.4f}")
    if record["samples"] < PAPER_SAMPLES:
        print(f"note: {record['samples']} images, fewer than the paper's {PAPER_SAMPLES}: compare only runs "
              "measured on the same images")
    if output:
        write_json_atomic(output, {"weights": args.weights, "encoder": description, "label_free": record,
                                   "spectrum": spectrum})


if __name__ == "__main__":
    run(main)
