"""The whole pretrain -> transfer run: what tools/run_pipeline.py executes.

For every method in the config, a random-init baseline and any external checkpoint:
pretrain -> convert to detectron2 -> kNN and linear probe -> detection runs -> results; then the tables and a
report. Each step is a stage of sslt_pipeline/stages.py: skipped when done and unchanged, resumed when
interrupted, re-run with what depends on it when its inputs change. A stage's spec holds what its result depends
on, by content: config texts (a detection config with its whole _BASE_ chain), overrides, the data root, an
external checkpoint's sha256, and the fingerprint of every split it reads (data_fingerprints: the images' names,
labels, sizes and mtimes and a sampled content hash, as the feature caches key them; a split rewritten in place
re-runs what reads it).

    OUTPUT/manifest.json                 stage hashes and statuses
    OUTPUT/<model>/<stage>/              each stage's own output (checkpoints, logs, metrics)
    OUTPUT/results/<model>.json          per model, eval/results.py's ModelResult
    OUTPUT/tables.{md,csv,tex,json}      SimSiam's Tables 4 and 5
    OUTPUT/report.md, OUTPUT/plots/      the report
    OUTPUT/.lock                         held while the run lives
"""
import json
import pickle
from dataclasses import asdict
from pathlib import Path

from eval.features import build_encoder, split_features
from eval.knn import accuracy, knn_classify
from eval.linear import PROTOCOLS, adapted, linear_probe, train_transform
from eval.results import Accuracy, DetectionResult, ModelResult
from eval.tables import make_tables
from pretrain.config import load_config
from pretrain.methods import METHODS
from pretrain.train import train
from sslt_core import cluster
from sslt_core.atomic import check_output_folder, write_bytes_atomic, write_json_atomic
from sslt_core.checkpoints import read_encoder
from sslt_core.datasets import dataset_path, image_folder
from sslt_core.errors import CheckpointError, ConfigError
from sslt_core.fingerprint import file_digest, samples_fingerprint
from sslt_core.listing import files_under
from sslt_core.lock import OutputLock
from sslt_core.safe_load import TRUST_FLAG
from sslt_demo.writer import make_demo_data
from sslt_pipeline.config import DEFAULT_RESOURCES, RANDOM_BASELINE, folder_name, load_pipeline_config
from sslt_pipeline.report import write_report
from sslt_pipeline.stages import Stage, StageJob, run_stages
from transfer.convert import detectron2_checkpoint, to_detectron2
from transfer.detection import DETECTION_SETS, check_detection_sets
from transfer.finetune import build_config, config_chain, run_trials


def _texts(paths):
    return {str(p): Path(p).read_text() for p in paths}


class Model:
    """A row of the tables: a pretraining stage's export, an external checkpoint, or random init."""

    def __init__(self, name, pretrain=None, external=None, traits=None):
        self.name, self.folder = name, folder_name(name)
        self.pretrain, self.external, self.traits = pretrain, external, traits or {}

    def weights(self, inputs):
        if self.pretrain:
            return inputs[self.pretrain]["encoder"]
        return self.external.path if self.external else "random"

    def weights_spec(self):
        """What the model's weights are, by content: its pretraining stage (whose hash the spec carries through
        `needs`), or an external file's sha256, or random init."""
        if self.pretrain:
            return {"weights": "pretrained"}
        if self.external:
            return {"weights": "external", "sha256": file_digest(self.external.path), "source": self.external.source}
        return {"weights": "random"}


# The splits a stage reads (its spec's "data", fingerprinted by data_fingerprints once the data is there):
# "imagenet/<split>", or a detection layout (a key of sslt_core.datasets.LAYOUTS: every file of that dataset).
EVALUATION_SPLITS = ["imagenet/train", "imagenet/val"]


def _pretrain_stage(name, entry, run_config, config):
    def run(folder, inputs):
        run_config = load_config(entry.config, list(entry.overrides), data=config.data_root)
        summary = train(run_config, folder, resume=True, progress=True)
        return {"encoder": str(folder / "encoder.safetensors"), "final": summary}

    reads = EVALUATION_SPLITS if run_config.train.knn_every else ["imagenet/train"]  # the kNN monitor reads val
    return Stage(f"{folder_name(name)}/pretrain", {"config": _texts([entry.config]), "overrides": entry.overrides,
                                                   "data_root": str(config.data_root), "data": reads}, run)


def _convert(model):
    def run(folder, inputs):
        trust = bool(model.external and model.external.trust)
        source = model.external.source if model.external else "auto"
        encoder = read_encoder(model.weights(inputs), source, trust=trust)
        converted = detectron2_checkpoint(to_detectron2(encoder.state_dict), f"ssl-transfer pipeline, {model.name}")
        write_bytes_atomic(folder / "model.pkl", pickle.dumps(converted))
        return {"pkl": str(folder / "model.pkl"), "source": encoder.source}

    return run


def _features(config, model, inputs, folder):
    weights = model.weights(inputs)
    encoder, description = build_encoder(weights, trust=bool(model.external and model.external.trust))
    splits, classes, _ = split_features(encoder, description, weights, config.data_root, config.image_size,
                                        folder.parent / "features", num_workers=config.eval_workers)
    return encoder, splits, classes


def _knn(config, model):
    def run(folder, inputs):
        _, splits, classes = _features(config, model, inputs, folder)
        (train_x, train_y), (val_x, val_y) = splits["train"], splits["val"]
        ks = list(config.knn.k)
        rankings = knn_classify(train_x, train_y, val_x, ks, config.knn.temperature, len(classes))
        result = {str(k): accuracy(r, val_y) for k, r in rankings.items()}
        write_json_atomic(folder / "knn.json", result)
        return {"top1": result[str(ks[0])]["top1"], "top5": result[str(ks[0])]["top5"], "k": ks[0], "all": result}

    return run


def _linear(config, model):
    def run(folder, inputs):
        settings = config.linear
        encoder, splits, classes = _features(config, model, inputs, folder)
        protocol = adapted(PROTOCOLS[settings.protocol], settings.batch_size, settings.epochs)
        augmented = None if settings.cached else image_folder(
            "imagenet", "train", config.data_root, transform=train_transform(config.image_size))
        result, mode = linear_probe(encoder, splits["train"], splits["val"], len(classes), protocol, augmented)
        write_json_atomic(folder / "linear.json", {**result, "mode": mode})
        return {"top1": result["top1"], "top5": result["top5"], "mode": mode}

    return run


def _detection_trials(entry, weights, folder, data_root):
    return run_trials(entry.config, weights, folder, trials=entry.trials, opts=tuple(str(o) for o in entry.opts),
                      data_root=data_root, resume=True, quiet=True)


def _detection(config, entry, convert_id, num_gpus=0):
    def run(folder, inputs):
        weights = inputs[convert_id]["pkl"] if convert_id else "random"
        if num_gpus > 1:  # in a job of one task: detectron2 starts one process per GPU
            from detectron2.engine import launch  # after transfer/, which quiets detectron2's import-time warnings

            launch(_detection_trials, num_gpus, dist_url="auto", args=(entry, weights, folder, config.data_root))
            summary = json.loads((folder / "metrics.json").read_text())
        else:
            summary = _detection_trials(entry, weights, folder, config.data_root)
        return {"mean": summary["mean"], "std": summary["std"]}

    return run


def build_models(config):
    """The table's rows, with each pretraining config checked (a bad one fails here, before any work)."""
    models, stages = [], []
    for name, entry in config.methods.items():
        run = load_config(entry.config, entry.overrides)
        stages.append(_pretrain_stage(name, entry, run, config))
        method = METHODS[run.method][1]
        models.append(Model(name, pretrain=stages[-1].id, traits={
            "method": run.method, "batch_size": run.train.batch_size, "epochs": run.train.epochs,
            "negative_pairs": method.negative_pairs, "momentum_encoder": method.momentum_encoder}))
    if config.random_baseline:
        models.append(Model(RANDOM_BASELINE, traits={"epochs": 0}))  # no pretraining
    for name, entry in config.external.items():
        try:  # read now (without running code, finite weights, a known layout): a bad file fails before any work
            read_encoder(entry.path, entry.source, trust=entry.trust)
        except CheckpointError as error:
            message = str(error).replace(f"pass {TRUST_FLAG}", f"set external.{name}.trust: true in the config")
            raise ConfigError(f"pipeline: external '{name}': {message}") from None
        models.append(Model(name, external=entry))
    return models, stages


def entry_datasets(entry):
    """The detectron2 datasets a detection entry reads; a mistyped detection config or override fails here."""
    cfg, _ = build_config(entry.config, [str(o) for o in entry.opts], "", Path("unused"), 0, 1)
    return tuple(sorted(set(cfg.DATASETS.TRAIN + cfg.DATASETS.TEST)))


def detection_datasets(config):
    """The datasets every detection entry reads; a mistyped detection config or override fails here, before any
    work."""
    return tuple(sorted({name for entry in config.detection.values() for name in entry_datasets(entry)}))


def split_fingerprint(split, data_root):
    """The fingerprint of a split a stage reads (see EVALUATION_SPLITS), as it is now; "absent" when it is not
    there."""
    if split.startswith("imagenet/"):
        folder = dataset_path("imagenet", data_root) / split.split("/", 1)[1]
        return samples_fingerprint(image_folder("imagenet", folder.name, data_root).samples) if folder.is_dir() \
            else "absent"
    return samples_fingerprint([(path, "") for path in files_under(dataset_path(split, data_root))])


def data_fingerprints(stages, data_root):
    """Each stage's spec["data"] (the splits it reads) replaced by {split: its fingerprint now}, each split
    fingerprinted once."""
    known = {}
    for stage in stages:
        for split in stage.spec.get("data", ()):
            if split not in known:
                known[split] = split_fingerprint(split, data_root)
        stage.spec["data"] = {split: known[split] for split in stage.spec.get("data", ())}


def check_data(config, detection_sets):
    """The datasets the stages read, checked against their layouts before any work."""
    dataset_path("imagenet", config.data_root)
    check_detection_sets(detection_sets, config.data_root)


def build_stages(config, detection_gpus=0):
    """(stages in dependency order, model rows): every model's pretrain, convert, kNN, linear and detection.
    `detection_gpus` > 1: each detection stage spreads its trials over that many processes (detectron2's launch)."""
    models, stages = build_models(config)
    reads = {key: sorted({DETECTION_SETS[n].layout if n in DETECTION_SETS else n for n in entry_datasets(entry)})
             for key, entry in config.detection.items()}
    for model in models:
        needs = (model.pretrain,) if model.pretrain else ()
        weights = model.weights_spec()
        evaluation = {"data_root": str(config.data_root), "image_size": config.image_size, "data": EVALUATION_SPLITS,
                      **weights}
        stages.append(Stage(f"{model.folder}/knn", {**evaluation, "knn": asdict(config.knn)}, _knn(config, model),
                            needs))
        stages.append(Stage(f"{model.folder}/linear", {**evaluation, "linear": asdict(config.linear)},
                            _linear(config, model), needs))
        convert_id = None
        if model.pretrain or model.external:  # the random baseline trains from detectron2's own init
            stages.append(Stage(f"{model.folder}/convert", weights, _convert(model), needs))
            convert_id = stages[-1].id
        for key, entry in config.detection.items():
            spec = {"config": _texts(config_chain(entry.config)), "trials": entry.trials, "opts": entry.opts,
                    "data_root": str(config.data_root), "data": reads[key], **weights}
            stages.append(Stage(f"{model.folder}/{key}", spec, _detection(config, entry, convert_id, detection_gpus),
                                (convert_id,) if convert_id else ()))
    return stages, models


def model_result(model, entries, config):
    """One model's ModelResult, with the reason of every failed stage."""
    result, failed = ModelResult(name=model.name, **model.traits), {}
    if model.pretrain and entries[model.pretrain]["status"] != "done":
        failed["pretrain"] = entries[model.pretrain].get("reason")
    for stage in ("knn", "linear"):
        entry = entries[f"{model.folder}/{stage}"]
        if entry["status"] == "done":
            setattr(result, stage, Accuracy(entry["outputs"]["top1"], entry["outputs"].get("top5")))
        else:
            failed[stage] = entry.get("reason")
    for key in config.detection:
        entry = entries[f"{model.folder}/{key}"]
        keys = (key, "coco_det") if key == "coco_instseg" else (key,)  # one Mask R-CNN run gives box and mask AP
        for k in keys:
            if entry["status"] == "done":
                result.detection[k] = DetectionResult(entry["outputs"]["mean"], entry["outputs"]["std"])
            else:
                failed[k] = entry.get("reason")
    result.failed = {k: v or "failed" for k, v in failed.items()}
    return result


def job_launcher(config, launcher):
    """launch(stage, folder, inputs, job_folder) for run_stages: the stage as a job with its kind's resources."""

    def launch(stage, folder, inputs, job_folder):
        resources = config.resources.get(stage.kind, DEFAULT_RESOURCES[stage.kind])
        ex = cluster.executor(launcher, job_folder, resources, name=stage.id.replace("/", "-"),
                              one_task=stage.kind != "pretrain")  # detection runs detectron2's own launch
        job = cluster.submit(ex, StageJob(stage.run, str(folder), inputs))
        return launcher, ex.folder, job.job_id

    launch.launcher = launcher
    return launch


def run_pipeline(config_path, output_dir, log=print, launcher="local", max_parallel=1):
    """Run the whole pipeline in `output_dir`, which it locks; return the exit status (1 when a stage failed).
    launcher "local": every stage in this process, one after another; "slurm" / "submitit-local": every stage as a
    job as soon as the stages it reads are done, at most `max_parallel` jobs at a time."""
    config = load_pipeline_config(config_path)
    cluster.check_launcher(launcher)
    output_dir = Path(output_dir)
    jobs = launcher != "local"
    detection_sets = detection_datasets(config)
    stages, models = build_stages(config, detection_gpus=config.resources.get(
        "detection", DEFAULT_RESOURCES["detection"]).gpus_per_node if jobs else 0)
    if not config.demo_data:
        check_data(config, detection_sets)
    with OutputLock(output_dir) as lock:
        if lock.note():
            log(lock.note())
        for folder in ("results", "plots"):  # written at the end: a planted link is refused before any stage runs
            check_output_folder(output_dir / folder)
        if config.demo_data:
            make_demo_data(config.data_root, seed=config.demo_data.seed, size_name=config.demo_data.size)
            check_data(config, detection_sets)
        data_fingerprints(stages, config.data_root)  # the splits each stage reads, as they are now
        entries = run_stages(stages, output_dir, log=log, launch=job_launcher(config, launcher) if jobs else None,
                             max_parallel=max_parallel)
        results = [model_result(model, entries, config) for model in models]
        for result in results:
            write_json_atomic(output_dir / "results" / f"{folder_name(result.name)}.json", result.to_dict())
        for fmt, suffix in (("md", "md"), ("csv", "csv"), ("latex", "tex"), ("json", "json")):
            write_bytes_atomic(output_dir / f"tables.{suffix}", make_tables(results, fmt).encode())
        write_report(output_dir, config, models, entries, results)
    failed = [stage_id for stage_id, entry in entries.items() if entry["status"] == "failed"]
    skipped = [stage_id for stage_id, entry in entries.items() if entry["status"] == "skipped"]
    if failed:
        log(f"{len(failed)} stage(s) failed: {', '.join(failed)}"
            + (f"; {len(skipped)} skipped as they need those: {', '.join(skipped)}" if skipped else "")
            + f"; see {output_dir / 'report.md'}")
    return 1 if failed or skipped else 0
