"""The registry of evaluations: name -> Evaluation. An evaluation is one file of this package that registers its
name, typed settings, `run`, the table columns it fills and the resources its cluster jobs ask for; the results
records, the tables, the report, the pipeline's config, stage kinds and resources, tools/evaluate.py and the tests
all loop over this registry (as detectron2's DatasetCatalog: one registration, no list to edit elsewhere).

    run(weights: Weights, data_root, output_dir: Path, settings, context: Context) -> EvaluationRecord
"""
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sslt_core.cluster import Resources
from sslt_core.errors import ConfigError
from sslt_core.safe_load import TRUST_FLAG


@dataclass(frozen=True)
class Column:
    """One column an evaluation fills: `metric` of its record's metrics, shown as `label` in table `table`."""

    table: str  # a key of evaluations/tables.py's TABLES
    label: str
    metric: str
    digits: int = 1
    best: bool = True  # bold the highest value (False: higher is not better in itself)


@dataclass(frozen=True)
class Weights:
    """What is evaluated: a checkpoint in any layout the converter reads (or detectron2's .pkl for detection), or
    "random"; `trust` allows a full unpickle of it; `arch` is the architecture of random init."""

    path: str
    trust: bool = False
    arch: str = "resnet50"
    source: str = "auto"

    @property
    def random(self):
        return self.path == "random"


@dataclass(frozen=True)
class Context:
    """How a run is carried out, not what it measures (so not part of its protocol)."""

    cache_dir: Path | None = None  # feature caches, shared between evaluations of one checkpoint
    progress: bool = True
    quiet: bool = False  # detectron2's log to its file only
    resume: bool = False
    num_gpus: int = 1  # processes of a detection run (detectron2's launch)


@dataclass(frozen=True)
class Evaluation:
    name: str
    settings: type  # a dataclass: every key typed and checked (sslt_core/config.py)
    run: Callable  # see the module docstring; receives prepare(settings)
    protocol: Callable  # prepare(settings) -> protocol id, e.g. "linear/moco-sgd-lr30-100ep"
    columns: tuple = ()
    resource_kind: str = "gpu"  # a key of the pipeline's resources: what a job of this evaluation asks for
    resources: Resources = field(default_factory=lambda: Resources(gpus_per_node=1, time=4 * 60))
    reads: Callable = lambda settings: ["imagenet/train", "imagenet/val"]  # splits: the pipeline fingerprints them
    ranges: Callable = lambda metrics: {}  # metrics -> {metric: (low, high)}, checked when a record is read
    prepare: Callable = lambda settings: settings  # settings -> the checked object run receives (read files once)
    files: Callable = lambda checked: {}  # the texts of the files its result depends on (the pipeline's spec)
    plot: tuple = ()  # (label, metric): bars of the report's side-by-side plot
    demo: dict = field(default_factory=dict)  # settings for the generated demo data, fast (what the tests run)
    parts: Callable = None  # checked -> {part: checked}: the pipeline runs each part as its own stage (a job each)
    merge: Callable = None  # (records of the parts, checked) -> the record of the whole
    main: Callable = None  # args -> exit status: a tool flow of its own (detection: launchers, processes)
    detectron2_weights: bool = False  # reads the converted .pkl (the pipeline's convert stage), not the checkpoint
    summary: Callable = lambda record: f"{record.evaluation}: {record.metrics}"  # one line for the console
    cli: Callable = None  # (parser) -> add its arguments; see evaluations/cli.py
    from_args: Callable = None  # args -> (Weights, data_root, output_dir, settings, Context)
    description: str = ""


EVALUATIONS: dict[str, Evaluation] = {}


def add_record_arguments(parser):
    """--output and --trust-checkpoint: the arguments every evaluation of one checkpoint's tool shares."""
    parser.add_argument("--output", help="write the result record (JSON) here")
    parser.add_argument(TRUST_FLAG, action="store_true", help="the checkpoint is trusted: allow a full unpickle "
                                                               "(it can run code)")


def register(evaluation):
    if evaluation.name in EVALUATIONS:
        raise ValueError(f"evaluation {evaluation.name!r} is registered twice")
    EVALUATIONS[evaluation.name] = evaluation
    return evaluation


def get(name, where="evaluation"):
    """The registered evaluation `name`; ConfigError with the closest name otherwise."""
    if name not in EVALUATIONS:
        close = difflib.get_close_matches(str(name).lower(), list(EVALUATIONS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"choose one of {', '.join(EVALUATIONS)}"
        raise ConfigError(f"{where} '{name}' is not a registered evaluation; {hint}")
    return EVALUATIONS[name]


def resource_kinds():
    """{kind: default Resources} of every registered evaluation."""
    kinds = {}
    for evaluation in EVALUATIONS.values():
        kinds.setdefault(evaluation.resource_kind, evaluation.resources)
    return kinds
