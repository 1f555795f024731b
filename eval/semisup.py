"""Semi-supervised fine-tuning of the whole network on a labelled subset of ImageNet (1% / 10%), each paper's recipe
as a named preset (REFERENCE.md section 7), on the training engine (sslt_core/engine).

- simclr   (SimCLR v1 app. B.5; run.py, TF1): SGD Nesterov 0.9 (tf.train.MomentumOptimizer: the lr outside the
           momentum, as torch's SGD), lr 0.05 x B/256 at B 4096, no weight decay, no warm-up, cosine decay per step
           (run.py decays every mode), 60 epochs (1%) / 30 (10%); head N(0, 0.01), bias 0 (model_util.linear_layer).
- simclrv2 (SimCLR v2 app. B; tf2/run.py --ft_proj_selector=1 --zero_init_logits_layer): LARS (tf2/lars_optimizer.py:
           lr inside the momentum; biases, BN and the supervised head neither decayed nor adapted), lr 0.005 x
           sqrt(B) at B 1024, no weight decay, no warm-up, cosine, 60 / 30 epochs; the first layer of the
           projection head (Linear + BN + ReLU) kept when the checkpoint has one, under a zero-initialised head.
- byol     (BYOL app. C.1): SGD Nesterov 0.9, no weight decay, batch 1024; lr in {0.005, 0.01, 0.02, 0.05, 0.1} and
           {30, 50} epochs chosen on 10,009 images held out of the train images (not ImageNet val). The schedule is
           not stated there: cosine, as the SimCLR protocol BYOL follows; head as SimCLR's.
- swav     (swav/eval_semisup.py): SGD 0.9, no weight decay, trunk / head lr 1%: 0.02 / 5, 10%: 0.01 / 0.2 at
           batch 256, 20 epochs, x0.2 at epochs 12 and 16 (MultiStepLR, per epoch), SyncBN, head nn.Linear's default
           init; the best epoch on ImageNet val is reported (the record says the selection used the scored split).

All: random resized crop + flip for training, resize to crop/0.875 (256) and centre crop (224) to score; BN in train
mode (SyncBN over GPUs); the global batch split over the processes, the lr scaled from the recipe's batch by its
rule (linear; square root for simclrv2). A list of another size than 1% / 10% takes the recipe of the nearer
official size (on a log scale).
"""
import math
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from torchvision import transforms

from eval.features import build_encoder
from sslt_core.engine import (
    Checkpointer,
    EpochMonitor,
    EpochSampler,
    HookBase,
    MetricsWriter,
    ParamScheduler,
    ProgressBar,
    TrainLoop,
    distributed,
    load_checkpoint,
    precision_setup,
    to_channels_last,
)
from sslt_core.errors import ConfigError, OutputError
from sslt_core.images import CROP_RATIO, IMAGENET_MEAN, IMAGENET_STD
from sslt_core.optim import LARS
from sslt_core.safe_load import load_file

SIZES = {"1percent": 12811, "10percent": 128116}


@dataclass(frozen=True)
class Recipe:
    preset: str
    optimizer: str  # sgd | lars
    nesterov: bool
    lr: float  # the trunk's lr at batch_size
    batch_size: int
    epochs: int
    lr_scaling: str  # how lr follows another batch: linear | sqrt
    schedule: str  # cosine (per step, no warm-up) | multistep (per epoch)
    milestones: tuple = ()  # epochs where a multistep schedule multiplies the lr by gamma
    gamma: float = 0.2
    head_lr: float | None = None  # a separate lr for the new head (SwAV); None: the trunk's
    momentum: float = 0.9
    weight_decay: float = 0.0
    head_init: str = "normal"  # normal: N(0, 0.01), bias 0 | zeros | default: nn.Linear's own
    keep_projection: bool = False  # SimCLR v2: fine-tune from the projection head's first layer
    sync_bn: bool = True
    selection: str = "last"  # last | best-val (SwAV: best epoch on val) | heldout (BYOL: lr x epochs)
    lr_grid: tuple = ()  # selection "heldout": the lrs (at batch_size) and epochs tried
    epochs_grid: tuple = ()
    lr_at_reference: str = ""  # the paper's statement of the lr rule, for the record


def preset(name, size):
    """The recipe of preset `name` for subset size `size` ("1percent" or "10percent")."""
    one = size == "1percent"
    if name == "simclr":
        return Recipe("simclr", "sgd", True, lr=0.05 * 4096 / 256, batch_size=4096, epochs=60 if one else 30,
                      lr_scaling="linear", schedule="cosine", lr_at_reference="0.05 x B/256")
    if name == "simclrv2":
        return Recipe("simclrv2", "lars", False, lr=0.005 * math.sqrt(1024), batch_size=1024,
                      epochs=60 if one else 30, lr_scaling="sqrt", schedule="cosine", head_init="zeros",
                      keep_projection=True, lr_at_reference="0.005 x sqrt(B)")
    if name == "byol":
        return Recipe("byol", "sgd", True, lr=0.02, batch_size=1024, epochs=30, lr_scaling="linear",
                      schedule="cosine", selection="heldout", lr_grid=(0.005, 0.01, 0.02, 0.05, 0.1),
                      epochs_grid=(30, 50), lr_at_reference="chosen on the held-out images")
    if name == "swav":
        return Recipe("swav", "sgd", False, lr=0.02 if one else 0.01, head_lr=5.0 if one else 0.2, batch_size=256,
                      epochs=20, lr_scaling="linear", schedule="multistep", milestones=(12, 16), gamma=0.2,
                      head_init="default", selection="best-val", lr_at_reference="trunk / head lr at batch 256")
    raise ConfigError(f"unknown semisup protocol {name!r}; choose simclr, simclrv2, byol or swav")


PRESETS = ("simclr", "simclrv2", "byol", "swav")
HELDOUT = 10009  # BYOL app. C.1: the validation images held out of ImageNet train


def nearer_size(images):
    """The official subset whose size is nearer to `images` on a log scale."""
    return "1percent" if images < math.sqrt(SIZES["1percent"] * SIZES["10percent"]) else "10percent"


def scaled_lr(recipe, lr, batch_size):
    factor = batch_size / recipe.batch_size
    return lr * (math.sqrt(factor) if recipe.lr_scaling == "sqrt" else factor)


def adapted(recipe, batch_size=None, epochs=None, lr=None):
    """The recipe at another global batch (its lr, head lr and lr grid scaled by its rule), length (milestones
    scaled with it, the grid of epochs replaced) or trunk lr (the head's keeps its ratio; the grid replaced)."""
    if batch_size is not None and batch_size != recipe.batch_size:
        recipe = replace(recipe, lr=scaled_lr(recipe, recipe.lr, batch_size),
                         head_lr=None if recipe.head_lr is None else scaled_lr(recipe, recipe.head_lr, batch_size),
                         lr_grid=tuple(scaled_lr(recipe, v, batch_size) for v in recipe.lr_grid),
                         batch_size=batch_size)
    if epochs is not None:
        milestones = tuple(round(m * epochs / recipe.epochs) for m in recipe.milestones)
        recipe = replace(recipe, epochs=epochs, milestones=milestones,
                         epochs_grid=(epochs,) if recipe.epochs_grid else ())
    if lr is not None:
        head = None if recipe.head_lr is None else recipe.head_lr * lr / recipe.lr
        recipe = replace(recipe, lr=lr, head_lr=head, lr_grid=(lr,) if recipe.lr_grid else ())
    return recipe


def trunk_lr(recipe, steps_per_epoch):
    """(lr of the trunk as a function of t, unit of t): the ParamScheduler's schedule."""
    if recipe.schedule == "multistep":  # torch's MultiStepLR stepped once per epoch (eval_semisup.py)
        return (lambda epoch: recipe.lr * recipe.gamma ** sum(epoch >= m for m in recipe.milestones)), "epoch"
    total = recipe.epochs * steps_per_epoch  # SimCLR's cosine_decay(lr, step, total steps), no warm-up
    return (lambda step: recipe.lr * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))), "step"


def train_transform(crop):
    return transforms.Compose([transforms.RandomResizedCrop(crop), transforms.RandomHorizontalFlip(),
                               transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def test_transform(crop):
    return transforms.Compose([transforms.Resize(round(crop / CROP_RATIO)), transforms.CenterCrop(crop),
                               transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


# -- the network: the trunk, (SimCLR v2) the kept projection layer, the new head --------------------------------

PROJECTION_PREFIXES = ("projector.", "model.projector.", "module.projector.", "projection_head.",
                       "module.projection_head.", "head.layers.", "heads.0.", "neck.mlp.")


def _tensors(obj):
    """The flat tensor dicts of a checkpoint: the top level and one or two levels down."""
    found = []
    if isinstance(obj, dict):
        if obj and all(torch.is_tensor(v) for v in obj.values()):
            found.append(obj)
        for value in obj.values():
            if isinstance(value, dict):
                found += _tensors(value) if value is not obj else []
    return found


def projection_layer(weights, dim, trust=False):
    """(module, key) of the projection head's first layer in checkpoint `weights`: Linear(dim, hidden) with the
    BN after it when the checkpoint has one, then ReLU (SimCLR v2's ft_proj_selector=1); (None, None) without one."""
    if weights == "random":
        return None, None
    for state in _tensors(load_file(weights, trust)):
        for prefix in PROJECTION_PREFIXES:
            w = state.get(prefix + "0.weight")
            if w is None or w.ndim != 2 or w.shape[1] != dim:
                continue
            linear = nn.Linear(dim, w.shape[0], bias=prefix + "0.bias" in state)
            linear.load_state_dict({k: state[prefix + "0." + k] for k in linear.state_dict()})
            layers = [linear]
            if prefix + "1.running_mean" in state:
                affine = prefix + "1.weight" in state
                bn = nn.BatchNorm1d(w.shape[0], affine=affine)
                bn.load_state_dict({k: state[prefix + "1." + k] for k in bn.state_dict() if prefix + "1." + k in state},
                                   strict=False)
                layers.append(bn)
            return nn.Sequential(*layers, nn.ReLU(inplace=True)), prefix + "0"
    return None, None


class FineTuneNet(nn.Module):
    def __init__(self, trunk, projection, head):
        super().__init__()
        self.trunk, self.projection, self.head = trunk, projection, head

    def forward(self, images):
        features = self.trunk(images)
        if self.projection is not None:
            features = self.projection(features)
        return self.head(features)


def new_head(dim, classes, init, seed):
    with torch.random.fork_rng(devices=[]):  # nn.Linear's default init drawn from the run's seed
        torch.manual_seed(seed)
        head = nn.Linear(dim, classes)
    with torch.no_grad():
        if init == "zeros":
            head.weight.zero_()
            head.bias.zero_()
        elif init == "normal":
            head.weight.normal_(0.0, 0.01, generator=torch.Generator().manual_seed(seed))
            head.bias.zero_()
    return head


def build_model(weights, arch, trust, recipe, classes, seed=0):
    """(FineTuneNet, description): the whole network trainable; its head new (and the kept projection layer)."""
    trunk, description = build_encoder(weights, arch, seed=seed, trust=trust)
    trunk.requires_grad_(True)
    dim = trunk.layer4[-1].conv1.in_channels  # 2048 for ResNet-50, 512 for ResNet-18
    projection, kept = projection_layer(weights, dim, trust) if recipe.keep_projection else (None, None)
    width = dim if projection is None else projection[0].out_features
    model = FineTuneNet(trunk, projection, new_head(width, classes, recipe.head_init, seed))
    if recipe.keep_projection:
        description += f"; projection layer {kept} kept" if kept else "; no projection head in the checkpoint"
    return model, description


class _HeadExcludedLARS(LARS):
    """SimCLR v2's LARS: a group with adapt=False (the supervised head) takes plain momentum steps."""

    def update(self, p, group):
        return p.grad if not group.get("adapt", True) else super().update(p, group)


def make_optimizer(model, recipe):
    """The optimizer with two groups, trunk (+ kept projection layer) and head; the head's lr_scale is its lr's
    ratio to the trunk's (ParamScheduler multiplies the schedule by it)."""
    head = list(model.head.parameters())
    ids = {id(p) for p in head}
    trunk = [p for p in model.parameters() if id(p) not in ids]
    ratio = 1.0 if recipe.head_lr is None else recipe.head_lr / recipe.lr
    groups = [{"params": trunk, "lr_scale": 1.0, "name": "trunk"},
              {"params": head, "lr_scale": ratio, "name": "head", "adapt": False}]
    for group in groups:
        group["lr"] = recipe.lr * group["lr_scale"]
    if recipe.optimizer == "lars":
        return _HeadExcludedLARS(groups, lr=recipe.lr, weight_decay=recipe.weight_decay, momentum=recipe.momentum,
                                 lr_in_momentum=True)
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                           weight_decay=recipe.weight_decay)


# -- scoring -----------------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model, dataset, device, batch_size=256, workers=0, autocast=None, dtype=torch.float32):
    """Top-1 / top-5 (%) of `model` in eval mode on `dataset`, each process scoring its share (every world-th
    image), the counts summed over processes."""
    was_training = model.training
    model.eval()
    share = torch.utils.data.Subset(dataset, range(distributed.rank(), len(dataset), distributed.world_size()))
    loader = torch.utils.data.DataLoader(share, batch_size=batch_size, num_workers=workers,
                                         pin_memory=device.type == "cuda")
    counts = torch.zeros(3, dtype=torch.float64)
    for images, labels in loader:
        with autocast if autocast is not None else torch.autocast(device.type, enabled=False):
            logits = model(images.to(device, dtype))
        top = logits.float().topk(min(5, logits.shape[1]), dim=1).indices.cpu()
        hits = top == labels[:, None]
        counts += torch.tensor([hits[:, 0].sum(), hits.any(dim=1).sum(), len(labels)], dtype=torch.float64)
    if distributed.world_size() > 1:
        counts = counts.to(device)
        distributed.all_reduce(counts)
        counts = counts.cpu()
    model.train(was_training)
    return {"top1": 100.0 * float(counts[0] / counts[2]), "top5": 100.0 * float(counts[1] / counts[2])}


# -- training ----------------------------------------------------------------------------------------------------

class _TrainMode(HookBase):
    """The network in train mode each epoch (BN with batch statistics), or with BN in eval mode (`bn_eval`: the
    2-process test, where a sample's output must not depend on the split of the batch)."""

    def __init__(self, model, bn_eval=False):
        self.model, self.bn_eval = model, bn_eval

    def before_epoch(self, loop):
        self.model.train()
        if self.bn_eval:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()


def _trim_metrics(path, step):
    """Keep the metric lines up to the checkpoint's step (a killed run's later lines are written again)."""
    import json

    from sslt_core.atomic import write_bytes_atomic

    if not path.is_file():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):  # a line cut by a kill
            continue
    write_bytes_atomic(path, "".join(line + "\n" for line in kept).encode())


@dataclass
class Options:
    """How one fine-tuning runs (not what it measures)."""

    workers: int = 4
    seed: int = 0
    precision: str = "auto"  # auto: bf16 autocast on a GPU, fp32 on the CPU
    progress: bool = True
    resume: bool = False
    checkpoint_every: int = 0  # steps; 0: after each epoch only
    eval_batch_size: int = 256
    dtype: torch.dtype = torch.float32  # float64: the 2-process equality test
    bn_eval: bool = False  # the 2-process equality test
    max_steps: int = 0  # stop after this many steps (tests of a kill)


def finetune(model, train_set, recipe, folder, options, scored_set=None, device=None):
    """Fine-tune `model` on `train_set` (a SampleDataset) with `recipe`, in `folder` (checkpoint.pth, metrics.jsonl,
    tensorboard/); return (the per-epoch scores on `scored_set`: every epoch where the recipe selects the best
    epoch, else after the last one; the loop; the trained model). DDP over the processes of torchrun, the batch
    global."""
    folder = Path(folder)
    device = device or (torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available()
                        else torch.device("cpu"))
    world, rank = distributed.world_size(), distributed.rank()
    if recipe.batch_size % world:
        raise ConfigError(f"batch size {recipe.batch_size} does not split over {world} processes; pass a multiple")
    per_rank = recipe.batch_size // world
    if len(train_set) < recipe.batch_size:
        raise ConfigError(f"the subset holds {len(train_set)} images, fewer than one batch of {recipe.batch_size}; "
                          "pass a smaller --batch-size")
    autocast, channels_last, _ = precision_setup(device, options.precision)
    if options.dtype != torch.float32:
        autocast = None
    if device.type == "cuda" and world > 1 and recipe.sync_bn:  # SwAV's SyncBN, SimCLR's global BN
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device, options.dtype)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe)
    checkpoint = folder / "checkpoint.pth"
    history, start_step = [], 0
    if checkpoint.exists():
        if not options.resume:
            raise OutputError(f"{folder} holds a checkpoint of an earlier run; pass --resume to continue it or "
                              "choose another --output-dir")
        state = load_checkpoint(checkpoint, model, optimizer)
        start_step, history = state["step"], list(state.get("history", []))
    ddp = model if world == 1 else nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None)
    sampler = EpochSampler(len(train_set), per_rank, options.seed)
    steps_per_epoch = sampler.batches_per_epoch()

    def batches(epoch, skip):
        sampler.set_position(epoch, skip)
        train_set.epoch = epoch
        return torch.utils.data.DataLoader(train_set, batch_size=per_rank, sampler=sampler,
                                           num_workers=options.workers, drop_last=True,
                                           pin_memory=device.type == "cuda")

    def prepare(batch):
        images, labels = batch
        images = images.to(device, options.dtype, non_blocking=True)
        return (to_channels_last([images])[0] if channels_last else images), labels.to(device, non_blocking=True)

    def forward(batch):
        images, labels = batch
        logits = ddp(images)
        return nn.functional.cross_entropy(logits.float() if logits.dtype in (torch.bfloat16, torch.float16)
                                           else logits, labels)

    def score(loop):
        last = loop.epoch + 1 == recipe.epochs
        if scored_set is not None and (recipe.selection == "best-val" or last):
            result = evaluate(model, scored_set, device, options.eval_batch_size, options.workers, autocast,
                              options.dtype)
            history.append({"epoch": loop.epoch + 1, **result})
            loop.summary.update({"step": loop.step, "epoch": loop.epoch + 1,
                                 **{f"scored_{k}": v for k, v in result.items()}})

    schedule, unit = trunk_lr(recipe, steps_per_epoch)
    if start_step == 0 and rank == 0 and folder.exists():
        for name in ("metrics.jsonl",):
            (folder / name).unlink(missing_ok=True)
    if rank == 0:
        _trim_metrics(folder / "metrics.jsonl", start_step)
    hooks = [_TrainMode(model, options.bn_eval), ParamScheduler(optimizer, lr=schedule, unit=unit),
             ProgressBar(lambda loop: f"{recipe.preset} epoch {loop.epoch + 1}/{recipe.epochs}",
                         postfix={"loss": ".4f", "lr": ".4g"}, enabled=options.progress and rank == 0),
             EpochMonitor(score),
             MetricsWriter(folder / "metrics.jsonl", folder / "tensorboard", purge_step=start_step,
                           enabled=rank == 0),
             Checkpointer(checkpoint, model, optimizer, period=options.checkpoint_every,
                          extra=lambda loop, done: {"history": [h for h in history if h["epoch"] <= done],
                                                    "epochs_done": done})]
    loop = TrainLoop(forward, optimizer, batches, recipe.epochs, hooks=hooks, steps_per_epoch=steps_per_epoch,
                     start_step=start_step, max_steps=options.max_steps, prepare=prepare)
    loop.run()
    return history, loop, model


def select(history, selection):
    """The reported scores: the last epoch's, or (SwAV) the epoch of the best top-1 (the first of equal ones)."""
    if selection == "best-val":
        return max(history, key=lambda h: (h["top1"], -h["epoch"]))
    return history[-1]
