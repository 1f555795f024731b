"""The pipeline's config: the same typed mechanism as pretraining (sslt_core/config.py), every key checked.

    data_root: data/demo                 # the datasets root (README, Datasets)
    demo_data: {size: default, seed: 0}  # generate the demo data into data_root when it is not there
    image_size: 64                       # crop size of kNN and linear probe
    methods:                             # name: a pretraining preset and overrides
      simsiam: {config: configs/pretrain/simsiam_demo.yaml, overrides: [train.epochs=2]}
    random_baseline: true                # a random-init row
    external:                            # name: a checkpoint in any layout the converter reads
      moco_v2_800ep: /weights/moco_v2_800ep_pretrain.pth.tar
      dino: {path: /weights/dino_resnet50.pth, trust: true}   # a file you trust: full unpickle allowed
    knn: {k: [20], temperature: 0.07}
    linear: {protocol: moco, cached: true, epochs: 30, batch_size: 256}
    detection:                           # voc07 | voc0712 | coco_det | coco_instseg: the tables' columns
      voc07: {config: configs/voc07.yaml, trials: 5, opts: [SOLVER.IMS_PER_BATCH, 16]}
    resources:                           # per stage kind, for --launcher slurm (defaults: DEFAULT_RESOURCES)
      pretrain: {nodes: 4, gpus_per_node: 8, time: 4320, partition: learnfair}
"""
from dataclasses import dataclass, field
from typing import Annotated, Literal

from eval.results import DetectionKey
from sslt_core.checkpoints import SOURCE_NAMES
from sslt_core.cluster import Resources
from sslt_core.config import Name, NonNegativeInt, PositiveFloat, PositiveInt, Range, build, read_yaml
from sslt_core.errors import ConfigError

StageKind = Literal["pretrain", "convert", "knn", "linear", "detection"]


@dataclass
class PretrainEntry:
    config: str  # a YAML under configs/pretrain/
    overrides: list[str] = field(default_factory=list)  # section.key=value


@dataclass
class ExternalEntry:
    path: str
    trust: bool = False  # allow a full unpickle of this file (it can run code)
    source: Literal[("auto", *SOURCE_NAMES)] = "auto"  # the layout, as tools/convert_to_d2.py --source


@dataclass
class DetectionEntry:
    config: str  # a detectron2 YAML, e.g. configs/voc07.yaml
    trials: Annotated[int, Range(min=1, max=100)] = 1
    opts: list[str | int | float] = field(default_factory=list)  # KEY VALUE pairs


@dataclass
class KnnSettings:
    k: list[PositiveInt] = field(default_factory=lambda: [20])
    temperature: PositiveFloat = 0.07


@dataclass
class LinearSettings:
    protocol: Literal["moco", "simsiam"] = "moco"
    cached: bool = True  # train on cached center-crop features (fast) instead of augmented crops on the fly
    epochs: PositiveInt | None = None  # None: the protocol's
    batch_size: PositiveInt | None = None


@dataclass
class DemoData:
    size: Literal["small", "default"] = "default"
    seed: NonNegativeInt = 0


@dataclass
class PipelineConfig:
    data_root: str
    demo_data: DemoData | None = None
    image_size: Annotated[int, Range(min=32, max=1024)] = 224  # crop size of kNN and linear probe
    eval_workers: Annotated[int, Range(min=0, max=256)] = 0
    methods: dict[Name, PretrainEntry] = field(default_factory=dict)
    random_baseline: bool = True
    external: dict[Name, str | ExternalEntry] = field(default_factory=dict)
    knn: KnnSettings = field(default_factory=KnnSettings)
    linear: LinearSettings = field(default_factory=LinearSettings)
    detection: dict[DetectionKey, DetectionEntry] = field(default_factory=dict)
    # per stage kind, what a job asks for with --launcher slurm | submitit-local (DEFAULT_RESOURCES otherwise)
    resources: dict[StageKind, Resources] = field(default_factory=dict)


RANDOM_BASELINE = "random init"
RESERVED = {"results", "plots", "manifest.json", "report.md", "tables.md", "tables.csv", "tables.tex", "tables.json",
            ".jobs", ".lock"}  # the pipeline's own files and folders in OUTPUT
DEFAULT_RESOURCES = {  # one node of 8 GPUs for training; evaluation on one GPU; conversion on a CPU
    "pretrain": Resources(nodes=1, gpus_per_node=8, time=72 * 60),
    "convert": Resources(gpus_per_node=0, cpus_per_task=2, time=30),
    "knn": Resources(gpus_per_node=1, time=4 * 60),
    "linear": Resources(gpus_per_node=1, time=24 * 60),
    "detection": Resources(nodes=1, gpus_per_node=8, time=24 * 60),
}


def folder_name(name):
    """The folder of a model row: its name with spaces as '_' (names are checked to need nothing more)."""
    return name.replace(" ", "_")


def load_pipeline_config(path):
    """PipelineConfig from a YAML file; every key, type and name checked; external paths as ExternalEntry."""
    config = build(PipelineConfig, read_yaml(path), "pipeline")
    config.external = {k: ExternalEntry(v) if isinstance(v, str) else v for k, v in config.external.items()}
    names = list(config.methods) + list(config.external) + ([RANDOM_BASELINE] if config.random_baseline else [])
    if not names:
        raise ConfigError(f"pipeline {path}: nothing to run; list models under methods: or external:, or set "
                          "random_baseline: true")
    folders = [folder_name(n) for n in names]
    twice = sorted({n for n, f in zip(names, folders) if folders.count(f) > 1})
    if twice:
        raise ConfigError(f"pipeline: model names {twice} share one output folder; rename them")
    taken = sorted(n for n, f in zip(names, folders) if f in RESERVED)
    if taken:
        raise ConfigError(f"pipeline: model names {taken} are the pipeline's own output names "
                          f"({', '.join(sorted(RESERVED))}); rename them")
    if len(config.detection) and not all(len(e.opts) % 2 == 0 for e in config.detection.values()):
        raise ConfigError("pipeline: detection opts come as KEY VALUE pairs")
    several = sorted(kind for kind, r in config.resources.items() if r.nodes > 1 and kind != "pretrain")
    if several:
        raise ConfigError(f"pipeline: resources of {several} ask for several nodes; only pretraining spreads over "
                          "nodes (a detection stage uses the GPUs of one node)")
    return config
