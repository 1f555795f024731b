"""Every tool on hostile input: exit status != 0 with one line `error: ...` naming the problem (and, where there is
one, the fix), no traceback, and no partial output; or exit 0 with a correct result. Grouped by tool, one case a
row, so the count shows in the test report. The tools run in this process (their main(argv) through
sslt_core.cli.run), which keeps the table fast."""
import json
import os
import pickle

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from sslt_core.lock import OutputLock
from tests.conftest import REPO
from tests.sslt_core import hostile
from tests.sslt_core.layouts import make_layout, random_resnet
from transfer.convert import to_detectron2

DEMO_VOC = REPO / "configs" / "demo" / "voc07.yaml"
DEMO_COCO = REPO / "configs" / "demo" / "coco_det.yaml"
SIMSIAM_DEMO = REPO / "configs" / "pretrain" / "simsiam_demo.yaml"
TINY = ["model.arch=resnet18", "train.image_size=32", "train.batch_size=16", "train.epochs=1", "train.knn_every=0",
        "train.diagnostics_every=0", "train.workers=0"]


@pytest.fixture(scope="module")
def files(tmp_path_factory, demo_root):
    d = tmp_path_factory.mktemp("hostile")
    marker = d / "PAYLOAD_RAN"
    f = {"data": demo_root, "marker": marker, "dir": d / "a_folder"}
    f["dir"].mkdir()
    f["evil.pth"] = hostile.malicious_pth(d / "evil.pth", marker)
    f["evil.pkl"] = hostile.malicious_pkl(d / "evil.pkl", marker)
    (d / "empty.pth").write_bytes(b"")
    (d / "text.pth").write_text("not a checkpoint\n")
    (d / "garbage.pth").write_bytes(bytes(range(256)) * 8)
    f["plain.pth"] = hostile.plain_pickle(d / "plain.pth")
    f["moco.pth"] = d / "moco.pth"
    torch.save(make_layout("moco", random_resnet(seed=0), random_resnet(seed=1)), f["moco.pth"])
    hostile.truncated(d / "cut.pth", f["moco.pth"])
    hostile.with_random_bytes(d / "bytes.pth")
    nan = random_resnet()
    nan["layer1.0.bn1.weight"][0] = float("nan")
    torch.save(nan, d / "nan.pth")
    negative_var = random_resnet()
    negative_var["bn1.running_var"][:] = -1.0  # every feature would be NaN
    torch.save(negative_var, d / "negvar.pth")
    (d / "loop.pth").symlink_to(d / "loop.pth")
    os.mkfifo(d / "fifo.pth")
    int_key = random_resnet()
    int_key[7] = torch.zeros(1)
    torch.save(int_key, d / "intkey.pth")
    int_weights = random_resnet()
    int_weights["conv1.weight"] = int_weights["conv1.weight"].long()
    torch.save(int_weights, d / "intweights.pth")
    scalar_conv1 = random_resnet()
    scalar_conv1["conv1.weight"] = torch.tensor(1.0)
    torch.save(scalar_conv1, d / "scalarconv1.pth")
    header = json.dumps({"w": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}).encode()  # no such dtype
    (d / "dtype.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(8))
    (d / "basenull.yaml").write_text("_BASE_: null\n")
    (d / "deep.json").write_text("[" * 100000)
    (d / "results_negative.json").write_text('{"name": "x", "linear": {"top1": -50}}')
    (d / "empty.yaml").write_text("")
    (d / "binary.yaml").write_bytes(b"\xff\xfe\x00bad")
    (d / "twice.yaml").write_text(f"_BASE_: {DEMO_VOC}\nSOLVER:\n  BASE_LR: 0.1\n  BASE_LR: 0.2\n")
    (d / "nanlr.yaml").write_text(f"_BASE_: {DEMO_VOC}\nSOLVER:\n  BASE_LR: .nan\n")
    import torchvision
    torch.save(torchvision.models.resnet18().state_dict(), d / "resnet18.pth")
    torch.save({"weights": {"a": torch.zeros(2)}}, d / "unknown.pth")
    hostile.lightning_like(d / "counter.ckpt")
    good = {"model": to_detectron2(random_resnet()), "__author__": "x"}
    (d / "good.pkl").write_bytes(pickle.dumps(good))
    (d / "notdict.pkl").write_bytes(pickle.dumps({"model": [1, 2], "__author__": "x"}))
    torch.save(good, d / "torchsaved.pkl")
    (d / "garbage.pkl").write_bytes(bytes(range(256)) * 4)
    (d / "bad.yaml").write_text("train:\n  epochs: [1\n")
    (d / "list.yaml").write_text("- 1\n")
    (d / "badbase.yaml").write_text('_BASE_: "nowhere.yaml"\n')
    (d / "results_bad.json").write_text('{"name": "x", "linear": {"top1": "high"}}')
    (d / "results_broken.json").write_text("{")
    (d / "results_key.json").write_text('{"name": "x", "detection": {"voc2007": {"mean": {}}}}')
    record = '{"evaluation": "knn", "protocol": "p", "scored_on": "v", "trials": [{"seed": 0, "metrics": {}}], '
    (d / "results_bigint.json").write_text('{"name": "x", "evaluations": {"knn": ' + record + '"metrics": {"top1": '
                                           + "9" * 400 + '}}}}')
    (d / "results_hugeint.json").write_text('{"name": "x", "epochs": ' + "9" * 5000 + '}')
    (d / "a_file").write_text("x")
    for name in ("empty.pth", "text.pth", "garbage.pth", "cut.pth", "bytes.pth", "nan.pth", "resnet18.pth",
                 "unknown.pth", "counter.ckpt", "good.pkl", "notdict.pkl", "torchsaved.pkl", "garbage.pkl",
                 "bad.yaml", "list.yaml", "badbase.yaml", "results_bad.json", "results_broken.json",
                 "results_key.json", "results_bigint.json", "results_hugeint.json",
                 "a_file", "negvar.pth", "loop.pth", "fifo.pth", "intkey.pth", "intweights.pth",
                 "basenull.yaml", "deep.json", "results_negative.json", "empty.yaml", "binary.yaml", "twice.yaml",
                 "nanlr.yaml", "scalarconv1.pth", "dtype.safetensors"):
        f[name] = d / name
    # A dataset with a corrupt JPEG (for workers) and one with a 16-bit PNG, both copies of the small demo data.
    import shutil
    for name in ("corrupt", "deep"):
        shutil.copytree(demo_root / "imagenet", d / name / "imagenet")
    victim = sorted((d / "corrupt" / "imagenet" / "train" / "circle").iterdir())[0]
    victim.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    deep = sorted((d / "deep" / "imagenet" / "train" / "circle").iterdir())[0]
    values = (np.asarray(Image.open(deep).convert("L"), dtype=np.float64) * 257).astype(np.uint16)
    deep.unlink()
    hostile.png16(deep.with_suffix(".png"), values)
    f["corrupt"], f["deep"] = d / "corrupt", d / "deep"
    return f


def knn(*extra):
    return ["eval_knn", "--weights", "random", "--data", "{data}", "--image-size", "32", "--arch", "resnet18",
            "--cache-dir", "{out}/cache", "--workers", "0", *extra]


def linear(*extra):
    return ["eval_linear", "--weights", "random", "--data", "{data}", "--image-size", "32", "--arch", "resnet18",
            "--cached", "--cache-dir", "{out}/cache", "--workers", "0", "--epochs", "1", "--batch-size", "32", *extra]


def det(*extra, weights="random", config=DEMO_VOC):
    return ["train_det", "--config", str(config), "--weights", weights, "--data-root", "{data}", "--output-dir",
            "{out}/det", *extra]


def pretrain(*extra, config=SIMSIAM_DEMO):
    return ["pretrain_net", "--config", str(config), "--data", "{data}", "--output-dir", "{out}/pre", *TINY, *extra]


def pipeline_config(**changes):
    config = {"data_root": "{data}", "image_size": 32, "random_baseline": True, "linear": {"epochs": 1},
              "knn": {"k": [5]}}
    config.update(changes)
    return config


# (tool and arguments, what the one line must say, or None: exit 0 expected)
CASES = {
    # tools/convert_to_d2.py
    "convert/malicious-pth": (["convert_to_d2", "{evil.pth}", "-o", "{out}/x.pkl"], "--trust-checkpoint"),
    "convert/malicious-pkl": (["convert_to_d2", "{evil.pkl}", "-o", "{out}/x.pkl"], "--trust-checkpoint"),
    "convert/zero-byte": (["convert_to_d2", "{empty.pth}", "-o", "{out}/x.pkl"], "is empty"),
    "convert/text-file": (["convert_to_d2", "{text.pth}", "-o", "{out}/x.pkl"], "not a PyTorch checkpoint"),
    "convert/garbage": (["convert_to_d2", "{garbage.pth}", "-o", "{out}/x.pkl"], "not a PyTorch checkpoint"),
    "convert/plain-pickle": (["convert_to_d2", "{plain.pth}", "-o", "{out}/x.pkl"], "plain pickle"),
    "convert/truncated": (["convert_to_d2", "{cut.pth}", "-o", "{out}/x.pkl"], "not a PyTorch checkpoint"),
    "convert/folder": (["convert_to_d2", "{dir}", "-o", "{out}/x.pkl"], "is a folder, not a checkpoint file"),
    "convert/missing": (["convert_to_d2", "{out}/none.pth", "-o", "{out}/x.pkl"], "no such file"),
    "convert/random-bytes": (["convert_to_d2", "{bytes.pth}", "-o", "{out}/x.pkl"], "the file is corrupt"),
    "convert/nan": (["convert_to_d2", "{nan.pth}", "-o", "{out}/x.pkl"], "NaN or infinite"),
    "convert/resnet18": (["convert_to_d2", "{resnet18.pth}", "-o", "{out}/x.pkl"], "found ResNet-18"),
    "convert/unknown-layout": (["convert_to_d2", "{unknown.pth}", "-o", "{out}/x.pkl"], "unknown checkpoint layout"),
    "convert/already-d2": (["convert_to_d2", "{good.pkl}", "-o", "{out}/x.pkl"], "already a detectron2 checkpoint"),
    "convert/torch-saved-pkl": (["convert_to_d2", "{torchsaved.pkl}", "-o", "{out}/x.pkl"], "written with torch.save"),
    "convert/unknown-type": (["convert_to_d2", "{counter.ckpt}", "-o", "{out}/x.pkl"],
                             "tests.sslt_core.hostile.AttributeDict"),
    "convert/unknown-type-trusted": (["convert_to_d2", "{counter.ckpt}", "-o", "{out}/x.pkl",
                                      "--trust-checkpoint"], None),
    "convert/output-not-pkl": (["convert_to_d2", "{moco.pth}", "-o", "{out}/x.pth"], "must end in .pkl"),
    "convert/output-overwrites-input": (["convert_to_d2", "{good.pkl}", "-o", "{good.pkl}"], "would overwrite"),
    "convert/output-in-a-file": (["convert_to_d2", "{moco.pth}", "-o", "{a_file}/x.pkl"], "cannot write"),
    "convert/bad-source": (["convert_to_d2", "{moco.pth}", "--source", "mocov9"], "invalid choice"),
    "convert/wrong-source": (["convert_to_d2", "{moco.pth}", "-o", "{out}/x.pkl", "--source", "swav"],
                             "no ResNet encoder matching --source swav"),
    "convert/negative-variance": (["convert_to_d2", "{negvar.pth}", "-o", "{out}/x.pkl"], "negative variances"),
    "convert/symlink-loop": (["convert_to_d2", "{loop.pth}", "-o", "{out}/x.pkl"], "Too many levels of symbolic"),
    "convert/fifo": (["convert_to_d2", "{fifo.pth}", "-o", "{out}/x.pkl"], "not a regular file"),
    "convert/device": (["convert_to_d2", "/dev/zero", "-o", "{out}/x.pkl"], "not a regular file"),
    "convert/bad-input-makes-no-output-folders": (["convert_to_d2", "{out}/none.pth", "-o", "{out}/new/sub/x.pkl"],
                                                  "no such file"),
    "convert/int-key": (["convert_to_d2", "{intkey.pth}", "-o", "{out}/x.pkl"], "keys that are not names"),
    "convert/int-weights": (["convert_to_d2", "{intweights.pth}", "-o", "{out}/x.pkl"], "holds torch.int64 values"),
    "convert/scalar-conv1": (["convert_to_d2", "{scalarconv1.pth}", "-o", "{out}/x.pkl"],
                             "conv1.weight has shape (), not a convolution's 4 dimensions"),
    "convert/unknown-safetensors-dtype": (["convert_to_d2", "{dtype.safetensors}", "-o", "{out}/x.pkl"],
                                          "unknown variant `Q7` at line"),  # not safetensors' list of every dtype
    "convert/good": (["convert_to_d2", "{moco.pth}", "-o", "{out}/x.pkl"], None),
    # tools/eval_knn.py
    "knn/k-zero": (knn("--k", "0"), "argument --k: must be a positive integer, got '0'"),
    "knn/k-negative": (knn("--k", "-5"), "must be a positive integer"),
    "knn/k-text": (knn("--k", "many"), "must be a positive integer"),
    "knn/temperature-zero": (knn("--temperature", "0"), "argument --temperature: must be a positive number"),
    "knn/temperature-nan": (knn("--temperature", "nan"), "must be a positive number"),
    "knn/batch-zero": (knn("--batch-size", "0"), "--batch-size: must be a positive integer"),
    "knn/batch-negative": (knn("--batch-size", "-3"), "must be a positive integer"),
    "knn/image-size-zero": (knn("--image-size", "0"), "--image-size: must be an integer from 32 to 1024"),
    "knn/image-size-huge": (knn("--image-size", "100000"), "--image-size: must be an integer from 32 to 1024"),
    "knn/negative-variance": (knn()[:1] + ["--weights", "{negvar.pth}"] + knn()[3:], "negative variances"),
    "knn/workers-negative": (knn("--workers", "-1"), "--workers: must be an integer >= 0"),
    "knn/bad-arch": (knn("--arch", "vgg"), "invalid choice"),
    "knn/malicious": (["eval_knn", "--weights", "{evil.pth}", "--data", "{data}"], "--trust-checkpoint"),
    "knn/folder-weights": (["eval_knn", "--weights", "{dir}", "--data", "{data}"], "is a folder"),
    "knn/text-weights": (["eval_knn", "--weights", "{text.pth}", "--data", "{data}"], "not a PyTorch checkpoint"),
    "knn/bad-data-root": (knn()[:3] + ["--data", "{out}/nowhere"], "point the datasets root"),
    "knn/cache-dir-is-a-file": (knn("--cache-dir", "{a_file}"), "exists and is not a folder"),
    "knn/output-in-a-file": (knn("--output", "{a_file}/r.json"), "cannot write"),
    "knn/output-is-a-folder": (knn("--output", "{dir}"), "is a folder"),
    "knn/output-is-a-pipe": (knn("--output", "{fifo.pth}"), "not a regular file"),
    "knn/corrupt-jpeg-with-workers": (knn()[:3] + ["--data", "{corrupt}", "--workers", "2", "--image-size", "32",
                                                   "--arch", "resnet18", "--cache-dir", "{out}/cache"],
                                      "cannot decode"),
    "knn/16-bit-png": (knn()[:3] + ["--data", "{deep}"] + knn()[5:], None),
    "knn/missing-output-folder-is-made": (knn("--output", "{out}/new/dir/r.json"), None),
    # tools/eval_linear.py
    "linear/epochs-zero": (linear("--epochs", "0"), "--epochs: must be a positive integer"),
    "linear/batch-zero": (linear("--batch-size", "0"), "--batch-size: must be a positive integer"),
    "linear/seed-negative": (linear("--seed", "-1"), "--seed: must be an integer >= 0"),
    "linear/bad-protocol": (linear("--protocol", "byol"), "invalid choice"),
    "linear/malicious": (["eval_linear", "--weights", "{evil.pth}", "--data", "{data}"], "--trust-checkpoint"),
    "linear/cache-dir-in-a-file": (linear("--cache-dir", "{a_file}/cache"), "is a file, not a folder"),
    "linear/output-in-a-file": (linear("--output", "{a_file}/r.json"), "cannot write"),
    # tools/train_det.py
    "det/malicious-pkl": (det(weights="{evil.pkl}"), "--trust-checkpoint"),
    "det/model-not-a-dict": (det(weights="{notdict.pkl}"), "its 'model' must map names to numpy arrays"),
    "det/garbage-pkl": (det(weights="{garbage.pkl}"), "not a readable pickle"),
    "det/torch-saved-pkl": (det(weights="{torchsaved.pkl}"), "written with torch.save"),
    "det/pth-weights": (det(weights="{moco.pth}"), "run python tools/convert_to_d2.py"),
    "det/trials-zero": (det("--trials", "0"), "--trials: must be a positive integer"),
    "det/trials-negative": (det("--trials", "-2"), "must be a positive integer"),
    "det/num-gpus-zero": (det("--num-gpus", "0"), "--num-gpus: must be a positive integer"),
    "det/machine-rank": (det("--num-machines", "2", "--machine-rank", "2"), "must be below --num-machines"),
    "det/config-missing": (det(config="{out}/none.yaml"), "does not exist"),
    "det/config-folder": (det(config="{dir}"), "is a folder"),
    "det/config-bad-yaml": (det(config="{bad.yaml}"), "not valid YAML"),
    "det/config-missing-base": (det(config="{badbase.yaml}"), "nowhere.yaml does not exist"),
    "det/config-typo": (det("SOLVER.BASE_LRR", "0.1"), "did you mean SOLVER.BASE_LR"),
    "det/odd-overrides": (det("SOLVER.BASE_LR"), "KEY VALUE pairs"),
    "det/bad-override-value": (det("SOLVER.MAX_ITER", "many"), "many"),
    "det/max-iter-zero": (det("SOLVER.MAX_ITER", "0"), "SOLVER.MAX_ITER must be >= 1"),
    "det/lr-negative": (det("SOLVER.BASE_LR", "-0.1"), "SOLVER.BASE_LR must be > 0"),
    "det/lr-nan": (det(config="{nanlr.yaml}"), "SOLVER.BASE_LR must be a finite number"),
    "det/classes-negative": (det("MODEL.ROI_HEADS.NUM_CLASSES", "-3"), "NUM_CLASSES must be >= 1"),
    "det/workers-negative": (det("DATALOADER.NUM_WORKERS", "-1"), "NUM_WORKERS must be >= 0"),
    "det/momentum-one": (det("SOLVER.MOMENTUM", "1.0"), "SOLVER.MOMENTUM must be in [0, 1)"),
    "det/seed-huge": (det("--seed", "99999999999"), "--seed must be in [0, 2**31)"),
    "det/wrong-type": (det("SOLVER.MAX_ITER", "ten"), "give SOLVER.MAX_ITER a value of the type"),
    "det/config-empty": (det(config="{empty.yaml}"), "is empty"),
    "det/base-null": (det(config="{basenull.yaml}"), "_BASE_ must name a YAML file"),
    "det/min-size-negative": (det("INPUT.MIN_SIZE_TRAIN", "(-5,)"), "MIN_SIZE_TRAIN must be a list of sizes >= 1"),
    "det/depth": (det("MODEL.RESNETS.DEPTH", "7"), "DEPTH must be one of 18, 34, 50, 101, 152"),
    "det/weights-as-override": (det("MODEL.WEIGHTS", "x.pkl"), "give it with --weights"),
    "det/config-a-list": (det(config="{list.yaml}"), "must hold a mapping"),
    "det/config-not-utf8": (det(config="{binary.yaml}"), "give a UTF-8 YAML file"),
    "det/config-key-twice": (det(config="{twice.yaml}"), "key 'BASE_LR' appears twice"),
    "det/output-is-a-file": (["train_det", "--config", str(DEMO_VOC), "--weights", "random", "--data-root",
                              "{data}", "--output-dir", "{a_file}"], "is a file"),
    "det/bad-data-root": (["train_det", "--config", str(DEMO_VOC), "--weights", "random", "--data-root",
                           "{out}/nowhere", "--output-dir", "{out}/det"], "point the datasets root"),
    # tools/pretrain_net.py
    "pretrain/config-missing": (pretrain(config="{out}/none.yaml"), "does not exist"),
    "pretrain/config-folder": (pretrain(config="{dir}"), "is a folder"),
    "pretrain/config-bad-yaml": (pretrain(config="{bad.yaml}"), "not valid YAML"),
    "pretrain/config-a-list": (pretrain(config="{list.yaml}"), "must hold a mapping"),
    "pretrain/key-typo": (pretrain("train.epoch=3"), "did you mean train.epochs"),
    "pretrain/epochs-fraction": (pretrain("train.epochs=1.5"), "train.epochs must be an integer, got 1.5"),
    "pretrain/epochs-bool": (pretrain("train.epochs=true"), "train.epochs must be an integer, got True"),
    "pretrain/image-size-zero": (pretrain("train.image_size=0"), "train.image_size must be >= 32"),
    "pretrain/precision-typo": (pretrain("train.precision=bf61"), "train.precision must be one of auto, fp32, bf16"),
    "pretrain/batch-zero": (pretrain("train.batch_size=0"), "train.batch_size must be >= 1"),
    "pretrain/batch-larger-than-data": (pretrain("train.batch_size=4096"), "make no full batch of 4096"),
    "pretrain/bad-override": (pretrain("epochs"), "must look like section.key=value"),
    "pretrain/no-config": (["pretrain_net", "--data", "{data}", "--output-dir", "{out}/pre"],
                           "no method: pass --config"),
    "pretrain/seed-huge": (pretrain("train.seed=99999999999999"), "train.seed must be <= 2147483647"),
    "pretrain/workers-huge": (pretrain("train.workers=100000"), "train.workers must be <= 256"),
    "pretrain/image-size-huge": (pretrain("train.image_size=100000"), "train.image_size must be <= 1024"),
    "pretrain/bad-data-root": (pretrain()[:3] + ["--data", "{out}/nowhere"] + pretrain()[5:],
                               "point the datasets root"),
    "pretrain/output-in-a-file": (pretrain()[:5] + ["--output-dir", "{a_file}/pre"] + pretrain()[7:],
                                  "cannot create output folder"),
    # tools/run_pipeline.py
    "pipeline/config-missing": (["run_pipeline", "--config", "{out}/none.yaml", "--output-dir", "{out}/p"],
                                "does not exist"),
    "pipeline/config-folder": (["run_pipeline", "--config", "{dir}", "--output-dir", "{out}/p"], "is a folder"),
    "pipeline/config-bad-yaml": (["run_pipeline", "--config", "{bad.yaml}", "--output-dir", "{out}/p"],
                                 "not valid YAML"),
    "pipeline/unknown-key": ({"data_root": "{data}", "method": {}}, "unknown config key pipeline.method"),
    "pipeline/nested-unknown-key": (pipeline_config(knn={"kk": [5]}), "did you mean pipeline.knn.k"),
    "pipeline/no-data-root": ({"image_size": 32}, "pipeline.data_root is required"),
    "pipeline/k-zero": (pipeline_config(knn={"k": [0]}), r"pipeline.knn.k[0] must be >= 1"),
    "pipeline/detection-key": (pipeline_config(detection={"voc2007": {"config": str(DEMO_VOC)}}),
                               "must be one of voc07, voc0712, coco_instseg, coco_det"),
    "pipeline/evaluation-name": (pipeline_config(evaluations={"voc2007": {"config": str(DEMO_VOC)}}, knn=None,
                                                 linear=None),
                                 "'voc2007' is not a registered evaluation; did you mean 'voc07'?"),
    "pipeline/evaluation-setting": (pipeline_config(evaluations={"knn": {"kk": [5]}}, knn=None, linear=None),
                                    "did you mean pipeline.evaluations.knn.k"),
    "pipeline/evaluations-and-older-keys": (pipeline_config(evaluations={"knn": {}}),
                                            "not both"),
    "evaluate/unknown-name": (["evaluate", "knnn", "--weights", "random"], "did you mean 'knn'?"),
    "pipeline/trials-zero": (pipeline_config(detection={"voc07": {"config": str(DEMO_VOC), "trials": 0}}),
                             "trials must be >= 1"),
    "pipeline/name-dotdot": (pipeline_config(external={"..": "{moco.pth}"}), "must be a name"),
    "pipeline/name-slash": (pipeline_config(external={"a/b": "{moco.pth}"}), "must be a name"),
    "pipeline/external-missing": (pipeline_config(external={"gone": "{out}/none.pth"}), "no such file"),
    "pipeline/external-negative-variance": (pipeline_config(external={"nv": "{negvar.pth}"}), "negative variances"),
    "pipeline/external-malicious": (pipeline_config(external={"evil": "{evil.pth}"}), "set external.evil.trust: true"),
    "pipeline/external-source": (pipeline_config(external={"m": {"path": "{moco.pth}", "source": "mocov9"}}),
                                 "must be one of auto, ours"),
    "pipeline/nothing-to-run": (pipeline_config(random_baseline=False), "nothing to run"),
    "pipeline/data-root-missing": (pipeline_config(data_root="{out}/nowhere"), "point the datasets root"),
    "pipeline/image-size-huge": (pipeline_config(image_size=100000), "pipeline.image_size must be <= 1024"),
    "pipeline/detection-lr-negative": (pipeline_config(detection={"voc07": {"config": str(DEMO_VOC),
                                                                            "opts": ["SOLVER.BASE_LR", -1.0]}}),
                                       "SOLVER.BASE_LR must be > 0"),
    "pipeline/name-collides-with-baseline": (pipeline_config(external={"random_init": "{moco.pth}"}),
                                             "share one output folder"),
    "pipeline/pretrain-config-typo": (pipeline_config(methods={"s": {"config": str(SIMSIAM_DEMO),
                                                                     "overrides": ["train.epoch=1"]}}),
                                      "did you mean train.epochs"),
    "pipeline/pretrain-config-missing": (pipeline_config(methods={"s": {"config": "{out}/nowhere.yaml"}}),
                                         "nowhere.yaml does not exist"),
    "pipeline/detection-config-typo": (pipeline_config(detection={"voc07": {"config": str(DEMO_VOC),
                                                                            "opts": ["SOLVER.BASE_LRR", 1]}}),
                                       "did you mean SOLVER.BASE_LR"),
    "pipeline/linear-protocol": (pipeline_config(linear={"protocol": "byol"}), "must be one of moco, simsiam"),
    # tools/make_table.py
    "table/missing": (["make_table", "{out}/none.json"], "does not exist"),
    "table/broken-json": (["make_table", "{results_broken.json}"], "not valid JSON"),
    "table/wrong-type": (["make_table", "{results_bad.json}"], "linear.top1 must be a number, got 'high'"),
    "table/unknown-detection-key": (["make_table", "{results_key.json}"], "must be one of voc07"),
    "table/nested-deep": (["make_table", "{deep.json}"], "nests too deeply"),
    "table/negative-accuracy": (["make_table", "{results_negative.json}"], "linear.top1 must be >= 0"),
    "table/bigint": (["make_table", "{results_bigint.json}"], "top1 must be a finite number or null, got 999"),
    "table/hugeint": (["make_table", "{results_hugeint.json}"], "holds a value no results file has"),
    "table/a-folder": (["make_table", "{dir}"], "is a folder"),
    "evaluate/settings-range": (["evaluate", "voc07_svm", "--weights", "random", "--data", "{data}", "--folds", "1"],
                                "voc07_svm.folds must be >= 2"),
    "evaluate/flag-first": (["evaluate", "--weights", "random", "knn"], "name the evaluation first"),
    "evaluate/task-config-mismatch": (["evaluate", "voc07", "--config", str(DEMO_COCO), "--weights", "random",
                                       "--data-root", "{data}", "--output-dir", "{out}/det"],
                                      "not of voc07; give voc07 a voc07 config, or run it as coco_det"),
    "evaluate/detection-output-is-not-output-dir": (["evaluate", "voc07", "--weights", "random", "--output",
                                                     "{out}/x.json"], "unrecognized arguments: --output"),
    "pipeline/task-config-mismatch": (pipeline_config(detection={"voc07": {"config": str(DEMO_COCO)}}),
                                      "not of voc07"),
    "table/bad-format": (["make_table", "{results_bad.json}", "--format", "xls"], "invalid choice"),
    # tools/make_demo_data.py
    "demo/seed-negative": (["make_demo_data", "--out", "{out}/d", "--seed", "-1"], "--seed: must be an integer"),
    "demo/bad-size": (["make_demo_data", "--out", "{out}/d", "--size", "huge"], "invalid choice"),
    "demo/out-is-other-data": (["make_demo_data", "--out", "{dir}", "--size", "small"], "pass --force"),
    # tools/check_datasets.py
    "check/bad-root": (["check_datasets", "--data-root", "{out}/nowhere"], "point the datasets root"),
    "check/unknown-dataset": (["check_datasets", "cifar1000", "--data-root", "{data}"], "unknown dataset 'cifar1000'"),
}


def _fill(value, files, out):
    if isinstance(value, str):
        for key, path in files.items():
            value = value.replace("{" + key + "}", str(path))
        return value.replace("{out}", str(out))
    if isinstance(value, dict):
        return {_fill(k, files, out): _fill(v, files, out) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, files, out) for v in value]
    return value


def _outputs(out):
    """What a case left in its output folder (the lock file of an owned folder aside)."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.name != ".lock" and "cache" not in p.parts
                  and p.is_file())


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_line_and_no_partial_output(case, files, tool, tmp_path, monkeypatch):
    command, expected = CASES[case]
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    out.mkdir()
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # a default output path (e.g. output/pretrain) would land here
    if isinstance(command, dict):  # a pipeline config
        (out / "pipeline.yaml").write_text(yaml.safe_dump(_fill(command, files, out)))
        command = ["run_pipeline", "--config", str(out / "pipeline.yaml"), "--output-dir", str(out / "p")]
        before = ["pipeline.yaml"]
    else:
        before = []
    code, stdout, stderr = tool(*_fill(command, files, out))
    assert not files["marker"].exists()
    if expected is None:
        assert code == 0, stderr[-2000:]
        return
    hostile.assert_one_line_error(code, stderr, expected)
    assert _outputs(out) == before
    assert not any(cwd.iterdir())


def test_a_locked_output_folder_is_refused_naming_the_owner(files, tool, tmp_path):
    with OutputLock(tmp_path / "pre"):
        code, _, stderr = tool(*_fill(pretrain(), files, tmp_path)[:7], "--output-dir", str(tmp_path / "pre"),
                               *TINY)
    assert code != 0 and "is in use by PID" in stderr.strip().splitlines()[-1]
    assert not (tmp_path / "pre" / "config.yaml").exists()


def test_the_16_bit_png_case_reads_the_scaled_image(files):
    from sslt_core.images import load_rgb

    png = next((files["deep"] / "imagenet" / "train" / "circle").glob("*.png"))
    assert np.asarray(load_rgb(png)).max() > 200  # the 8-bit values came back, not a clipped 255 everywhere
    assert (np.asarray(load_rgb(png)) == 255).mean() < 0.5


def test_the_counter_checkpoint_converts_when_trusted(files, tool, tmp_path):
    code, stdout, _ = tool("convert_to_d2", str(files["counter.ckpt"]), "-o", str(tmp_path / "x.pkl"),
                           "--trust-checkpoint")
    assert code == 0 and "detected: solo" in stdout and json.dumps(True)
