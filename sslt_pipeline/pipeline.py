"""The whole pretrain -> transfer run: what tools/run_pipeline.py executes.

For every method in the config, a random-init baseline and any external checkpoint:
pretrain -> convert to detectron2 -> kNN and linear probe -> detection runs -> results; then the tables and a
report. Each step is a stage of sslt_pipeline/stages.py: skipped when done and unchanged, resumed when interrupted,
re-run with what depends on it when its inputs change.

    OUTPUT/manifest.json                 stage hashes and statuses
    OUTPUT/<model>/<stage>/              each stage's own output (checkpoints, logs, metrics)
    OUTPUT/results/<model>.json          per model, in eval/tables.py's format
    OUTPUT/tables.{md,csv,tex,json}      SimSiam's Tables 4 and 5
    OUTPUT/report.md, OUTPUT/plots/      the report
"""
import pickle
from pathlib import Path

import yaml

from sslt_core.atomic import write_bytes_atomic, write_json_atomic
from sslt_core.errors import DatasetError
from sslt_pipeline.stages import Stage, run_stages

PIPELINE_KEYS = {"data_root", "demo_data", "image_size", "methods", "random_baseline", "external", "knn", "linear",
                 "detection", "eval_workers"}


def load_pipeline_config(path):
    config = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(config) - PIPELINE_KEYS
    if unknown:
        raise DatasetError(f"unknown pipeline config keys {sorted(unknown)} in {path}; valid: "
                           f"{', '.join(sorted(PIPELINE_KEYS))}")
    if "data_root" not in config:
        raise DatasetError(f"{path}: no data_root; set it to the datasets root (e.g. data/demo)")
    config.setdefault("image_size", 224)
    config.setdefault("methods", {})
    config.setdefault("external", {})
    config.setdefault("detection", {})
    config.setdefault("knn", {"k": [20], "temperature": 0.07})
    config.setdefault("linear", {"protocol": "moco", "cached": True})
    config.setdefault("random_baseline", True)
    config.setdefault("eval_workers", 0)
    for name, spec in list(config["methods"].items()) + list(config["detection"].items()):
        if not Path(spec.get("config", "")).is_file():
            raise DatasetError(f"{path}: '{name}' has no config file {spec.get('config')!r}; give the path of a YAML "
                               "under configs/")
    return config


def _file_text(path):
    return Path(path).read_text() if Path(path).is_file() else f"missing file {path}"


def _pretrain_stage(name, spec, config):
    def run(folder, inputs):
        from pretrain.config import load_config
        from pretrain.train import train

        run_config = load_config(spec["config"], list(spec.get("overrides", [])) +
                                 [f"train.data={config['data_root']}"])
        summary = train(run_config, folder, resume=True, progress=True)
        return {"encoder": str(folder / "encoder.pth"), "final": summary}

    return Stage(f"{name}/pretrain", {"config": _file_text(spec["config"]), "overrides": spec.get("overrides", []),
                                      "data_root": str(config["data_root"])}, run)


def _weights(model, inputs):
    """The encoder checkpoint of a model row: its pretraining's export, an external file or 'random'."""
    if model["pretrain"]:
        return inputs[model["pretrain"]]["encoder"]
    return model["external"] or "random"


def _convert(model):
    def run(folder, inputs):
        from sslt_core.checkpoints import read_encoder
        from transfer.convert import detectron2_checkpoint, to_detectron2

        encoder = read_encoder(_weights(model, inputs))
        out = folder / "model.pkl"
        converted = detectron2_checkpoint(to_detectron2(encoder.state_dict), f"ssl-transfer pipeline, {model['name']}")
        write_bytes_atomic(out, pickle.dumps(converted))
        return {"pkl": str(out), "source": encoder.source}

    return run


def _features(config, model, inputs, folder):
    from eval.features import build_encoder, split_features

    weights = _weights(model, inputs)
    encoder, description = build_encoder(weights)
    splits, classes, _ = split_features(encoder, description, weights, config["data_root"], config["image_size"],
                                        folder.parent / "features", num_workers=config["eval_workers"])
    return encoder, splits, classes


def _knn(config, model):
    def run(folder, inputs):
        from eval.knn import accuracy, knn_classify

        _, splits, classes = _features(config, model, inputs, folder)
        (train_x, train_y), (val_x, val_y) = splits["train"], splits["val"]
        ks = list(config["knn"].get("k", [20]))
        rankings = knn_classify(train_x, train_y, val_x, ks, config["knn"].get("temperature", 0.07), len(classes))
        result = {str(k): accuracy(r, val_y) for k, r in rankings.items()}
        write_json_atomic(folder / "knn.json", result)
        return {"top1": result[str(ks[0])]["top1"], "k": ks[0], "all": result}

    return run


def _linear(config, model):
    def run(folder, inputs):
        from eval.linear import PROTOCOLS, adapted, linear_probe, train_transform
        from sslt_core.datasets import image_folder

        settings = config["linear"]
        encoder, splits, classes = _features(config, model, inputs, folder)
        protocol = adapted(PROTOCOLS[settings.get("protocol", "moco")], settings.get("batch_size"),
                           settings.get("epochs"))
        augmented = None if settings.get("cached", True) else image_folder(
            "imagenet", "train", config["data_root"], transform=train_transform(config["image_size"]))
        result, mode = linear_probe(encoder, splits["train"], splits["val"], len(classes), protocol, augmented)
        write_json_atomic(folder / "linear.json", {**result, "mode": mode})
        return {"top1": result["top1"], "top5": result["top5"], "mode": mode}

    return run


def _detection(config, spec, convert_id):
    def run(folder, inputs):
        from transfer.finetune import run_trials

        weights = inputs[convert_id]["pkl"] if convert_id else "random"
        summary = run_trials(spec["config"], weights, folder, trials=spec.get("trials", 1),
                             opts=tuple(str(o) for o in spec.get("opts", [])), data_root=config["data_root"],
                             resume=True, quiet=True)
        return {"mean": summary["mean"], "std": summary["std"]}

    return run


def build_stages(config):
    """(stages in dependency order, model rows): every model's pretrain, convert, kNN, linear and detection."""
    stages, models = [], []
    from pretrain.config import load_config
    from pretrain.train import METHOD_TRAITS

    for name, spec in config["methods"].items():
        stages.append(_pretrain_stage(_slug(name), spec, config))
        run = load_config(spec["config"], spec.get("overrides", []))  # a bad config fails here, before any work
        negatives, momentum = METHOD_TRAITS[run.method]
        models.append({"name": name, "pretrain": stages[-1].id, "external": None, "method": run.method,
                       "batch_size": run.train.batch_size, "epochs": run.train.epochs,
                       "negative_pairs": negatives, "momentum_encoder": momentum})
    if config["random_baseline"]:
        models.append({"name": "random init", "pretrain": None, "external": None})
    for name, path in config["external"].items():
        models.append({"name": name, "pretrain": None, "external": str(path)})
    for model in models:
        name, needs = _slug(model["name"]), (model["pretrain"],) if model["pretrain"] else ()
        weights_spec = {"weights": model["external"] or ("pretrained" if model["pretrain"] else "random")}
        eval_spec = {"data_root": str(config["data_root"]), "image_size": config["image_size"], **weights_spec}
        stages.append(Stage(f"{name}/knn", {**eval_spec, "knn": config["knn"]}, _knn(config, model), needs))
        stages.append(Stage(f"{name}/linear", {**eval_spec, "linear": config["linear"]}, _linear(config, model),
                            needs))
        convert_id = None
        if model["pretrain"] or model["external"]:  # the random baseline trains from detectron2's own init
            stages.append(Stage(f"{name}/convert", weights_spec, _convert(model), needs))
            convert_id = stages[-1].id
        for key, spec in config["detection"].items():
            detection_spec = {"config": _file_text(spec["config"]), "trials": spec.get("trials", 1),
                              "opts": spec.get("opts", []), "data_root": str(config["data_root"]), **weights_spec}
            stages.append(Stage(f"{name}/{key}", detection_spec, _detection(config, spec, convert_id),
                                (convert_id,) if convert_id else ()))
    return stages, models


def _slug(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def model_results(model, entries, config):
    """One model's results in eval/tables.py's format, with the reason of every failed stage."""
    name, slug = model["name"], _slug(model["name"])
    result, failed = {"name": name, "detection": {}}, {}
    if model["pretrain"]:
        result.update({k: model[k] for k in ("method", "batch_size", "epochs", "negative_pairs", "momentum_encoder")})
        if entries[model["pretrain"]]["status"] != "done":
            failed["pretrain"] = entries[model["pretrain"]].get("reason")
    elif not model["external"]:
        result["epochs"] = 0  # the random-init baseline: no pretraining
    for stage in ("knn", "linear"):
        entry = entries[f"{slug}/{stage}"]
        if entry["status"] == "done":
            result[stage] = entry["outputs"]
        else:
            failed[stage] = entry.get("reason")
    for key in config["detection"]:
        entry = entries[f"{slug}/{key}"]
        keys = (key, "coco_det") if key == "coco_instseg" else (key,)  # one Mask R-CNN run gives box and mask AP
        for k in keys:
            if entry["status"] == "done":
                result["detection"][k] = entry["outputs"]
            else:
                failed[k] = entry.get("reason")
    result["failed"] = failed
    return result


def run_pipeline(config_path, output_dir, log=print):
    """Run the whole pipeline; return the exit status (1 when any stage failed)."""
    from eval.tables import make_tables
    from sslt_demo.writer import make_demo_data
    from sslt_pipeline.report import write_report

    config = load_pipeline_config(config_path)
    output_dir = Path(output_dir)
    if config.get("demo_data"):
        demo = config["demo_data"]
        make_demo_data(config["data_root"], seed=demo.get("seed", 0), size_name=demo.get("size", "default"))
    stages, models = build_stages(config)
    entries = run_stages(stages, output_dir, log=log)
    results = [model_results(model, entries, config) for model in models]
    for result in results:
        write_json_atomic(output_dir / "results" / f"{_slug(result['name'])}.json", result)
    for fmt, suffix in (("md", "md"), ("csv", "csv"), ("latex", "tex"), ("json", "json")):
        write_bytes_atomic(output_dir / f"tables.{suffix}", make_tables(results, fmt).encode())
    write_report(output_dir, config, models, entries, results)
    failed = [stage_id for stage_id, entry in entries.items() if entry["status"] != "done"]
    if failed:
        log(f"{len(failed)} stage(s) failed: {', '.join(failed)}; see {output_dir / 'report.md'}")
    return 1 if failed else 0
