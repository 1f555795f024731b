"""A model's results bundle: a folder that a model hub or a spreadsheet reads, written next to the weights.

    OUT/encoder.safetensors       the pretrained encoder (copied; absent for random init or an external checkpoint)
    OUT/results.json              the model's ModelResult (evaluations/results.py): every record with its provenance,
                                  plus "bundle": the pretraining recipe, its time, known deviations, the comparison
    OUT/results-<evaluation>.csv  one flat row per model (timm's results-*.csv): files of two runs concatenate
    OUT/README.md                 a Hugging Face model card: `model-index` front matter (one entry per evaluation)
                                  and prose from the records (method, recipe, hardware, time, known deviations)
    OUT/SHA256SUMS                sha256 of every other file, `sha256sum -c` format

Everything is built in memory and checked before the first write; each file is written atomically. A folder that
holds files and no SHA256SUMS (not a bundle) is refused, as is a link anywhere in it.
"""
import csv
import dataclasses
import hashlib
import io
import json
import shutil
from pathlib import Path

import yaml

from evaluations.comparison import compare, summary_lines
from evaluations.record import parse_record
from evaluations.references import EXACT
from evaluations.results import ModelResult, load_results, parse_result
from sslt_core.atomic import atomic_path, check_output_folder, check_replaceable, write_bytes_atomic
from sslt_core.config import read_yaml
from sslt_core.errors import ConfigError, OutputError, ResultsError
from sslt_core.fingerprint import file_digest
from sslt_core.provenance import environment

WEIGHTS = "encoder.safetensors"
SUMS = "SHA256SUMS"
CSV_PREFIX = "results-"
PRESETS = Path(__file__).resolve().parents[1] / "configs" / "pretrain"
# Settings that change how a run is carried out, not what it learns: not deviations from the official recipe.
OPERATIONAL = {"data", "workers", "seed", "knn_every", "knn_k", "knn_temperature", "diagnostics_every",
               "diagnostics_samples", "diagnostics_seed", "checkpoint_every", "log_every", "data_pipeline", "epochs"}

# The model card's task of each evaluation (Hugging Face task ids); another evaluation gets a generic entry.
CARD_TASKS = {
    "linear": ("image-classification", "Linear probe on frozen features"),
    "knn": ("image-classification", "Weighted k-NN on frozen features"),
    "voc07": ("object-detection", "Faster R-CNN R50-C4 fine-tuned on VOC07 trainval"),
    "voc0712": ("object-detection", "Faster R-CNN R50-C4 fine-tuned on VOC07+12 trainval"),
    "coco_det": ("object-detection", "Faster R-CNN fine-tuned on COCO 2017 train"),
    "coco_instseg": ("image-segmentation", "Mask R-CNN R50-C4 fine-tuned on COCO 2017 train (box and mask AP)"),
    "label_free": ("image-feature-extraction", "Label-free diagnostics of the embeddings"),
}
DATASETS = {"imagenet": ("imagenet-1k", "ImageNet-1k"), "voc_2007": ("pascal-voc-2007", "PASCAL VOC 2007"),
            "coco_2017": ("coco", "COCO 2017")}
SPLITS = {"val": "validation", "test": "test", "train": "train"}


def _dataset(scored_on):
    """The model card's dataset of a record's scored_on ("imagenet/val", "voc_2007_test", "coco_2017_val")."""
    name, _, split = scored_on.replace("/", "_").rpartition("_")
    kind, pretty = DATASETS.get(name, (name or scored_on, name or scored_on))
    return {"type": kind, "name": pretty, **({"split": SPLITS.get(split, split)} if name else {})}


def _metric(metric, value):
    kind, _, name = metric.rpartition("/")
    if name in ("top1", "top5"):
        return {"type": "accuracy", "value": round(value, 4), "name": f"top-{name[-1]} accuracy"}
    if name.startswith("AP"):
        return {"type": "mAP", "value": round(value, 4), "name": f"{'mask' if kind == 'segm' else 'box'} {name}"}
    return {"type": metric, "value": round(value, 4), "name": metric}


def model_index(result):
    """The `model-index` of the model card: one entry per evaluation with a value."""
    entries = []
    for name, record in result.evaluations.items():
        metrics = [_metric(m, v) for m, v in record.metrics.items() if v is not None]
        if not metrics:
            continue
        task, title = CARD_TASKS.get(name, ("image-feature-extraction", name))
        entries.append({"task": {"type": task, "name": f"{title} ({record.protocol})"},
                        "dataset": _dataset(record.scored_on), "metrics": metrics})
    return [{"name": result.name, "results": entries}]


def _preset(method, batch_size):
    """The official recipe of `method` among configs/pretrain (the one made for the run's batch size if any)."""
    for name in (f"{method}_r50_bs{batch_size}.yaml", f"{method}_r50.yaml"):
        if (PRESETS / name).is_file():
            return PRESETS / name
    return None


def deviations(config):
    """The recipe's differences from the official preset (configs/pretrain/<method>_r50*.yaml), one line each."""
    from pretrain.config import load_config

    method, train = config.get("method"), config.get("train") or {}
    preset = _preset(method, train.get("batch_size"))
    if preset is None:
        return [f"no official preset of method {method!r} to compare the recipe with"]
    official = json.loads(json.dumps(load_config(preset).to_dict()))  # tuples as lists, as config.yaml reads
    lines = []
    for section in ("train", "model"):
        for key, value in (config.get(section) or {}).items():
            if key in OPERATIONAL or official[section].get(key, value) == value:
                continue
            lines.append(f"{section}.{key}: {value!r} (official {official[section][key]!r}, "
                         f"configs/pretrain/{preset.name})")
    return lines


def pretraining_info(pretrain_dir, seconds=None):
    """What the pretraining folder says of itself: recipe, deviations, warnings of its log, time if known."""
    if pretrain_dir is None:
        return None
    pretrain_dir = Path(pretrain_dir)
    info = {"folder": str(pretrain_dir), "seconds": seconds}
    if (pretrain_dir / "config.yaml").is_file():
        config = read_yaml(pretrain_dir / "config.yaml")
        info["config"] = config
        info["deviations"] = deviations(config)
    log = pretrain_dir / "log.txt"
    if log.is_file():
        info["log_warnings"] = [line.strip() for line in log.read_text(errors="replace").splitlines()
                                if "warning" in line.lower()]
        info["log_notes"] = [line.strip() for line in log.read_text(errors="replace").splitlines()
                             if line.strip()][:20]
    epochs = [json.loads(line).get("epoch") for line in (pretrain_dir / "metrics.jsonl").read_text(
        errors="replace").splitlines() if '"output_std_reference"' in line] if (
        pretrain_dir / "metrics.jsonl").is_file() else []
    if epochs:
        info["epochs_done"] = max(e for e in epochs if isinstance(e, int))
    return info


def csv_text(result, name, record):
    """One evaluation's flat CSV: a header and one row for the model (timm's results-*.csv: runs concatenate)."""
    metrics = list(record.metrics)
    columns = (["model", "method", "epochs", "batch_size", "evaluation", "protocol", "scored_on", "selected_on",
                "trials"] + metrics + [f"{m}_std" for m in metrics]
               + ["seconds", "device", "checkpoint_sha256", "toolkit", "git_commit"])
    env = record.environment
    row = {"model": result.name, "method": result.method, "epochs": result.epochs, "batch_size": result.batch_size,
           "evaluation": name, "protocol": record.protocol, "scored_on": record.scored_on,
           "selected_on": record.selected_on, "trials": len(record.trials),
           **{m: record.metrics[m] for m in metrics}, **{f"{m}_std": record.std.get(m) for m in metrics},
           "seconds": record.seconds,
           "device": " x ".join(str(v) for v in (env.get("device_count"), env.get("device_name")) if v is not None),
           "checkpoint_sha256": record.checkpoint_sha256, "toolkit": env.get("toolkit"),
           "git_commit": env.get("git_commit")}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return buffer.getvalue()


def _hardware(record):
    env = record.environment
    if not env:
        return "not recorded"
    count, device = env.get("device_count"), env.get("device_name") or env.get("device")
    versions = ", ".join(f"{k} {env[k]}" for k in ("torch", "torchvision", "detectron2", "cuda") if env.get(k))
    return f"{count} x {device}" + (f" ({versions})" if versions else "")


def _duration(seconds):
    if seconds is None:
        return "not recorded"
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def card_text(result, pretraining, comparisons):
    """README.md: the model-index front matter and the prose of the records."""
    method = result.method or ("random init" if result.epochs == 0 else "unknown (an external checkpoint)")
    front = {"tags": ["self-supervised-learning", "image-feature-extraction", "ssl-transfer"]
             + ([result.method] if result.method else []),
             "datasets": ["imagenet-1k"], "pipeline_tag": "image-feature-extraction",
             "model-index": model_index(result)}
    lines = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", "",
             f"# {result.name}", "", f"- Method: {method}",
             f"- Pretraining epochs: {'unknown' if result.epochs is None else result.epochs}",
             f"- Batch size: {'unknown' if result.batch_size is None else result.batch_size}"]
    if pretraining:
        train = (pretraining.get("config") or {}).get("train") or {}
        model = (pretraining.get("config") or {}).get("model") or {}
        if train:
            lines.append(f"- Recipe: {model.get('arch', 'resnet50')}, {train.get('epochs')} epochs, batch "
                         f"{train.get('batch_size')}, {train.get('optimizer')} base lr {train.get('base_lr')} "
                         f"({train.get('lr_rule')} rule), weight decay {train.get('weight_decay')}, warm-up "
                         f"{train.get('warmup_epochs')} epochs, crops {train.get('image_size')}, precision "
                         f"{train.get('precision')}, sync BN {train.get('sync_bn')} (full config in results.json)")
        lines.append(f"- Pretraining time: {_duration(pretraining.get('seconds'))}; hardware of the pretraining: "
                     "not recorded by the run (see the evaluations' below)")
    lines += ["", "## Evaluations", "", "| evaluation | protocol | scored on | trials | metrics | hardware | time |",
              "|---|---|---|---|---|---|---|"]
    for name, record in result.evaluations.items():
        values = ", ".join(f"{m} {v:.2f}" + (f" ± {record.std[m]:.2f}" if record.std.get(m) is not None else "")
                           for m, v in record.metrics.items() if v is not None)
        lines.append(f"| {name} | `{record.protocol}` | {record.scored_on} | {len(record.trials)} | {values} | "
                     f"{_hardware(record)} | {_duration(record.seconds)} |")
    for name, reason in result.failed.items():
        lines.append(f"| {name} | failed | | | {reason} | | |")
    devs = list((pretraining or {}).get("deviations") or [])
    devs += list((pretraining or {}).get("log_warnings") or [])
    devs += [f"{c.evaluation}: measured with `{c.measured_protocol}`, a variant of the paper's protocol "
             f"`{c.reference.protocol}` (configs/references/protocols.yaml)" for c in comparisons if c.level != EXACT]
    devs += [f"{name}: {record.details['note']}" for name, record in result.evaluations.items()
             if isinstance(record.details.get("note"), str)]
    lines += ["", "## Known deviations from the official recipe", ""]
    lines += [f"- {d}" for d in dict.fromkeys(devs)] or ["- none found (the recipe matches the official preset)"
                                                        if pretraining and pretraining.get("config") else
                                                        "- not known: no pretraining config in the run folder"]
    if comparisons:
        lines += ["", "## Compared with the published numbers", "", "| column | measured | published | diff | "
                  "flag | reference |", "|---|---|---|---|---|---|"]
        for c in comparisons:
            std = f" ± {c.measured_std:.1f}" if c.measured_std is not None else ""
            lines.append(f"| {c.column} | {c.measured:.1f}{std} | {c.reference.value:.1f} | {c.difference:+.1f} | "
                         f"{c.verdict} | {c.reference.source.citation}, {c.reference.source.table} |")
        lines += [""] + [f"- {line}" for line in summary_lines(comparisons)]
    lines += ["", "## Files", "", f"`results.json` holds every record with its provenance, `{CSV_PREFIX}<evaluation>"
              ".csv` one flat row per evaluation (they concatenate across models), `SHA256SUMS` the sha256 of every "
              f"file (`sha256sum -c {SUMS}`). Nothing has been uploaded; to publish this folder as a Hugging Face "
              "model repository (add a `license:` to the front matter first):", "", "```python",
              "from huggingface_hub import HfApi", "", "api = HfApi()  # after `huggingface-cli login`",
              'api.create_repo("USER/MODEL", repo_type="model", exist_ok=True)',
              'api.upload_folder(folder_path=".", repo_id="USER/MODEL", repo_type="model")', "```", ""]
    return "\n".join(lines)


def bundle_files(result, pretraining=None, references=None):
    """{file name: bytes} of the bundle, but the weights and SHA256SUMS."""
    comparisons = compare([result], references)
    data = {**result.to_dict(), "bundle": {
        "pretraining": pretraining, "comparison": [c.as_json() for c in comparisons],
        "summary": summary_lines(comparisons), "written_by": environment("cpu")}}
    files = {"results.json": (json.dumps(data, indent=2, default=str) + "\n").encode(),
             "README.md": card_text(result, pretraining, comparisons).encode()}
    for name, record in result.evaluations.items():
        files[f"{CSV_PREFIX}{name}.csv"] = csv_text(result, name, record).encode()
    return files


def _check_target(out_dir):
    out_dir = check_output_folder(out_dir)
    if out_dir.is_dir():
        entries = list(out_dir.iterdir())
        if entries and not (out_dir / SUMS).is_file():
            raise OutputError(f"{out_dir} holds files and is not a results bundle (no {SUMS}); choose an empty or "
                              "new folder")
        for entry in out_dir.rglob("*"):
            if entry.is_symlink() or not (entry.is_file() or entry.is_dir()):
                check_replaceable(entry, planted=True)
    return out_dir


def sums_text(out_dir):
    """`sha256sum` lines of every file below `out_dir` but SHA256SUMS, sorted by path."""
    files = sorted(p for p in Path(out_dir).rglob("*") if p.is_file() and p.name != SUMS and ".tmp-" not in p.name)
    return "".join(f"{file_digest(p)}  {p.relative_to(out_dir).as_posix()}\n" for p in files)


def write_bundle(out_dir, result, pretraining=None, weights=None, references=None):
    """Write `result`'s bundle into `out_dir` (with a copy of `weights`, an encoder.safetensors, if given)."""
    out_dir = _check_target(out_dir)
    if weights is not None and not Path(weights).is_file():
        raise ResultsError(f"weights {weights} do not exist; give the run's {WEIGHTS} or none")
    files = bundle_files(result, pretraining, references)  # every check and every text before the first write
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / WEIGHTS
    if weights is not None and not (target.is_file() and target.stat().st_size == Path(weights).stat().st_size
                                    and file_digest(target) == file_digest(weights)):  # copied once, not per run
        with atomic_path(target) as tmp:
            shutil.copyfile(weights, tmp)
    for name, data in files.items():
        write_bytes_atomic(out_dir / name, data)
    for stale in out_dir.glob(f"{CSV_PREFIX}*.csv"):  # an evaluation of an earlier export that this one lacks
        if stale.name not in files:
            stale.unlink()
    write_bytes_atomic(out_dir / SUMS, sums_text(out_dir).encode())
    return out_dir


def verify_sums(out_dir):
    """The files whose sha256 differs from SHA256SUMS (hashlib), or that it lists and are gone."""
    bad = []
    for line in (Path(out_dir) / SUMS).read_text().splitlines():
        digest, _, name = line.partition("  ")
        path = Path(out_dir) / name
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            bad.append(name)
    return bad


# Run folders: a pretraining run (config.yaml / encoder.safetensors, records beside it) or a pipeline output.

def _records_in(run_dir):
    """{evaluation: EvaluationRecord} of the record files a run folder holds (tools/evaluate.py --output X.json in
    it, a detection output's record.json in a subfolder); other JSON files are left alone, but one that does not
    parse is refused: it may be a record cut short, which the bundle must not silently lack."""
    records = {}
    for path in sorted(list(run_dir.glob("*.json")) + list(run_dir.glob("*/record.json"))):
        if path.name == "results.json":
            continue
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):  # a record cut short, as likely as not
            raise ResultsError(f"{path} is not valid JSON (a record file cut short?); run its evaluation again, or "
                               f"move the file out of {run_dir}") from None
        if not (isinstance(data, dict) and "evaluation" in data and "protocol" in data):
            continue
        record = parse_record(data, str(path))
        if record.evaluation in records:
            raise ResultsError(f"{path}: a second record of '{record.evaluation}' in {run_dir}; keep one of them")
        records[record.evaluation] = record
    return records


def run_result(run_dir, name=None):
    """The ModelResult of a pretraining run folder: its results.json if any, else its config and its records."""
    run_dir = Path(run_dir)
    if (run_dir / "results.json").is_file():
        result = load_results([run_dir / "results.json"])[0]
    else:
        config = read_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").is_file() else {}
        train, method = config.get("train") or {}, config.get("method")
        traits = {}
        if method:
            from pretrain.methods import METHODS

            cls = METHODS.get(method, (None, None))[1]
            traits = {"negative_pairs": getattr(cls, "negative_pairs", None),
                      "momentum_encoder": getattr(cls, "momentum_encoder", None)}
        result = ModelResult(name=name or run_dir.resolve().name, method=method, batch_size=train.get("batch_size"),
                             epochs=train.get("epochs"), **traits)
    if name:
        result = dataclasses.replace(result, name=name)
    for evaluation, record in _records_in(run_dir).items():
        result.evaluations.setdefault(evaluation, record)
    return parse_result(result.to_dict(), f"run folder {run_dir}")  # every record checked as a results file is


def export(run_dir, out_dir, name=None, copy_weights=True):
    """Bundles of a run folder into `out_dir`: one for a pretraining run; OUT/<model>/ per model of a pipeline
    output (OUTPUT/results/*.json). Returns the bundle folders."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder {run_dir} does not exist or is not a folder; give a pretraining output or a "
                          "pipeline output")
    if (run_dir / "manifest.json").is_file() and (run_dir / "results").is_dir():
        jobs = _pipeline_jobs(run_dir, lambda stem: out_dir / stem, copy_weights)
    elif (run_dir / "config.yaml").is_file() or (run_dir / WEIGHTS).is_file() or (run_dir / "results.json").is_file():
        result = run_result(run_dir, name)
        weights = run_dir / WEIGHTS if copy_weights and (run_dir / WEIGHTS).is_file() else None
        jobs = [(out_dir, result, pretraining_info(run_dir) if (run_dir / "config.yaml").is_file() else None,
                 weights)]
    else:
        raise ConfigError(f"{run_dir} is neither a pretraining run (config.yaml, {WEIGHTS}) nor a pipeline output "
                          "(manifest.json, results/); give one of them")
    return _write_all(jobs)


def _write_all(jobs):
    for target, *_ in jobs:  # every target checked before the first bundle is written
        _check_target(target)
    return [write_bundle(target, result, info, weights) for target, result, info, weights in jobs]


def _pipeline_jobs(run_dir, target_of, copy_weights=True):
    """(bundle folder, result, pretraining info, weights) of every model of a pipeline output."""
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise ResultsError(f"{run_dir}/manifest.json cannot be read as JSON; run the pipeline again") from None
    jobs = []
    for path in sorted((run_dir / "results").glob("*.json")):
        pretrain = run_dir / path.stem / "pretrain"  # results/<model folder>.json, <model folder>/pretrain/
        seconds = (manifest.get(f"{path.stem}/pretrain") or {}).get("seconds") if isinstance(manifest, dict) else None
        jobs.append((target_of(path.stem), load_results([path])[0],
                     pretraining_info(pretrain, seconds) if (pretrain / "config.yaml").is_file() else None,
                     pretrain / WEIGHTS if copy_weights and (pretrain / WEIGHTS).is_file() else None))
    if not jobs:
        raise ResultsError(f"{run_dir}/results holds no results files; run the pipeline to its end first")
    return jobs


def write_pipeline_bundles(output_dir):
    """The pipeline's bundle of every model: OUTPUT/<model>/bundle/, beside its pretraining folder."""
    output_dir = Path(output_dir)
    return _write_all(_pipeline_jobs(output_dir, lambda stem: output_dir / stem / "bundle"))
