"""Detection and instance segmentation transfer through detectron2 (MoCo's protocol: the backbone's BN fine-tuned
with synchronised statistics, K trials with seeds SEED..SEED+K-1, scored after the last iteration: no model
selection). Each task is one line of TASKS plus its YAML under configs/, as a dataset in detectron2 is one
registration plus a YAML.

The columns of SimSiam's Table 5: AP50 / AP / AP75 of VOC07 (trainval07 -> test07), VOC07+12 (trainval07+12 ->
test07), COCO detection and COCO instance segmentation. The seed's "COCO det" column is Mask R-CNN's box AP, so
the coco_instseg run fills it; a Faster R-CNN coco_det run fills it only where a row has no coco_instseg record.
"""
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated

from evaluations.record import from_trials
from evaluations.registry import Column, Evaluation, register
from sslt_core.cluster import Resources
from sslt_core.config import NonNegativeInt, Range
from sslt_core.errors import ConfigError

METRICS = ("AP50", "AP", "AP75")
# A few iterations on small images: the demo configs' settings for tests (the pipeline's demo sets its own).
DEMO_OPTS = ("SOLVER.MAX_ITER", 2, "SOLVER.IMS_PER_BATCH", 2, "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 16,
             "TEST.PRECISE_BN.NUM_ITER", 1, "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MIN_SIZE_TEST", 96)


def _columns(label, task):
    return tuple(Column("transfer", f"{label} {m}", f"{task}/{m}") for m in METRICS)


def _voc(train, test, mask, with_2012):
    return any("voc_2007_test" in n for n in test) and any("voc_2012" in n for n in train) == with_2012


def _coco(train, test, mask, with_masks):
    return any("coco_2017" in n for n in test) and bool(mask) == with_masks


# name, default config, the columns it fills (in the table's order), the bar of the report's plot, and whether a
# config's (train datasets, test datasets, MODEL.MASK_ON) are this task's (a COCO config never fills VOC columns)
TASKS = (
    ("voc07", "configs/voc07.yaml", _columns("VOC 07 det", "bbox"), ("VOC07 AP50", "bbox/AP50"),
     lambda *cfg: _voc(*cfg, with_2012=False)),
    ("voc0712", "configs/voc0712.yaml", _columns("VOC 07+12 det", "bbox"), ("VOC07+12 AP50", "bbox/AP50"),
     lambda *cfg: _voc(*cfg, with_2012=True)),
    ("coco_instseg", "configs/coco_instseg.yaml", _columns("COCO det", "bbox") + _columns("COCO instance seg", "segm"),
     ("COCO mask AP", "segm/AP"), lambda *cfg: _coco(*cfg, with_masks=True)),
    ("coco_det", "configs/coco_det.yaml", _columns("COCO det", "bbox"), ("COCO box AP", "bbox/AP"),
     lambda *cfg: _coco(*cfg, with_masks=False)),
)


@dataclass(frozen=True)
class DetectionSettings:
    config: str = ""  # a detectron2 YAML; "" for the task's own (TASKS)
    trials: Annotated[int, Range(min=1, max=100)] = 1
    seed: NonNegativeInt = 0
    opts: tuple[str | int | float, ...] = ()  # KEY VALUE pairs


@dataclass(frozen=True)
class CheckedDetection:
    """Settings with their recipe: the config chain read and checked once (transfer/detection_recipe.py)."""

    settings: DetectionSettings
    recipe: object = field(compare=False)


def task_of(recipe):
    """The registered task a config runs, from its datasets (TASKS): VOC07 test after VOC07+12 or VOC07 trainval;
    COCO val with masks (instance segmentation) or without."""
    cfg = recipe.trial_config("", "unused", 0, 1)[0]
    found = [name for name, *_, matches in TASKS if matches(cfg.DATASETS.TRAIN, cfg.DATASETS.TEST, cfg.MODEL.MASK_ON)]
    if not found:
        raise ConfigError(f"config {recipe.config_file}: its datasets {sorted(cfg.DATASETS.TEST)} are none of the "
                          "registered detection tasks' (VOC07 test, COCO val); register the task in TASKS of "
                          "evaluations/detection.py")
    return found[0]


def check_task(task, recipe):
    """The config's datasets are those of `task`: a COCO config never fills the VOC07 columns."""
    found = task_of(recipe)
    if found != task:
        raise ConfigError(f"config {recipe.config_file} trains and tests on the datasets of {found} "
                          f"({', '.join(recipe.datasets)}), not of {task}; give {task} a {task} config, or run it "
                          f"as {found}")


def prepare_of(task, default_config):
    def prepare(settings):
        from transfer.detection_recipe import load_recipe

        if len(settings.opts) % 2:
            raise ConfigError(f"detection opts come as KEY VALUE pairs; got {list(settings.opts)}")
        settings = replace(settings, config=settings.config or default_config)
        recipe = load_recipe(settings.config, tuple(str(o) for o in settings.opts))
        check_task(task, recipe)
        return CheckedDetection(settings, recipe)
    return prepare


def protocol_of(task):
    def protocol(checked):
        cfg = checked.recipe.base_config
        return (f"det/{task}-{Path(checked.settings.config).stem}-{cfg.SOLVER.MAX_ITER}it-"
                f"bs{cfg.SOLVER.IMS_PER_BATCH}-{checked.recipe.digest()[:8]}")
    return protocol


def reads(checked):
    from transfer.detection import DETECTION_SETS

    return sorted({DETECTION_SETS[n].layout if n in DETECTION_SETS else n for n in checked.recipe.datasets})


def record_from_summary(task, checked, summary):
    """The record of a finished run from its metrics.json content."""
    cfg = checked.recipe.base_config
    trials = [{"seed": t["seed"], "metrics": {f"{kind}/{m}": v for kind, metrics in t["results"].items()
                                              for m, v in metrics.items()}, "precision": t.get("precision")}
              for t in summary["trials"]]
    return from_trials(task, protocol_of(task)(checked), trials, ",".join(cfg.DATASETS.TEST),
                       global_batch_size=cfg.SOLVER.IMS_PER_BATCH,
                       environment={"device": cfg.MODEL.DEVICE.split(":")[0]},
                       details={"config": checked.settings.config, "opts": list(checked.recipe.opts),
                                "resolved_config": cfg.dump(),
                                "precision": sorted({t.get("precision", "fp32") for t in summary["trials"]})})


def run_of(task):
    def run(weights, data_root, output_dir, checked, context):
        from transfer.detection_run import DetectionRun
        from transfer.trials import run_trials

        detection_run = DetectionRun(checked.recipe, weights.path, output_dir, trials=checked.settings.trials,
                                     seed=checked.settings.seed, data_root=data_root, resume=context.resume,
                                     trust=weights.trust, quiet=context.quiet)
        if context.num_gpus > 1:  # detectron2 starts one process per GPU
            from detectron2.engine import launch

            launch(run_trials, context.num_gpus, dist_url="auto", args=(detection_run,))
            summary = json.loads((Path(output_dir) / "metrics.json").read_text())
        else:
            summary = run_trials(detection_run)
        return record_from_summary(task, checked, summary)
    return run


def summary(record):
    return json.dumps({"mean": record.metrics, "std": record.std}, indent=2)


def _percentages(metrics):
    return dict.fromkeys(metrics, (0, 100))  # COCO-style AP values are percentages


def _cli_of(config):
    def add_arguments(parser):
        from evaluations.detection_cli import add_arguments

        add_arguments(parser, config)
    return add_arguments


def _main_of(task):
    def main(args):
        from evaluations.detection_cli import main_of

        return main_of(task)(args)
    return main


_task_titles = {"voc07": "Faster R-CNN R50-C4, VOC07 trainval -> test (MoCo's protocol)",
                "voc0712": "Faster R-CNN R50-C4, VOC07+12 trainval -> VOC07 test (MoCo's protocol)",
                "coco_instseg": "Mask R-CNN R50-C4 1x, COCO train2017 -> val2017, box and mask AP",
                "coco_det": "Faster R-CNN R50-C4 1x, COCO train2017 -> val2017, box AP"}
for _name, _config, _columns_of_task, _bar, _ in TASKS:
    register(Evaluation(
        _name, DetectionSettings, run_of(_name), protocol_of(_name), columns=_columns_of_task,
        prepare=prepare_of(_name, _config),
        files=lambda checked: checked.recipe.texts(), reads=reads, detectron2_weights=True, plot=(_bar,),
        ranges=_percentages, summary=summary, resource_kind="detection", cli=_cli_of(_config), main=_main_of(_name),
        resources=Resources(nodes=1, gpus_per_node=8, time=24 * 60),
        demo={"config": f"configs/demo/{Path(_config).name}", "opts": list(DEMO_OPTS)},
        description=f"{_name}: {_task_titles[_name]}\n\n{__doc__}"))
