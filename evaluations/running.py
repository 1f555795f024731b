"""One evaluation of one checkpoint with its provenance: what tools/evaluate.py and the pipeline's stages call."""
import dataclasses
import time
from pathlib import Path

from sslt_core.provenance import environment, weights_digest


def settings_dict(checked):
    """The fully resolved settings of a checked evaluation, as JSON data."""
    settings = getattr(checked, "settings", checked)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(settings).items()}


def with_provenance(record, weights, checked, seconds):
    """`record` with the checkpoint's sha256, versions, device, resolved settings and wall time."""
    record.weights, record.checkpoint_sha256 = str(weights.path), weights_digest(weights.path)
    record.settings = settings_dict(checked)
    record.environment = {**environment(record.environment.get("device")), **record.environment}
    record.seconds = round(seconds, 2)
    return record


def run_evaluation(evaluation, weights, data_root, output_dir, checked, context):
    """The evaluation's record, with its provenance (with_provenance)."""
    start = time.time()
    output_dir = None if output_dir is None else Path(output_dir)
    record = evaluation.run(weights, data_root, output_dir, checked, context)  # checks the weights it reads first
    return with_provenance(record, weights, checked, time.time() - start)
