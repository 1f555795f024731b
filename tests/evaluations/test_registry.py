"""Every registered evaluation, picked up from the registry (no list here to edit): run on the generated demo data
with its demo settings, its record checked (provenance against independent sources: hashlib, torch, git) and
its table columns filled."""
import hashlib
import json
import subprocess

import pytest
import torch
import torchvision

import evaluations  # noqa: F401
from evaluations.record import parse_record
from evaluations.registry import EVALUATIONS, Context, Weights
from evaluations.results import ModelResult, parse_result
from evaluations.running import run_evaluation
from evaluations.tables import build_table, make_tables
from sslt_core.config import build
from tests.conftest import REPO

FEATURE = [n for n, e in EVALUATIONS.items() if not e.detectron2_weights]
DETECTION = [n for n, e in EVALUATIONS.items() if e.detectron2_weights]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def _run(name, weights, data_root, folder):
    evaluation = EVALUATIONS[name]
    settings = build(evaluation.settings, dict(evaluation.demo), f"{name} demo")
    checked = evaluation.prepare(settings)
    context = Context(cache_dir=folder / "cache", progress=False, quiet=True)
    return run_evaluation(evaluation, weights, data_root, folder / "out", checked, context)


def _check(name, record, weights_sha256):
    evaluation = EVALUATIONS[name]
    again = parse_record(json.loads(json.dumps(record.to_dict())), name)  # it survives JSON and the reader
    assert again.evaluation == name and again.protocol == record.protocol
    assert record.protocol.split("/")[0] in (name, "det") and len(record.protocol) > len(name) + 2
    assert record.checkpoint_sha256 == weights_sha256
    assert record.trials and all("metrics" in t and "seed" in t for t in record.trials)
    for metric, mean in record.metrics.items():  # the mean over the trials, written out
        values = [t["metrics"][metric] for t in record.trials if t["metrics"].get(metric) is not None]
        assert mean == (pytest.approx(sum(values) / len(values)) if values else None)
    env = record.environment
    assert env["torch"] == torch.__version__ and env["torchvision"] == torchvision.__version__.split("+")[0]
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    assert env["git_commit"].split("+")[0] == commit.strip()
    assert env["device"] in ("cpu", "cuda") and env["device_count"] >= 1 and record.seconds > 0
    assert record.scored_on and set(record.settings) == set(evaluation.settings.__dataclass_fields__)
    result = parse_result(ModelResult(name="m", epochs=1, evaluations={name: record}).to_dict())
    for column in evaluation.columns:  # each column it registers is in its table, holding its metric
        columns, rows, protocols = build_table(column.table, [result])
        label = next(c for c in columns if c == column.label or c.startswith(column.label + " "))
        cell = rows[0][label]
        expected = record.metrics.get(column.metric)
        assert (cell.mean is None) if expected is None else cell.mean == pytest.approx(expected)
        # a column the demo leaves empty (a dataset it does not list) says no protocol
        assert protocols.get(label, set()) == ({record.protocol} if expected is not None else set())
    assert make_tables([result], "md")


@pytest.mark.parametrize("name", FEATURE)
def test_every_feature_evaluation_runs_and_fills_its_columns(name, demo_root, checkpoint, tmp_path):
    record = _run(name, Weights(str(checkpoint)), demo_root, tmp_path)
    _check(name, record, hashlib.sha256(checkpoint.read_bytes()).hexdigest())


@pytest.mark.parametrize("name", DETECTION)
def test_every_detection_task_runs_and_fills_its_columns(name, demo_root, tmp_path):
    record = _run(name, Weights("random"), demo_root, tmp_path)
    _check(name, record, "random")
    assert len(record.trials) == 1 and record.trials[0]["seed"] == 0
    assert record.global_batch_size == 2  # the demo opts' SOLVER.IMS_PER_BATCH
    import detectron2

    assert record.environment["detectron2"] == detectron2.__version__
