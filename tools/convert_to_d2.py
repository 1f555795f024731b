"""Convert a self-supervised ResNet-50 checkpoint to detectron2's format (.pkl).

    python tools/convert_to_d2.py moco_v2_800ep_pretrain.pth.tar              # -> moco_v2_800ep_pretrain.pkl
    python tools/convert_to_d2.py checkpoint.pth -o simsiam.pkl --verify
    python tools/convert_to_d2.py output/pretrain/encoder.safetensors

Auto-detects torchvision, MoCo v1/v2/v3, SimSiam, SwAV, DINO, VISSL, solo-learn, mmselfsup, lightly and this
toolkit's checkpoints; keeps the online / query / teacher encoder; drops heads, predictors, queues,
prototypes and fc. The file is read without running code from it (--trust-checkpoint allows a full unpickle of
a file you trust); every weight must be finite. Only an ImageNet ResNet-50 converts; anything else is refused
and nothing is written.
"""
import pickle
from pathlib import Path

from sslt_core.atomic import atomic_path
from sslt_core.checkpoints import SOURCE_NAMES, read_encoder
from sslt_core.cli import ToolParser, run, writable_file
from sslt_core.errors import CheckpointError
from sslt_core.safe_load import TRUST_FLAG, check_checkpoint_file
from transfer.convert import detectron2_checkpoint, to_detectron2

TOLERANCE = 1e-4


def default_output(checkpoint):
    name = checkpoint.name
    for suffix in (".pth.tar", ".pth", ".pt", ".ckpt", ".tar", ".torch", ".safetensors"):
        if name.endswith(suffix):
            return checkpoint.with_name(name[: -len(suffix)] + ".pkl")
    return checkpoint.with_name(name + ".pkl")


def main(argv=None):
    parser = ToolParser(description=__doc__)
    parser.add_argument("checkpoint", type=Path, help="the checkpoint to convert")
    parser.add_argument("-o", "--output", type=Path, help="the .pkl to write (default: CHECKPOINT with .pkl)")
    parser.add_argument("--source", default="auto", choices=("auto",) + SOURCE_NAMES,
                        help="the checkpoint's layout; auto-detected by default")
    parser.add_argument("--verify", action="store_true", help="check that detectron2's res4/res5 features equal "
                                                              f"torchvision's (rel. err <= {TOLERANCE})")
    parser.add_argument(TRUST_FLAG, action="store_true", help="the checkpoint is trusted: allow a full unpickle "
                                                               "(it can run code)")
    args = parser.parse_args(argv)
    check_checkpoint_file(args.checkpoint)
    output = args.output or default_output(args.checkpoint)
    if output.suffix != ".pkl":
        parser.error(f"output {output} must end in .pkl, which is how detectron2 recognises its own format")
    writable_file(output)
    if output.resolve() == args.checkpoint.resolve():
        parser.error(f"output {output} would overwrite the checkpoint; pass -o with another name")
    encoder = read_encoder(args.checkpoint, args.source, trust=args.trust_checkpoint)
    try:
        converted = to_detectron2(encoder.state_dict)
    except CheckpointError as error:
        raise CheckpointError(f"{args.checkpoint}: {error}") from None

    print(f"detected: {encoder.source} (state dict at {encoder.container}, encoder prefix '{encoder.prefix}')")
    print(f"kept:     {len(converted)} tensors -> stem, res2-res5 (every conv and BN weight/bias/mean/var once)")
    dropped = ", ".join(f"{group} ({n})" for group, n in sorted(encoder.dropped.items())) or "nothing"
    skipped = sorted({k.split(".")[0] for k in encoder.state_dict if k.startswith("fc.")} |
                     ({"num_batches_tracked"} if any(k.endswith("num_batches_tracked") for k in encoder.state_dict)
                      else set()))
    print(f"dropped:  {dropped}" + (f"; from the encoder: {', '.join(skipped)}" if skipped else ""))

    with atomic_path(output) as tmp:  # detectron2 reads the temporary .pkl for --verify before it is renamed
        with open(tmp, "wb") as file:
            pickle.dump(detectron2_checkpoint(converted, f"ssl-transfer, from {encoder.source}"), file)
        if args.verify:
            from transfer.verify import compare_features

            errors = compare_features(tmp, encoder.state_dict)
            print("verify:   relative error " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
            if not all(error <= TOLERANCE for error in errors.values()):  # NaN fails too
                raise CheckpointError(f"converted features differ from torchvision's by more than {TOLERANCE} "
                                      f"({errors}); nothing written")
    print(f"wrote:    {output}")


if __name__ == "__main__":
    run(main)
