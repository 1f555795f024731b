"""The pipeline's config: the same typed mechanism as pretraining (sslt_core/config.py), every key checked, read
once into the object the stages receive (load_pipeline_config).

    data_root: data/demo                 # the datasets root (README, Datasets)
    demo_data: {size: default, seed: 0}  # generate the demo data into data_root when it is not there
    image_size: 64                       # crop size of the feature evaluations (unless one sets its own)
    methods:                             # name: a pretraining preset and overrides
      simsiam: {config: configs/pretrain/simsiam_demo.yaml, overrides: [train.epochs=2]}
    random_baseline: true                # a random-init row
    external:                            # name: a checkpoint in any layout the converter reads
      moco_v2_800ep: /weights/moco_v2_800ep_pretrain.pth.tar
      dino: {path: /weights/dino_resnet50.pth, trust: true}   # a file you trust: full unpickle allowed
    evaluations:                         # name (a registered evaluation, evaluations/): its settings
      knn: {k: [20], temperature: 0.07}
      linear: {protocol: moco, cached: true, epochs: 30, batch_size: 256}
      voc07: {config: configs/voc07.yaml, trials: 5, opts: [SOLVER.IMS_PER_BATCH, 16]}
      label_free: {samples: 25600}
    resources:                           # per stage kind, for --launcher slurm (defaults: default_resources())
      pretrain: {nodes: 4, gpus_per_node: 8, time: 4320, partition: learnfair}

The earlier layout (`knn:`, `linear:` and `detection: {task: ...}` instead of `evaluations:`) is read as the
evaluations kNN, linear and those tasks.
"""
from dataclasses import dataclass, field, fields, replace
from typing import Annotated, Any, Literal

import evaluations  # noqa: F401  (registers every evaluation)
from evaluations.registry import EVALUATIONS, get, resource_kinds
from sslt_core.checkpoints import SOURCE_NAMES
from sslt_core.cluster import Resources
from sslt_core.config import Name, NonNegativeInt, Range, build, read_yaml, unknown_key
from sslt_core.errors import ConfigError


@dataclass(frozen=True)
class PretrainEntry:
    config: str  # a YAML under configs/pretrain/
    overrides: tuple[str, ...] = ()  # section.key=value


@dataclass(frozen=True)
class ExternalEntry:
    path: str
    trust: bool = False  # allow a full unpickle of this file (it can run code)
    source: Literal[("auto", *SOURCE_NAMES)] = "auto"  # the layout, as tools/convert_to_d2.py --source


@dataclass(frozen=True)
class DemoData:
    size: Literal["small", "default"] = "default"
    seed: NonNegativeInt = 0


@dataclass(frozen=True)
class PipelineConfig:
    data_root: str
    demo_data: DemoData | None = None
    image_size: Annotated[int, Range(min=32, max=1024)] = 224  # crop size of the feature evaluations
    eval_workers: Annotated[int, Range(min=0, max=256)] = 0
    methods: dict[Name, PretrainEntry] = field(default_factory=dict)
    random_baseline: bool = True
    external: dict[Name, str | ExternalEntry] = field(default_factory=dict)
    evaluations: dict[str, Any] | None = None  # name -> settings; checked against the registry (checked_evaluations)
    knn: dict[str, Any] | None = None  # the earlier layout: evaluations.knn
    linear: dict[str, Any] | None = None  # the earlier layout: evaluations.linear
    detection: dict[str, Any] | None = None  # the earlier layout: evaluations.<task>
    # per stage kind, what a job asks for with --launcher slurm | submitit-local (default_resources() otherwise)
    resources: dict[str, Resources] = field(default_factory=dict)


RANDOM_BASELINE = "random init"
RESERVED = {"results", "plots", "manifest.json", "report.md", "tables.md", "tables.csv", "tables.tex", "tables.json",
            ".jobs", ".lock"}  # the pipeline's own files and folders in OUTPUT
BUILTIN_RESOURCES = {  # one node of 8 GPUs for training; conversion on a CPU; each evaluation: its registration's
    "pretrain": Resources(nodes=1, gpus_per_node=8, time=72 * 60),
    "convert": Resources(gpus_per_node=0, cpus_per_task=2, time=30),
}


def default_resources():
    """{stage kind: Resources}: pretrain, convert and every registered evaluation's kind."""
    return {**BUILTIN_RESOURCES, **resource_kinds()}


def folder_name(name):
    """The folder of a model row: its name with spaces as '_' (names are checked to need nothing more)."""
    return name.replace(" ", "_")


def _settings(name, values, config, where):
    """The checked settings of evaluation `name`: the pipeline's image_size / eval_workers unless it sets its own."""
    evaluation = get(name, where.rsplit(".", 1)[0] + " key" if "." in where else where)
    values = dict(values or {}) if isinstance(values, dict) or values is None else values
    if not isinstance(values, dict):
        raise ConfigError(f"'{where}' must be a mapping of keys to values, got {values!r}")
    own = {f.name for f in fields(evaluation.settings)}
    defaults = {"image_size": config.image_size, "workers": config.eval_workers}
    settings = build(evaluation.settings, {**{k: v for k, v in defaults.items() if k in own}, **values}, where)
    return evaluation.prepare(settings)


def checked_evaluations(config):
    """{name: checked settings} in the config's order; every name registered, every setting checked, each
    evaluation's files (a detection config and its _BASE_ chain) read and checked once."""
    given = config.evaluations
    older = {key: getattr(config, key) for key in ("knn", "linear", "detection") if getattr(config, key) is not None}
    if given is not None and older:
        raise ConfigError(f"pipeline: give evaluations: or the earlier {', '.join(sorted(older))}: keys, not both; "
                          "move them under evaluations:")
    if given is None:  # the earlier layout: kNN and linear always, and the detection tasks listed
        detection = older.get("detection") or {}
        if not isinstance(detection, dict):
            raise ConfigError(f"'pipeline.detection' must be a mapping of tasks to settings, got {detection!r}")
        for task in detection:
            if task not in EVALUATIONS or not EVALUATIONS[task].detectron2_weights:
                tasks = [n for n, e in EVALUATIONS.items() if e.detectron2_weights]
                raise ConfigError(f"pipeline.detection key {task!r} must be one of {', '.join(tasks)}")
        return {"knn": _settings("knn", older.get("knn"), config, "pipeline.knn"),
                "linear": _settings("linear", older.get("linear"), config, "pipeline.linear"),
                **{task: _settings(task, values, config, f"pipeline.detection.{task}")
                   for task, values in detection.items()}}
    if not isinstance(given, dict):
        raise ConfigError(f"'pipeline.evaluations' must be a mapping of evaluation names to settings, got {given!r}")
    return {name: _settings(name, values, config, f"pipeline.evaluations.{name}") for name, values in given.items()}


def load_pipeline_config(path):
    """(PipelineConfig, {evaluation: checked settings}) from a YAML file; every key, type and name checked."""
    config = build(PipelineConfig, read_yaml(path), "pipeline")
    config = replace(config, external={k: ExternalEntry(v) if isinstance(v, str) else v
                                       for k, v in config.external.items()})
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
    kinds = default_resources()
    for kind in config.resources:
        if kind not in kinds:
            raise unknown_key(kind, kinds, "pipeline.resources")
    several = sorted(kind for kind, r in config.resources.items() if r.nodes > 1 and kind != "pretrain")
    if several:
        raise ConfigError(f"pipeline: resources of {several} ask for several nodes; only pretraining spreads over "
                          "nodes (a detection stage uses the GPUs of one node)")
    return config, checked_evaluations(config)
