"""Every GPU path of the toolkit in one command, on generated data, in a few minutes on one GPU.

    python benchmarks/gpu_check.py                   # on the GPU; exit status 1 if any check fails
    python benchmarks/gpu_check.py --device cpu      # the same script on a CPU (NCCL and faiss-gpu skipped)

One JSON line per check, with pass / fail / skip, its figures and the peak GPU memory:
- pretrain-<method>: a few training steps of each method under bf16 autocast + channels_last, finite losses,
  through both data pipelines (pil, and tensor: nvJPEG decoding and batched augmentation on the GPU);
- nccl-syncbn: a 1-process NCCL group, a SyncBatchNorm forward and backward equal to BatchNorm's;
- tensor-views: the tensor data path on the GPU equals the same path on the CPU (nvJPEG decoding against
  libjpeg-turbo, a grayscale and a CMYK JPEG included; batched augmentation of the same images);
- knn-torch: the torch kNN backend on the GPU gives the CPU's (faiss) rankings;
- knn-faiss-gpu: faiss-gpu's search equals faiss-cpu's (skipped when faiss has no GPU);
- linear-probe: the linear probe with features of augmented crops computed on the GPU;
- detectron2-<model>: Faster R-CNN R50-C4 and Mask R-CNN R50-C4 training iterations with AMP, then evaluation.
"""
import argparse
import json
import math
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def check(name, device):
    """Decorator: run a check, print its JSON line, return whether it passed."""
    def wrap(fn):
        def run(*args):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            try:
                outcome = fn(*args) or {}
                status = outcome.pop("status", "pass")
            except Exception as error:  # a check that raises fails; the others still run
                outcome = {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}",
                           "where": traceback.format_exc().strip().splitlines()[-3].strip()}
                status = "fail"
            record = {"check": name, "status": status, "seconds": round(time.perf_counter() - start, 1), **outcome}
            if device.type == "cuda":
                record["peak_gpu_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            print(json.dumps(record), flush=True)
            return status != "fail"
        return run
    return wrap


def pretrain_check(method, data, out, device):
    from pretrain.config import load_config
    from pretrain.train import train

    losses = {}
    for pipeline in ("pil", "tensor"):
        run = load_config(REPO / "configs" / "pretrain" / f"{method}_demo.yaml",
                          [f"train.data={data}", "train.epochs=1", "train.batch_size=32", "train.max_steps=4",
                           "train.knn_every=0", "train.log_every=1", "train.workers=2", "train.precision=auto",
                           f"train.data_pipeline={pipeline}"])
        train(run, out / f"{method}-{pipeline}", progress=False)
        lines = [json.loads(line) for line in (out / f"{method}-{pipeline}" / "metrics.jsonl").read_text().splitlines()]
        losses[pipeline] = [line["loss"] for line in lines if "lr" in line]
    finite = all(math.isfinite(v) for values in losses.values() for v in values) and all(losses.values())
    log = (out / f"{method}-tensor" / "log.txt").read_text()
    expected = "bf16 autocast with channels_last" if device.type == "cuda" else "fp32 on the CPU"
    return {"status": "pass" if finite and expected in log else "fail", "losses": losses}


def nccl_check(device):
    if device.type != "cuda":
        return {"status": "skip", "reason": "no GPU"}
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29517", RANK="0", WORLD_SIZE="1")
    dist.init_process_group("nccl")
    try:
        x = torch.randn(16, 8, 5, 5, device=device, requires_grad=True)
        sync, plain = torch.nn.SyncBatchNorm(8).to(device), torch.nn.BatchNorm2d(8).to(device)
        a, b = sync(x), plain(x)
        a.sum().backward()
        return {"status": "pass" if torch.allclose(a, b, atol=1e-5) and x.grad is not None else "fail",
                "max_difference": float((a - b).abs().max())}
    finally:
        dist.destroy_process_group()


def tensor_views_check(data, device):
    import io

    from PIL import Image

    from pretrain.augment import MOCO_V2, SWAV_SMALL
    from pretrain.tensor_views import augment_batch, decodable_on_device, decode_batch
    from pretrain.view_params import sample_view

    files = sorted((Path(data) / "imagenet" / "train").rglob("*.jpg"))[:62]
    blobs = [f.read_bytes() for f in files]
    for mode in ("L", "CMYK"):  # ImageNet holds grayscale and CMYK JPEGs: the CMYK one must go to the CPU
        buffer = io.BytesIO()
        Image.open(files[0]).convert(mode).save(buffer, "JPEG", quality=90)
        blobs.append(buffer.getvalue())
    device_decodable = []
    for blob in blobs:
        with Image.open(io.BytesIO(blob)) as header:
            device_decodable.append(decodable_on_device(header))
    encoded = [torch.frombuffer(bytearray(blob), dtype=torch.uint8) for blob in blobs]
    cpu_images = decode_batch(encoded, "cpu", device_decodable=device_decodable)
    dev_images = decode_batch(encoded, device, device_decodable=device_decodable)
    # nvJPEG and libjpeg-turbo round the IDCT and chroma upsampling differently: torchvision's own nvJPEG test
    # allows a mean difference of 2 (of 255) per image
    decoding = max(float((a.float() - b.cpu().float()).abs().mean()) for a, b in zip(cpu_images, dev_images))
    augmentation = 0.0  # the same decoded images augmented on the CPU and on the device
    for recipe in (MOCO_V2, SWAV_SMALL):
        params = [sample_view(recipe, im.shape[1], im.shape[2], 64, torch.Generator().manual_seed(s))
                  for s, im in enumerate(cpu_images)]
        on_cpu = augment_batch(cpu_images, params)
        on_device = augment_batch([im.to(device) for im in cpu_images], params).cpu()
        augmentation = max(augmentation, float((on_cpu - on_device).abs().mean()))
    # float32 ops in another order, and TF32 in the blur's convolution on a GPU: far below one grey level (0.017)
    return {"status": "pass" if decoding < 2.0 and augmentation < 2e-3 else "fail",
            "decoding_mean_abs_difference_of_255": round(decoding, 3),
            "augmentation_mean_abs_difference_normalised": augmentation,
            "on_device": sum(device_decodable), "on_cpu": len(blobs) - sum(device_decodable)}


def knn_check(device):
    from eval.knn import knn_classify

    rng = np.random.default_rng(0)
    bank, queries = rng.normal(size=(20000, 256)).astype("float32"), rng.normal(size=(500, 256)).astype("float32")
    labels = rng.integers(0, 100, 20000)
    on_device = knn_classify(bank, labels, queries, (20,), 0.07, 100, backend="torch", device=device.type)
    on_cpu = knn_classify(bank, labels, queries, (20,), 0.07, 100, backend="faiss")
    agree = float((on_device[20][:, 0] == on_cpu[20][:, 0]).mean())
    return {"status": "pass" if agree >= 0.998 else "fail", "top1_agreement": agree}


def faiss_gpu_check(device):
    import faiss

    if device.type != "cuda" or not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return {"status": "skip", "reason": "faiss has no GPU (pip install -e '.[gpu]')"}
    rng = np.random.default_rng(1)
    bank, queries = rng.normal(size=(20000, 128)).astype("float32"), rng.normal(size=(200, 128)).astype("float32")
    cpu = faiss.IndexFlatIP(128)
    cpu.add(bank)
    gpu = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, faiss.IndexFlatIP(128))
    gpu.add(bank)
    _, a = cpu.search(queries, 10)
    _, b = gpu.search(queries, 10)
    return {"status": "pass" if (a[:, 0] == b[:, 0]).mean() >= 0.99 else "fail", "top1_agreement": float(
        (a[:, 0] == b[:, 0]).mean())}


def linear_check(data, device):
    from eval.features import build_encoder, split_features
    from eval.linear import PROTOCOLS, adapted, linear_probe, train_transform
    from sslt_core.datasets import image_folder

    encoder, description = build_encoder("random", "resnet18")
    splits, classes, _ = split_features(encoder, description, "random", data, 64, None, device=device.type)
    augmented = image_folder("imagenet", "train", data, transform=train_transform(64))
    result, mode = linear_probe(encoder, splits["train"], splits["val"], len(classes),
                                adapted(PROTOCOLS["moco"], 64, 2), augmented, device=device.type)
    return {"status": "pass" if 0 <= result["top1"] <= 100 else "fail", "top1": result["top1"], "mode": mode}


def detection_check(config, data, out, device):
    from transfer.detection_recipe import load_recipe
    from transfer.detection_run import DetectionRun
    from transfer.trials import run_trials

    fast = ("SOLVER.MAX_ITER", "20", "SOLVER.IMS_PER_BATCH", "4", "TEST.PRECISE_BN.NUM_ITER", "2")
    if device.type == "cuda":  # the AMP path is the one to check on a GPU (fp32, the protocol's, is the default)
        fast += ("SOLVER.AMP.ENABLED", "True")
    start = time.perf_counter()
    summary = run_trials(DetectionRun(load_recipe(REPO / "configs" / "demo" / config, fast), "random", out,
                                      data_root=data, quiet=True))
    seconds = time.perf_counter() - start
    log = (out / "log.txt").read_text()
    amp = "training loop: detectron2's AMPTrainer" in log or device.type != "cuda"
    values = [v for task in summary["mean"].values() for v in task.values() if v is not None]
    return {"status": "pass" if amp and values and all(math.isfinite(v) for v in values) else "fail",
            "mean": summary["mean"], "seconds_20_iterations_and_evaluation": round(seconds, 1), "amp": amp}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else None)
    parser.add_argument("--methods", nargs="+", default=["simclr", "mocov2", "byol", "swav", "simsiam"])
    args = parser.parse_args()
    if args.device is None:
        sys.exit("error: no GPU here; run on a GPU machine, or pass --device cpu for a run of the script on the CPU")
    device = torch.device(args.device)
    from sslt_demo.writer import make_demo_data

    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    data = work / "demo"
    make_demo_data(data, size_name="small")
    print(json.dumps({"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
                      "torch": torch.__version__, "cuda": torch.version.cuda, "work": str(work)}), flush=True)
    results = [check(f"pretrain-{m}", device)(pretrain_check)(m, data, work, device) for m in args.methods]
    results.append(check("nccl-syncbn", device)(nccl_check)(device))
    results.append(check("tensor-views", device)(tensor_views_check)(data, device))
    results.append(check("knn-torch", device)(knn_check)(device))
    results.append(check("knn-faiss-gpu", device)(faiss_gpu_check)(device))
    results.append(check("linear-probe", device)(linear_check)(data, device))
    for name, config in (("faster-rcnn-r50-c4", "voc07.yaml"), ("mask-rcnn-r50-c4", "coco_instseg.yaml")):
        results.append(check(f"detectron2-{name}", device)(detection_check)(config, data, work / name, device))
    failed = results.count(False)
    print(json.dumps({"checks": len(results), "failed": failed}))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
