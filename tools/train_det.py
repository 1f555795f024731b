"""Fine-tune a detector from converted weights and evaluate it (MoCo / SimSiam protocol, detectron2): the
detection evaluations of tools/evaluate.py, with --config required and the task named by the config's datasets.

    python tools/train_det.py --config configs/voc07.yaml --weights simsiam.pkl --output-dir out/voc07 --trials 5
    python tools/train_det.py --config configs/demo/voc07.yaml --data-root data/demo --weights random
    python tools/train_det.py --config configs/voc07.yaml --weights w.pkl --num-gpus 8 SOLVER.IMS_PER_BATCH 16
    python tools/train_det.py --config configs/voc07.yaml --weights w.pkl --trials 5 --launcher slurm --wait

See evaluations/detection_cli.py for what it writes (OUTPUT/metrics.json, OUTPUT/record.json, each trial's
folder), --resume and the --launcher paths.
"""
import evaluations  # noqa: F401  (registers every evaluation)
from evaluations.detection_cli import main
from sslt_core.cli import run

if __name__ == "__main__":
    run(main)
