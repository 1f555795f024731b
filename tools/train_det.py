"""Fine-tune a detector from converted weights and evaluate it (MoCo / SimSiam protocol, detectron2).

    python tools/train_det.py --config configs/voc07.yaml --weights simsiam.pkl --output-dir out/voc07 --trials 5
    python tools/train_det.py --config configs/demo/voc07.yaml --data-root data/demo --weights random
    python tools/train_det.py --config configs/voc07.yaml --weights w.pkl --num-gpus 8 SOLVER.IMS_PER_BATCH 16

Writes OUTPUT/metrics.json (each trial's VOC AP/AP50/AP75 or COCO bbox/segm AP, their mean and std) and
keeps detectron2's logs, TensorBoard events and checkpoints per trial; --resume continues an interrupted run.
"""
import argparse
import json
import sys

from detectron2.engine import launch

from sslt_core.errors import DatasetError
from transfer.finetune import FinetuneError, run_trials


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="a detectron2 YAML, e.g. configs/voc07.yaml")
    parser.add_argument("--weights", required=True, help="a .pkl from tools/convert_to_d2.py, or 'random'")
    parser.add_argument("--output-dir", default="output/detection", help="where trials and metrics.json go")
    parser.add_argument("--data-root", help="datasets root (default: $DETECTRON2_DATASETS, else ./datasets)")
    parser.add_argument("--trials", type=int, default=1, help="fine-tunings with seeds SEED..SEED+K-1 (paper: 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first trial")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output-dir")
    parser.add_argument("--num-gpus", type=int, default=1, help="GPUs per machine")
    parser.add_argument("--num-machines", type=int, default=1)
    parser.add_argument("--machine-rank", type=int, default=0)
    parser.add_argument("--dist-url", default="auto", help="e.g. tcp://host:port for several machines")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE pairs overriding the config")
    return parser.parse_args()


def main(args):
    try:
        summary = run_trials(args.config, args.weights, args.output_dir, trials=args.trials, seed=args.seed,
                             opts=args.opts, data_root=args.data_root, resume=args.resume)
    except (FinetuneError, DatasetError) as error:
        sys.exit(f"error: {error}")
    if summary is not None:
        print(json.dumps({"mean": summary["mean"], "std": summary["std"]}, indent=2))


if __name__ == "__main__":
    args = parse_args()
    if len(args.opts) % 2:
        sys.exit(f"error: overrides come as KEY VALUE pairs; got {args.opts}")
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
