"""Typed result records: what the pipeline writes per model and what the tables read (one JSON file per model).

    {"name": "SimSiam", "method": "simsiam", "batch_size": 256, "negative_pairs": false,
     "momentum_encoder": false, "epochs": 100,
     "linear": {"top1": 68.1, "top5": 88.0}, "knn": {"top1": 60.2},
     "label_free": {"rankme": 1520.3, "alpha": 0.91, "alignment": 0.52, "uniformity": -3.4, "samples": 25600},
     "detection": {"voc07": <train_det metrics.json>, "voc0712": ..., "coco_det": ..., "coco_instseg": ...},
     "failed": {"linear": "reason", ...}}

Every field but `name` is optional. A detection entry is train_det's metrics.json as it is: its `mean` and `std`
({task: {metric: value}}) are read, its other keys (trials, config, weights) are left aside, as are the extra
keys of the kNN and linear outputs (k, mode, ...). A value of the wrong type fails with one line naming the file
and the key.
"""
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from sslt_core.config import Range, check_value, fields_of
from sslt_core.errors import ConfigError, ResultsError

# The transfer tasks of SimSiam's Table 5, as the pipeline's detection keys.
DetectionKey = Literal["voc07", "voc0712", "coco_det", "coco_instseg"]
DETECTION_KEYS = DetectionKey.__args__
Metrics = dict[str, dict[str, float | None]]  # {task: {metric: value}}, e.g. {"bbox": {"AP50": 77.3}}


Percent = Annotated[float, Range(min=0, max=100)]


@dataclass
class Accuracy:
    top1: Percent
    top5: Percent | None = None


@dataclass
class LabelFree:  # eval/label_free.py: RankMe etc. of the backbone, no labels read
    rankme: Annotated[float, Range(min=0)]
    alpha: float | None = None
    alignment: Annotated[float, Range(min=0, max=4)] | None = None
    uniformity: Annotated[float, Range(max=0)] | None = None
    samples: int | None = None


@dataclass
class DetectionResult:
    mean: Metrics
    std: Metrics = field(default_factory=dict)


@dataclass
class ModelResult:
    name: str
    method: str | None = None
    batch_size: int | None = None
    epochs: int | None = None  # the pretraining budget; 0 for random init; None when unknown (a checkpoint)
    negative_pairs: bool | None = None
    momentum_encoder: bool | None = None
    linear: Accuracy | None = None
    knn: Accuracy | None = None
    label_free: LabelFree | None = None
    detection: dict[DetectionKey, DetectionResult] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # stage -> reason

    def to_dict(self):
        return dataclasses.asdict(self)


def _only_known(cls, value, where):
    """The keys of `value` that `cls` has (records read other tools' JSON, which holds more)."""
    if not isinstance(value, dict):
        raise ResultsError(f"{where} must be a mapping, got {value!r}")
    return {k: v for k, v in value.items() if k in fields_of(cls)}


def parse_result(data, where="results"):
    """A ModelResult from JSON data; ResultsError naming the key on a wrong shape or type."""
    data = dict(_only_known(ModelResult, data, where))
    if "name" not in data:
        raise ResultsError(f"{where} has no 'name'; see eval/results.py for the format")
    try:
        for key, kind in (("linear", Accuracy), ("knn", Accuracy), ("label_free", LabelFree)):
            if data.get(key) is not None:
                data[key] = _only_known(kind, data[key], f"{where}.{key}")
        if "detection" in data:
            entries = data["detection"] or {}
            if not isinstance(entries, dict):
                raise ResultsError(f"{where}.detection must be a mapping, got {entries!r}")
            data["detection"] = {k: _only_known(DetectionResult, v, f"{where}.detection.{k}")
                                 for k, v in entries.items()}
        result = check_value(data, ModelResult, where)
    except ConfigError as error:
        raise ResultsError(str(error).replace("config key", "key")) from None
    for key, entry in result.detection.items():  # COCO-style AP values are percentages, as the accuracies
        for part in ("mean", "std"):
            for task, metrics in getattr(entry, part).items():
                for metric, value in metrics.items():
                    if value is not None and not (math.isfinite(value) and 0 <= value <= 100):
                        raise ResultsError(f"{where}.detection.{key}.{part}.{task}.{metric} must be a percentage "
                                           f"in [0, 100] or null, got {value!r}")
    return result


def load_results(paths):
    """ModelResults from results JSON files, with one-line errors."""
    results = []
    for path in map(Path, paths):
        if not path.is_file():
            raise ResultsError(f"results file {path} does not exist; run the evaluation first or drop it")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ResultsError(f"results file {path} is not valid JSON ({error})") from None
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
