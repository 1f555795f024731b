"""A model's results: what the pipeline writes per model (OUTPUT/results/<model>.json) and what the tables read.

    {"name": "SimSiam", "method": "simsiam", "batch_size": 256, "negative_pairs": false,
     "momentum_encoder": false, "epochs": 100,
     "evaluations": {"linear": <record>, "knn": <record>, "voc07": <record>, ...},   # evaluations/record.py
     "failed": {"linear": "reason", ...}}

Every field but `name` is optional; each key of `evaluations` and `failed` is a registered evaluation (or
"pretrain"). Results files of the earlier layout (fields "linear", "knn", "label_free", "detection" with
train_det's metrics.json) are read too: their records carry the protocol "unknown" (they did not record it).
A value of the wrong type fails with one line naming the file and the key.
"""
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from evaluations.record import EvaluationRecord, parse_record
from evaluations.registry import EVALUATIONS, get
from sslt_core.config import Range, check_value, fields_of
from sslt_core.errors import ConfigError, ResultsError

UNKNOWN_PROTOCOL = "unknown"  # a record of the earlier layout, which did not say how it was made
Percent = Annotated[float, Range(min=0, max=100)]


@dataclass
class ModelResult:
    name: str
    method: str | None = None
    batch_size: Annotated[int, Range(min=1, max=10**7)] | None = None
    epochs: Annotated[int, Range(min=0, max=10**6)] | None = None  # the pretraining budget; 0: random init
    negative_pairs: bool | None = None
    momentum_encoder: bool | None = None
    evaluations: dict = field(default_factory=dict)  # name -> EvaluationRecord
    failed: dict[str, str] = field(default_factory=dict)  # evaluation or "pretrain" -> reason

    def to_dict(self):
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "evaluations"},
                "evaluations": {name: record.to_dict() for name, record in self.evaluations.items()}}


# The earlier layout, read as it was checked then (eval/results.py before the registry).
@dataclass
class _Accuracy:
    top1: Percent
    top5: Percent | None = None


@dataclass
class _LabelFree:
    rankme: Annotated[float, Range(min=0)]
    alpha: float | None = None
    alignment: Annotated[float, Range(min=0, max=4)] | None = None
    uniformity: Annotated[float, Range(max=0)] | None = None
    samples: int | None = None


@dataclass
class _Detection:
    mean: dict[str, dict[str, float | None]]
    std: dict[str, dict[str, float | None]] = field(default_factory=dict)


@dataclass
class _Legacy:
    linear: _Accuracy | None = None
    knn: _Accuracy | None = None
    label_free: _LabelFree | None = None
    detection: dict[Literal["voc07", "voc0712", "coco_det", "coco_instseg"], _Detection] = field(default_factory=dict)


def _only_known(cls, value, where):
    """The keys of `value` that `cls` has (records read other tools' JSON, which holds more)."""
    if not isinstance(value, dict):
        raise ResultsError(f"{where} must be a mapping, got {value!r}")
    return {k: v for k, v in value.items() if k in fields_of(cls)}


def _legacy_records(data, where):
    """{evaluation: EvaluationRecord} from the earlier layout's fields."""
    values = {}
    for key, kind in (("linear", _Accuracy), ("knn", _Accuracy), ("label_free", _LabelFree)):
        if data.get(key) is not None:
            values[key] = _only_known(kind, data[key], f"{where}.{key}")
    if "detection" in data:
        entries = data["detection"] or {}
        if not isinstance(entries, dict):
            raise ResultsError(f"{where}.detection must be a mapping, got {entries!r}")
        values["detection"] = {k: _only_known(_Detection, v, f"{where}.detection.{k}") for k, v in entries.items()}
    try:
        legacy = check_value(values, _Legacy, where)
    except ConfigError as error:
        raise ResultsError(str(error).replace("config key", "key")) from None
    records = {}
    for key in ("linear", "knn", "label_free"):
        value = getattr(legacy, key)
        if value is not None:
            metrics = dataclasses.asdict(value)
            records[key] = EvaluationRecord(key, UNKNOWN_PROTOCOL, metrics, [{"seed": None, "metrics": metrics}],
                                            "imagenet/val" if key != "label_free" else "imagenet/train")
    for key, entry in legacy.detection.items():
        for part in ("mean", "std"):  # COCO-style AP values are percentages, as the accuracies
            for task, metrics in getattr(entry, part).items():
                for metric, value in metrics.items():
                    if value is not None and not (math.isfinite(value) and 0 <= value <= 100):
                        raise ResultsError(f"{where}.detection.{key}.{part}.{task}.{metric} must be a percentage "
                                           f"in [0, 100] or null, got {value!r}")
        flat = {f"{task}/{m}": v for task, metrics in entry.mean.items() for m, v in metrics.items()}
        std = {f"{task}/{m}": v for task, metrics in entry.std.items() for m, v in metrics.items()}
        records[key] = EvaluationRecord(key, UNKNOWN_PROTOCOL, flat, [{"seed": None, "metrics": flat}], "test",
                                        std=std)
    return records


def check_ranges(record, where):
    """The metric values within the ranges the evaluation declares (e.g. a percentage in [0, 100])."""
    for metric, (low, high) in get(record.evaluation, f"{where}.evaluation").ranges(record.metrics).items():
        for part in ("metrics", "std"):
            value = getattr(record, part).get(metric)
            if part == "std":
                low, high = 0, (high - low if low is not None and high is not None else None)
            if value is not None and ((low is not None and value < low) or (high is not None and value > high)):
                raise ResultsError(f"{where}.{part}.{metric} must be in [{low}, {high}] or null, got {value!r}")


def parse_result(data, where="results"):
    """A ModelResult from JSON data; ResultsError naming the key on a wrong shape or type."""
    if not isinstance(data, dict):
        raise ResultsError(f"{where} must be a mapping, got {data!r}")
    if "name" not in data:
        raise ResultsError(f"{where} has no 'name'; see evaluations/results.py for the format")
    traits = {k: data[k] for k in ("name", "method", "batch_size", "epochs", "negative_pairs", "momentum_encoder",
                                   "failed") if k in data}
    try:
        result = check_value(traits, ModelResult, where)
    except ConfigError as error:
        raise ResultsError(str(error).replace("config key", "key")) from None
    result.evaluations = _legacy_records(data, where)
    records = data.get("evaluations", {})
    if not isinstance(records, dict):
        raise ResultsError(f"{where}.evaluations must be a mapping, got {records!r}")
    for name, record in records.items():
        try:
            get(name, f"{where}.evaluations key")
        except ConfigError as error:
            raise ResultsError(str(error)) from None
        result.evaluations[name] = parse_record(record, f"{where}.evaluations.{name}")
        if result.evaluations[name].evaluation != name:
            raise ResultsError(f"{where}.evaluations.{name} holds a record of '{result.evaluations[name].evaluation}'")
        check_ranges(result.evaluations[name], f"{where}.evaluations.{name}")
    for name in result.failed:
        if name != "pretrain" and name not in EVALUATIONS:
            raise ResultsError(f"{where}.failed key '{name}' is not a registered evaluation")
    return result


def load_results(paths):
    """ModelResults from results JSON files, with one-line errors."""
    results = []
    for path in map(Path, paths):
        if path.is_dir():
            raise ResultsError(f"results file {path} is a folder; give the JSON files in it (e.g. {path}/*.json)")
        if not path.is_file():
            raise ResultsError(f"results file {path} does not exist; run the evaluation first or drop it")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ResultsError(f"results file {path} is not valid JSON ({error})") from None
        except ValueError as error:  # e.g. an integer of more digits than Python converts
            raise ResultsError(f"results file {path} holds a value no results file has ({str(error)[:80]}); give "
                               "the JSON that the evaluation wrote") from None
        except RecursionError:
            raise ResultsError(f"results file {path} nests too deeply to be a results file; give the JSON that the "
                               "evaluation wrote") from None
        try:
            results.append(parse_result(data))
        except ResultsError as error:
            raise ResultsError(f"results file {path}: {error}") from None
    if not results:
        raise ResultsError("no results given; pass one or more results JSON files")
    return results
