"""The whole pretrain -> transfer run: what tools/run_pipeline.py executes.

For every method in the config, a random-init baseline and any external checkpoint: pretrain -> convert to
detectron2 (where an evaluation reads detectron2 weights) -> every evaluation of the config (evaluations/, by
name) -> results; then the tables and a report. Each step is a stage of sslt_pipeline/stages.py: skipped when done
and unchanged, resumed when interrupted, re-run with what depends on it when its inputs change. A stage's spec
holds what its result depends on, by content: the evaluation's resolved settings, the texts of the files it
reads (a detection config with its whole _BASE_ chain), overrides, the data root, an external checkpoint's
sha256, and the fingerprint of every split it reads (sslt_pipeline/fingerprints.py).

    OUTPUT/manifest.json                 stage hashes and statuses
    OUTPUT/<model>/<stage>/              each stage's own output (checkpoints, logs, metrics, record.json)
    OUTPUT/results/<model>.json          per model, evaluations/results.py's ModelResult
    OUTPUT/tables.{md,csv,tex,json}      the tables (evaluations/tables.py)
    OUTPUT/report.md, OUTPUT/plots/      the report
    OUTPUT/.lock                         held while the run lives
"""
import pickle
from pathlib import Path

from evaluations.bundle import write_pipeline_bundles
from evaluations.record import parse_record
from evaluations.registry import EVALUATIONS, Context, Weights
from evaluations.results import ModelResult
from evaluations.running import run_evaluation, settings_dict
from evaluations.tables import make_tables
from sslt_core import cluster
from sslt_core.atomic import check_output_folder, write_bytes_atomic, write_json_atomic
from sslt_core.checkpoints import read_encoder
from sslt_core.datasets import dataset_path
from sslt_core.errors import ConfigError
from sslt_core.lock import OutputLock
from sslt_demo.writer import make_demo_data
from sslt_pipeline.config import default_resources, folder_name, load_pipeline_config
from sslt_pipeline.fingerprints import data_fingerprints
from sslt_pipeline.models import build_models
from sslt_pipeline.report import write_report
from sslt_pipeline.stages import Stage, StageJob, run_stages
from transfer.convert import detectron2_checkpoint, to_detectron2

RECORD_FILE = "record.json"  # in each evaluation stage's folder: its EvaluationRecord


def _convert(model):
    def run(folder, inputs):
        weights = model.weights(inputs)
        encoder = read_encoder(weights.path, weights.source, trust=weights.trust)
        converted = detectron2_checkpoint(to_detectron2(encoder.state_dict), f"ssl-transfer pipeline, {model.name}")
        write_bytes_atomic(folder / "model.pkl", pickle.dumps(converted))
        return {"pkl": str(folder / "model.pkl"), "source": encoder.source}

    return run


def _evaluate(name, checked, model, convert_id, config, num_gpus, part=False):
    """The stage function of evaluation `name` (or of one of its parts) for `model`: its record in the stage
    folder and in the outputs."""
    evaluation = EVALUATIONS[name]

    def run(folder, inputs):
        if evaluation.detectron2_weights:  # the converted .pkl (its only need), or detectron2's own random init
            weights = Weights(inputs[convert_id]["pkl"] if convert_id else "random")
        else:
            weights = model.weights(inputs)
        model_folder = folder.parent.parent if part else folder.parent  # OUTPUT/<model>/<evaluation>[/<part>]
        context = Context(cache_dir=model_folder / "features", progress=True, quiet=True, resume=True,
                          num_gpus=num_gpus if evaluation.detectron2_weights else 1)
        record = run_evaluation(evaluation, weights, config.data_root, folder, checked, context)
        write_json_atomic(folder / RECORD_FILE, record.to_dict())
        return {"record": record.to_dict()}

    return run


def build_stages(config, checked, detection_gpus=0):
    """(stages in dependency order, model rows): every model's pretraining, conversion and evaluations.
    `detection_gpus` > 1: each detection stage spreads its trials over that many processes (detectron2's launch)."""
    models, stages = build_models(config)
    files = {name: EVALUATIONS[name].files(c) for name, c in checked.items()}
    for model in models:
        needs = (model.pretrain,) if model.pretrain else ()
        weights = model.weights_spec()
        convert_id = None
        if any(EVALUATIONS[n].detectron2_weights for n in checked) and (model.pretrain or model.external):
            stages.append(Stage(f"{model.folder}/convert", weights, _convert(model), needs, kind="convert"))
            convert_id = stages[-1].id  # the random baseline trains from detectron2's own init
        for name, settings in checked.items():
            evaluation = EVALUATIONS[name]
            stage_needs = ((convert_id,) if convert_id else ()) if evaluation.detectron2_weights else needs
            parts = evaluation.parts(settings) if evaluation.parts else {None: settings}
            for part, part_settings in parts.items():  # e.g. one stage per dataset of the linear transfer
                spec = {"evaluation": name, "settings": settings_dict(part_settings), "files": files[name],
                        "data_root": str(config.data_root), "data": evaluation.reads(part_settings), **weights}
                stages.append(Stage(f"{model.folder}/{name}" + (f"/{part}" if part else ""), spec,
                                    _evaluate(name, part_settings, model, convert_id, config, detection_gpus,
                                              part=part is not None), stage_needs, kind=evaluation.resource_kind))
    return stages, models


def _merged(name, settings, records):
    """The record of an evaluation run in parts: the evaluation's merge, with the parts' provenance."""
    record = EVALUATIONS[name].merge(records, settings)
    first = records[0]
    record.weights, record.checkpoint_sha256, record.environment = first.weights, first.checkpoint_sha256, \
        first.environment
    record.settings = settings_dict(settings)
    record.seconds = round(sum(r.seconds or 0 for r in records), 2)
    return record


def model_result(model, entries, checked):
    """One model's ModelResult, with the reason of every failed stage."""
    result, failed = ModelResult(name=model.name, **model.traits), {}
    if model.pretrain and entries[model.pretrain]["status"] != "done":
        failed["pretrain"] = entries[model.pretrain].get("reason")
    for name, settings in checked.items():
        evaluation = EVALUATIONS[name]
        ids = [f"{model.folder}/{name}" + (f"/{part}" if part else "")
               for part in (evaluation.parts(settings) if evaluation.parts else (None,))]
        broken = [entries[i] for i in ids if entries[i]["status"] != "done"]
        if broken:
            failed[name] = broken[0].get("reason")
            continue
        records = [parse_record(entries[i]["outputs"]["record"], i) for i in ids]
        result.evaluations[name] = _merged(name, settings, records) if evaluation.parts else records[0]
    result.failed = {k: v or "failed" for k, v in failed.items()}
    return result


def job_launcher(config, launcher):
    """launch(stage, folder, inputs, job_folder) for run_stages: the stage as a job with its kind's resources."""
    kinds = default_resources()

    def launch(stage, folder, inputs, job_folder):
        if stage.kind not in kinds:  # never a fallback: a stage without a known kind would get another's GPUs
            raise ConfigError(f"stage {stage.id} has kind {stage.kind!r}, not one of {', '.join(kinds)}")
        resources = config.resources.get(stage.kind, kinds[stage.kind])
        ex = cluster.executor(launcher, job_folder, resources, name=stage.id.replace("/", "-"),
                              one_task=stage.kind != "pretrain")  # detection runs detectron2's own launch
        job = cluster.submit(ex, StageJob(stage.run, str(folder), inputs))
        return launcher, ex.folder, job.job_id

    launch.launcher = launcher
    return launch


def check_data(config, checked):
    """The datasets the stages read, checked against their layouts before any work."""
    dataset_path("imagenet", config.data_root)
    detection = sorted({d for name, c in checked.items() if EVALUATIONS[name].detectron2_weights
                        for d in c.recipe.datasets})
    if detection:
        from transfer.detection import check_detection_sets

        check_detection_sets(tuple(detection), config.data_root)


def run_pipeline(config_path, output_dir, log=print, launcher="local", max_parallel=1, poll_seconds=None):
    """Run the whole pipeline in `output_dir`, which it locks; return the exit status (1 when a stage failed).
    launcher "local": every stage in this process, one after another; "slurm" / "submitit-local": every stage as a
    job as soon as the stages it reads are done, at most `max_parallel` jobs at a time, their states looked at every
    `poll_seconds` (None: the launcher's default, stage_jobs.POLL_SECONDS)."""
    config, checked = load_pipeline_config(config_path)
    cluster.check_launcher(launcher)
    output_dir = Path(output_dir)
    jobs = launcher != "local"
    kinds = default_resources()
    stages, models = build_stages(config, checked, detection_gpus=config.resources.get(
        "detection", kinds["detection"]).gpus_per_node if jobs else 0)
    unknown = [stage.id for stage in stages if stage.kind not in kinds]
    if unknown:  # never a fallback to another kind's resources
        raise ConfigError(f"stages {unknown} have no known kind ({', '.join(kinds)})")
    if not config.demo_data:
        check_data(config, checked)
    with OutputLock(output_dir) as lock:
        if lock.note():
            log(lock.note())
        for folder in ("results", "plots"):  # written at the end: a planted link is refused before any stage runs
            check_output_folder(output_dir / folder)
        if config.demo_data:
            make_demo_data(config.data_root, seed=config.demo_data.seed, size_name=config.demo_data.size)
            check_data(config, checked)
        data_fingerprints(stages, config.data_root)  # the splits each stage reads, as they are now
        entries = run_stages(stages, output_dir, log=log, launch=job_launcher(config, launcher) if jobs else None,
                             max_parallel=max_parallel, poll_seconds=poll_seconds)
        results = [model_result(model, entries, checked) for model in models]
        for result in results:
            write_json_atomic(output_dir / "results" / f"{folder_name(result.name)}.json", result.to_dict())
        for fmt, suffix in (("md", "md"), ("csv", "csv"), ("latex", "tex"), ("json", "json")):
            write_bytes_atomic(output_dir / f"tables.{suffix}", make_tables(results, fmt, mix_protocols=True).encode())
        write_report(output_dir, config, models, entries, results)
        write_pipeline_bundles(output_dir)  # OUTPUT/<model>/bundle/: results.json, CSVs, model card, SHA256SUMS
    failed = [stage_id for stage_id, entry in entries.items() if entry["status"] == "failed"]
    skipped = [stage_id for stage_id, entry in entries.items() if entry["status"] == "skipped"]
    if failed:
        log(f"{len(failed)} stage(s) failed: {', '.join(failed)}"
            + (f"; {len(skipped)} skipped as they need those: {', '.join(skipped)}" if skipped else "")
            + f"; see {output_dir / 'report.md'}")
    return 1 if failed or skipped else 0
