"""The five losses, each as its paper writes it, on already computed embeddings.

All take per-rank batches; where a loss couples samples (SimCLR's negatives, SwAV's equipartition) the
coupling is global across ranks (sslt_core/engine/distributed.py), so the loss of a batch split over ranks equals
the loss of the whole batch on one process.
"""
import math

import torch
import torch.nn.functional as F

from pretrain.distributed import all_reduce, gather_with_grad, rank


def nt_xent(z1, z2, temperature=0.1):
    """SimCLR (Chen et al. 2020, eq. 1): 2N views, the positive of view i is its pair, the other 2N-2 are
    negatives. Negatives come from every rank, with gradients. At the official TF code's scale
    (objective.py add_contrastive_loss: loss_a + loss_b, each a mean over the N anchors of one view): twice the
    paper's mean over all 2N anchors, which matters under LARS (BN and bias steps, the weight decay's share)."""
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    n = z1.shape[0]
    all_z1, all_z2 = gather_with_grad(z1), gather_with_grad(z2)
    total = all_z1.shape[0]
    candidates = torch.cat([all_z1, all_z2])  # [2 * total, d]
    offset = rank() * n  # this rank's rows in the gathered batch
    anchors = torch.cat([z1, z2])  # [2n, d]
    own = torch.cat([torch.arange(n) + offset, torch.arange(n) + total + offset]).to(z1.device)
    is_self = F.one_hot(own, 2 * total).bool()  # an anchor is not its own negative
    logits = (anchors @ candidates.T / temperature).masked_fill(is_self, float("-inf"))
    positives = torch.cat([own[n:], own[:n]])
    return 2 * F.cross_entropy(logits, positives)  # the mean over 2n anchors, n of each view: loss_a + loss_b


def info_nce(q, k, queue, temperature=0.2):
    """MoCo (He et al. 2020, eq. 1): query q against its key k (positive) and the queue (negatives)."""
    q, k = F.normalize(q, dim=1), F.normalize(k, dim=1)
    positive = (q * k).sum(1, keepdim=True)
    negatives = q @ queue.T
    logits = torch.cat([positive, negatives], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))


def byol_regression(p, z):
    """BYOL (Grill et al. 2020, eq. 2): ||p/||p|| - z/||z|| ||^2 = 2 - 2 cos(p, z), z from the target (no grad)."""
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


def negative_cosine(p, z, stop_gradient=True):
    """SimSiam (Chen & He 2021, eq. 1): D(p, z) = -cos(p, stopgrad(z))."""
    return -F.cosine_similarity(p, z.detach() if stop_gradient else z, dim=1).mean()


def softmax_cross_entropy(p, z, stop_gradient=True):
    """SimSiam's cross-entropy variant (sec. 4.4): D(p, z) = -softmax(z) . log softmax(p)."""
    z = z.detach() if stop_gradient else z
    return -(F.softmax(z, dim=1) * F.log_softmax(p, dim=1)).sum(1).mean()


@torch.no_grad()
def sinkhorn(scores, epsilon=0.05, iterations=3):
    """SwAV's Sinkhorn-Knopp (Caron et al. 2020, sec. 3.1 and A.1): soft codes [B, K] whose rows (samples) sum
    to 1 and whose columns (prototypes) sum to about B/K, the batch B counted over every rank.

    The same iterations as SwAV's code, run in fp32 (or the input's higher precision) and in the log domain:
    exp(s / epsilon) can neither overflow nor underflow to an all-zero prototype row, whatever epsilon and the
    precision of `scores`.
    """
    log_q = scores.to(torch.promote_types(scores.dtype, torch.float32)).T / epsilon  # [K, B_local], fp32 or more
    k = log_q.shape[0]
    b = all_reduce(torch.tensor(float(log_q.shape[1]), device=log_q.device, dtype=log_q.dtype))
    for _ in range(iterations):
        # each prototype gets 1/K of the mass: a sum over the samples of every rank
        top = all_reduce(log_q.max(dim=1, keepdim=True).values.clone(), op="max")
        rows = all_reduce(torch.exp(log_q - top).sum(dim=1, keepdim=True)).log() + top
        log_q = log_q - rows - math.log(k)
        # each sample gets 1/B
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - torch.log(b)
    return torch.exp(log_q + torch.log(b)).T


def swapped_prediction(scores_per_view, codes_per_view, temperature=0.1):
    """SwAV (eq. 2 and 3): predict the code of one view from the scores of every other view; mean over pairs.

    `codes_per_view` holds the codes of the views that get codes (the two large crops); `scores_per_view` the
    prototype scores of all views."""
    total, pairs = 0.0, 0
    for i, codes in enumerate(codes_per_view):
        for j, scores in enumerate(scores_per_view):
            if j == i:
                continue
            total = total - (codes * F.log_softmax(scores / temperature, dim=1)).sum(1).mean()
            pairs += 1
    return total / pairs


def collapse_level(num_prototypes):
    """SwAV's loss when every prediction is uniform: ln K (a loss stuck there is collapse)."""
    return math.log(num_prototypes)
