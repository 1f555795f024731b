"""The result record of one evaluation of one checkpoint: the number and how it was made.

    {"evaluation": "linear", "protocol": "linear/moco-sgd-lr30-100ep-cached",
     "metrics": {"top1": 68.1, "top5": 88.0}, "std": {"top1": null, ...},
     "trials": [{"seed": 0, "metrics": {"top1": 68.1, "top5": 88.0}}],
     "scored_on": "imagenet/val", "selected_on": null,        # the split any choice (epoch, k, C) was made on
     "weights": "simsiam.pth", "checkpoint_sha256": "...", "global_batch_size": 256, "seconds": 812.4,
     "settings": {...every setting, resolved...}, "environment": {toolkit, git commit, torch, ..., device},
     "details": {...what the evaluation reports beyond its metrics...}}

`metrics` is the mean over the trials and `std` their sample standard deviation (n - 1; null for one trial).
"""
import math
from dataclasses import asdict, dataclass, field

from sslt_core.errors import ResultsError


@dataclass
class EvaluationRecord:
    evaluation: str
    protocol: str
    metrics: dict  # metric -> mean over trials (None: undefined, e.g. AP with nothing to score)
    trials: list  # [{"seed": int or None, "metrics": {...}}]
    scored_on: str
    selected_on: str | None = None
    std: dict = field(default_factory=dict)
    weights: str = ""
    checkpoint_sha256: str = ""
    global_batch_size: int | None = None
    seconds: float | None = None
    settings: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    details: dict = field(default_factory=dict)

    def to_dict(self):
        return asdict(self)

    @property
    def selects_on_test(self):
        return self.selected_on is not None and self.selected_on == self.scored_on


def mean_and_std(values):
    """(mean, sample std) of the defined values; std None below two values, mean None with none."""
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def from_trials(evaluation, protocol, trials, scored_on, **fields):
    """A record whose metrics and std summarise `trials` ([{"seed", "metrics"}]), each metric on its own."""
    names = list(dict.fromkeys(name for trial in trials for name in trial["metrics"]))
    summary = {name: mean_and_std([trial["metrics"].get(name) for trial in trials]) for name in names}
    return EvaluationRecord(evaluation, protocol, metrics={k: m for k, (m, _) in summary.items()},
                            std={k: s for k, (_, s) in summary.items()}, trials=list(trials), scored_on=scored_on,
                            **fields)


def _number(value, where):
    if value is None:
        return None
    try:
        finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:  # an integer beyond any float
        finite = False
    if not finite:
        shown = repr(value) if len(repr(value)) < 40 else f"{repr(value)[:30]}... ({len(repr(value))} characters)"
        raise ResultsError(f"{where} must be a finite number or null, got {shown}")
    return float(value)


def parse_record(data, where):
    """An EvaluationRecord from JSON data, every field of the right type; ResultsError naming the key otherwise."""
    if not isinstance(data, dict):
        raise ResultsError(f"{where} must be a mapping, got {data!r}")
    for key in ("evaluation", "protocol", "scored_on"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ResultsError(f"{where}.{key} must be a non-empty string, got {data.get(key)!r}")
    for key in ("metrics", "std", "settings", "environment", "details"):
        if not isinstance(data.get(key, {}), dict):
            raise ResultsError(f"{where}.{key} must be a mapping, got {data.get(key)!r}")
    if not isinstance(data.get("trials"), list) or not data["trials"]:
        raise ResultsError(f"{where}.trials must be a non-empty list of {{seed, metrics}}, got {data.get('trials')!r}")
    trials = []
    for number, trial in enumerate(data["trials"]):
        at = f"{where}.trials[{number}]"
        if not isinstance(trial, dict) or not isinstance(trial.get("metrics"), dict):
            raise ResultsError(f"{at} must be a mapping with 'metrics', got {trial!r}")
        seed = trial.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ResultsError(f"{at}.seed must be an integer or null, got {seed!r}")
        trials.append({**trial, "seed": seed, "metrics": {str(k): _number(v, f"{at}.metrics.{k}")
                                                          for k, v in trial["metrics"].items()}})
    for key in ("selected_on",):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ResultsError(f"{where}.{key} must be a string or null, got {data[key]!r}")
    batch = data.get("global_batch_size")
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise ResultsError(f"{where}.global_batch_size must be a positive integer or null, got {batch!r}")
    known = set(EvaluationRecord.__dataclass_fields__)
    record = EvaluationRecord(**{k: v for k, v in data.items() if k in known and k != "trials"}, trials=trials)
    record.metrics = {str(k): _number(v, f"{where}.metrics.{k}") for k, v in record.metrics.items()}
    record.std = {str(k): _number(v, f"{where}.std.{k}") for k, v in record.std.items()}
    record.seconds = _number(record.seconds, f"{where}.seconds")
    for text in ("weights", "checkpoint_sha256"):
        if not isinstance(getattr(record, text), str):
            raise ResultsError(f"{where}.{text} must be a string, got {getattr(record, text)!r}")
    return record
