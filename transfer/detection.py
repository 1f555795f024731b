"""detectron2 glue for the MoCo / SimSiam detection protocol (He et al. 2020, A.2; MoCo's detection/ code).

The one model change is MoCo's: a norm layer after res5 in the C4 ROI head, of the backbone's kind
(naiveSyncBN). Datasets are registered from the roots
that sslt_core/datasets.py resolves; `demo_*` names are the generated demo data (tools/make_demo_data.py).
"""
import math
import os
import re
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import register_coco_instances
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASSES
from detectron2.data.datasets.pascal_voc import register_pascal_voc
from detectron2.engine import DefaultTrainer
from detectron2.engine import defaults as engine_defaults
from detectron2.evaluation import PascalVOCDetectionEvaluator
from detectron2.layers import get_norm
from detectron2.modeling.roi_heads import ROI_HEADS_REGISTRY, Res5ROIHeads
from detectron2.utils import comm

from sslt_core.atomic import atomic_path, write_bytes_atomic
from sslt_core.datasets import DEMO_CLASSES, dataset_path
from sslt_core.detection_data import check_coco_split, check_voc_split
from sslt_core.errors import CheckpointError, ConfigError, OutputError
from sslt_core.safe_load import load_file
from transfer.detectron2_env import coco_evaluator


@ROI_HEADS_REGISTRY.register()
class Res5ROIHeadsExtraNorm(Res5ROIHeads):
    """Res5ROIHeads with a norm layer after res5, as in MoCo's detection fine-tuning (He et al. 2020, A.2)."""

    def _build_res5_block(self, cfg):
        seq, out_channels = super()._build_res5_block(cfg)
        seq.add_module("norm", get_norm(cfg.MODEL.RESNETS.NORM, out_channels))
        return seq, out_channels


@dataclass(frozen=True)
class DetectionSet:
    layout: str  # a key of eval.datasets.LAYOUTS
    split: str
    classes: tuple = ()  # VOC only; COCO reads its categories from the json
    year: int = 0


_STANDARD = {
    "voc_2007_trainval": DetectionSet("voc2007", "trainval", VOC_CLASSES, 2007),
    "voc_2007_test": DetectionSet("voc2007", "test", VOC_CLASSES, 2007),
    "voc_2012_trainval": DetectionSet("voc2012", "trainval", VOC_CLASSES, 2012),
    "coco_2017_train": DetectionSet("coco", "train2017"),
    "coco_2017_val": DetectionSet("coco", "val2017"),
}
DETECTION_SETS = {**_STANDARD, **{
    f"demo_{name}": DetectionSet(s.layout, s.split, DEMO_CLASSES if s.classes else (), s.year)
    for name, s in _STANDARD.items()}}


_REGISTERED = {}  # name -> the root this process registered it from


def register_detection_sets(names, data_root=None):
    """(Re-)register dataset `names` from the datasets root (flag, else $DETECTRON2_DATASETS), checking layouts;
    a name already registered by this process from the same root is left as it is (once per process and root).

    detectron2 registers its builtin names at import from $DETECTRON2_DATASETS; they are replaced here so that
    --data-root is honoured and a wrong root fails at once with the layout expected.
    """
    for name in dict.fromkeys(names):
        if name not in DETECTION_SETS:
            raise ConfigError(f"unknown dataset '{name}' in DATASETS; known: {', '.join(DETECTION_SETS)}")
        spec = DETECTION_SETS[name]
        root = dataset_path(spec.layout, data_root)
        if _REGISTERED.get(name) == str(root) and name in DatasetCatalog:
            continue
        if name in DatasetCatalog.list():
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)
        if spec.layout.startswith("voc"):
            register_pascal_voc(name, str(root), spec.split, spec.year, spec.classes)
            MetadataCatalog.get(name).evaluator_type = "pascal_voc"
        else:
            json_file = root / "annotations" / f"instances_{spec.split}.json"
            register_coco_instances(name, {}, str(json_file), str(root / spec.split))
        _REGISTERED[name] = str(root)


def check_detection_sets(names, data_root=None):
    """Register dataset `names` and check what each split holds (sslt_core/detection_data.py), before training."""
    register_detection_sets(names, data_root)
    for name in dict.fromkeys(names):
        spec = DETECTION_SETS[name]
        root = dataset_path(spec.layout, data_root)
        if spec.layout.startswith("voc"):
            check_voc_split(root, spec.split, spec.classes)
        else:
            check_coco_split(root, spec.split)


# The names detectron2's checkpointer gives a trial's checkpoints (PeriodicCheckpointer's "model_<iter>",
# DefaultTrainer's "model_final").
CHECKPOINT_NAME = re.compile(r"model_(\d{7}|final)\.pth")


def last_checkpoint(folder):
    """The checkpoint that `folder`/last_checkpoint names, '' if there is no such tag. Only a checkpoint of this
    folder, named as detectron2 names them, and a regular file (not a link) is accepted: the tag is a file from
    outside like any other, and must not lead the run to read a file it did not write."""
    tag = Path(folder) / "last_checkpoint"
    if not tag.exists() and not tag.is_symlink():
        return ""
    if tag.is_symlink() or not tag.is_file():
        raise CheckpointError(f"{tag} is not a regular file (a link, a folder or a device); delete it to restart "
                              "this trial from the start")
    try:
        name = tag.read_text().strip()
    except UnicodeDecodeError:
        name = None
    if not name or not CHECKPOINT_NAME.fullmatch(name):
        raise CheckpointError(f"{tag} names {name!r}, not a checkpoint of this folder (model_<iteration>.pth or "
                              "model_final.pth); delete it to restart this trial from the start")
    path = Path(folder) / name
    if path.is_symlink() or not path.is_file():
        what = "a link" if path.is_symlink() else "no such file" if not path.exists() else "not a regular file"
        raise CheckpointError(f"{tag} names {path}: {what}; delete {tag} to restart this trial from the start")
    return str(path)


class _WriteErrors:
    """A file that records the OSError of a failed write: torch.save reports it as an 'enforce fail' only."""

    def __init__(self, file):
        self.file, self.error = file, None

    def write(self, data):
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self):
        self.file.flush()


class SafeCheckpointer(DetectionCheckpointer):
    """detectron2's checkpointer, every file read through sslt_core/safe_load.py: a detectron2 .pkl with the
    numpy-only unpickler, anything else weights-only; a full unpickle only for weights the user trusts. Resuming
    follows last_checkpoint only to a checkpoint of the trial's own folder (`last_checkpoint`), and every save is
    atomic: a full disk or a kill leaves the last complete checkpoint, and the error names the file and the cause."""

    def __init__(self, model, save_dir="", trust=False, **checkables):
        super().__init__(model, save_dir, **checkables)
        self.trust = trust

    def _load_file(self, filename):
        if filename.endswith(".pkl"):
            data = load_file(filename, self.trust)
            if "model" in data and "__author__" in data:
                return data
            data = data.get("blobs", data)  # a Caffe2 / Detectron1 file, as detectron2 reads it
            data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
            return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
        if filename.endswith(".pyth") and not self.trust:
            raise CheckpointError(f"{filename}: a pycls .pyth file needs a full unpickle; pass --trust-checkpoint")
        return super()._load_file(filename)

    def _torch_load(self, f):
        return load_file(f, self.trust)

    def has_checkpoint(self):
        tag = Path(self.save_dir) / "last_checkpoint"
        return tag.exists() or tag.is_symlink()  # a dangling link too: get_checkpoint_file refuses it

    def get_checkpoint_file(self):
        return last_checkpoint(self.save_dir)

    def save(self, name, **kwargs):
        """fvcore's Checkpointer.save (the same content), written through sslt_core/atomic.py."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict(), **{k: v.state_dict() for k, v in self.checkpointables.items()},
                **kwargs}
        path = Path(self.save_dir) / f"{name}.pth"
        self.logger.info(f"Saving checkpoint to {path}")
        writer = None
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as file:
                writer = _WriteErrors(file)
                torch.save(data, writer)
                file.flush()
                os.fsync(file.fileno())
            write_bytes_atomic(Path(self.save_dir) / "last_checkpoint", path.name.encode())
        except (OSError, RuntimeError) as error:
            cause = writer.error if writer and writer.error else error
            reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause).splitlines()[0]
            raise OutputError(f"cannot save checkpoint {path} ({reason}); the last complete checkpoint is kept: free "
                              "space and run the same command with --resume") from None


class DetectionTrainer(DefaultTrainer):
    """detectron2's DefaultTrainer with the VOC and COCO evaluators chosen from the dataset's metadata, and a
    checkpointer that runs no code from the files it reads."""

    def __init__(self, cfg, trust=False):
        self._trust = trust  # for build_hooks, which DefaultTrainer.__init__ calls
        if cfg.MODEL.DEVICE != "cpu" or comm.get_world_size() == 1:
            super().__init__(cfg)
        else:
            # Several CPU processes (gloo): detectron2's create_ddp_model passes device_ids=[local rank], which only
            # a GPU module accepts; a CPU module needs device_ids=None.
            create = engine_defaults.create_ddp_model
            engine_defaults.create_ddp_model = lambda model, **kwargs: create(model, device_ids=None, **kwargs)
            try:
                super().__init__(cfg)
            finally:
                engine_defaults.create_ddp_model = create

    def build_hooks(self):
        """DefaultTrainer's hooks, its PeriodicCheckpointer saving through the SafeCheckpointer."""
        self.checkpointer = SafeCheckpointer(self._trainer.model, self.cfg.OUTPUT_DIR, trust=self._trust,
                                             trainer=weakref.proxy(self))
        return super().build_hooks()

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        kind = MetadataCatalog.get(dataset_name).evaluator_type
        if kind == "pascal_voc":
            return PascalVOCDetectionEvaluator(dataset_name)
        if kind == "coco":
            output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference")
            return coco_evaluator(dataset_name, output_dir=output_folder, tasks=("bbox", "segm")
                                  if cfg.MODEL.MASK_ON else ("bbox",))
        raise ConfigError(f"no evaluator for dataset {dataset_name} (evaluator_type {kind!r})")


def summarize_trials(trial_results):
    """Per task and metric: mean and sample std over the trials where it is defined (not None)."""
    mean, std = {}, {}
    for task in trial_results[0]:
        mean[task], std[task] = {}, {}
        for metric in trial_results[0][task]:
            values = [r[task][metric] for r in trial_results if r[task].get(metric) is not None]
            if not values:
                continue
            mu = sum(values) / len(values)
            mean[task][metric] = mu
            std[task][metric] = (math.sqrt(sum((v - mu) ** 2 for v in values) / (len(values) - 1))
                                 if len(values) > 1 else 0.0)
    return mean, std
