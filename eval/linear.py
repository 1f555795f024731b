"""Linear classification on a frozen encoder (MoCo's and SimSiam's main_lincls.py).

Protocols, as the papers' code runs them:
- moco:    SGD lr 30 (batch 256), momentum 0.9, wd 0, 100 epochs, lr x0.1 at epochs 60 and 80 (He et al. 2020).
- simsiam: SGD in apex LARC(trust_coefficient=0.001, clip=False) (`--lars`; every parameter adapted, the bias
           included), lr 0.1 x B/256 (batch 4096), momentum 0.9, wd 0, 90 epochs, cosine (Chen & He 2021, A).
Both set the lr once per epoch (`adjust_learning_rate` at the start of each epoch).
A different batch size scales the lr linearly; a different number of epochs scales the milestones.

Two ways to train: on cached features of the center-cropped images (fast), or on features of randomly
resized crops and flips computed on the fly each epoch (faithful: what the papers ran). The backbone stays
frozen in eval mode either way, and its BN statistics are checked to be unchanged afterwards.
"""
import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torchvision import transforms

from eval.knn import accuracy
from sslt_core.engine import ParamScheduler, ProgressBar, TrainingDiverged, TrainLoop
from sslt_core.images import IMAGENET_MEAN, IMAGENET_STD
from sslt_core.optim import LARC


@dataclass(frozen=True)
class LinearProtocol:
    optimizer: str  # sgd | larc (apex LARC around SGD, as SimSiam's main_lincls.py --lars)
    lr: float  # at batch_size
    batch_size: int
    epochs: int
    milestones: tuple = ()  # epochs where the lr drops x0.1; empty: cosine decay
    weight_decay: float = 0.0
    momentum: float = 0.9


PROTOCOLS = {
    "moco": LinearProtocol("sgd", lr=30.0, batch_size=256, epochs=100, milestones=(60, 80)),
    "simsiam": LinearProtocol("larc", lr=0.1 * 4096 / 256, batch_size=4096, epochs=90),
}


def adapted(protocol, batch_size=None, epochs=None):
    """The protocol at another batch size (linear lr scaling) or length (milestones scaled with it)."""
    if batch_size is not None:
        protocol = replace(protocol, lr=protocol.lr * batch_size / protocol.batch_size, batch_size=batch_size)
    if epochs is not None:
        milestones = tuple(round(m * epochs / protocol.epochs) for m in protocol.milestones)
        protocol = replace(protocol, epochs=epochs, milestones=milestones)
    return protocol


def lr_at(protocol, epoch):
    """The lr of an epoch (main_lincls.py's adjust_learning_rate, called at the start of each epoch)."""
    if protocol.milestones:
        return protocol.lr * 0.1 ** sum(epoch >= m for m in protocol.milestones)
    return protocol.lr * 0.5 * (1 + math.cos(math.pi * epoch / protocol.epochs))


def train_transform(crop_size):
    return transforms.Compose([
        transforms.RandomResizedCrop(crop_size),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def bn_statistics(encoder):
    """Copies on the CPU, comparable wherever the encoder moves later (torch.equal refuses two devices)."""
    return {k: v.detach().cpu().clone() for k, v in encoder.state_dict().items()
            if "running" in k or "num_batches" in k}


class LinearProbeDiverged(TrainingDiverged):
    """A non-finite loss of the linear classifier."""


def _classifier(dim, num_classes, seed):
    layer = torch.nn.Linear(dim, num_classes)
    with torch.no_grad():  # as in MoCo / SimSiam main_lincls.py; from its own generator, not the global RNG
        layer.weight.normal_(0.0, 0.01, generator=torch.Generator().manual_seed(seed))
        layer.bias.zero_()
    return layer


def _optimizer(protocol, layer):
    if protocol.optimizer == "larc":
        return LARC(layer.parameters(), lr=protocol.lr, weight_decay=protocol.weight_decay,
                    momentum=protocol.momentum)
    return torch.optim.SGD(layer.parameters(), lr=protocol.lr, momentum=protocol.momentum,
                           weight_decay=protocol.weight_decay)


def train_linear(batches_per_epoch, dim, num_classes, protocol, seed=0, desc="linear"):
    """Train a linear classifier on the engine's loop; `batches_per_epoch(epoch, generator)` yields (features,
    labels) batches; the lr is set at the start of each epoch. One process: the loss is not averaged over ranks."""
    layer = _classifier(dim, num_classes, seed)
    optimizer = _optimizer(protocol, layer)
    generator = torch.Generator().manual_seed(seed)

    def forward(batch):
        features, labels = batch
        return torch.nn.functional.cross_entropy(layer(features), labels)

    def diverged(loop, loss):
        return LinearProbeDiverged(f"linear probe loss is {loss} at epoch {loop.epoch}: lower the lr "
                                   f"(now {protocol.lr:g}) or use --protocol simsiam")

    hooks = [ParamScheduler(optimizer, lr=lambda epoch: lr_at(protocol, epoch), unit="epoch"),
             ProgressBar(desc, per="epoch")]
    TrainLoop(forward, optimizer, lambda epoch, skip: list(batches_per_epoch(epoch, generator)), protocol.epochs,
              hooks=hooks, diverged=diverged, sync_loss=False).run()
    return layer


def cached_batches(features, labels, batch_size):
    features, labels = torch.as_tensor(features, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long)

    def batches(epoch, generator):
        order = torch.randperm(len(features), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start:start + batch_size]
            yield features[index], labels[index]

    return batches


def augmented_batches(encoder, dataset, batch_size, device):
    """Features of freshly augmented images each epoch, through the frozen encoder in eval mode."""

    def batches(epoch, generator):
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator)
        for images, labels in loader:
            with torch.no_grad():
                yield encoder(images.to(device)).float().cpu(), labels

    return batches


def evaluate_linear(layer, features, labels):
    with torch.no_grad():
        logits = layer(torch.as_tensor(features, dtype=torch.float32))
    rankings = torch.argsort(logits, dim=1, descending=True, stable=True).numpy()
    return accuracy(rankings, np.asarray(labels))


def check_bn_unchanged(encoder, before):
    after = bn_statistics(encoder)
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    if moved:
        raise RuntimeError(f"the frozen backbone's BN statistics moved ({moved[:2]}...): it was not in eval mode")


def linear_probe(encoder, train, val, num_classes, protocol, augmented_train_set=None, seed=0, device=None):
    """Train on `train` = (features, labels) (cached mode) or on `augmented_train_set` through `encoder` (faithful
    mode); return (top-1/top-5 on `val` features, which mode ran)."""
    encoder.eval()
    before = bn_statistics(encoder)
    if augmented_train_set is None:
        batches, mode = cached_batches(*train, protocol.batch_size), "cached center-crop features (fast)"
    else:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        batches = augmented_batches(encoder.to(device), augmented_train_set, protocol.batch_size, device)
        mode = "features of augmented crops on the fly (faithful)"
    layer = train_linear(batches, train[0].shape[1], num_classes, protocol, seed=seed)
    check_bn_unchanged(encoder.cpu(), before)
    return evaluate_linear(layer, *val), mode
