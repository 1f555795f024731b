"""Label-free diagnostics of a representation: effective rank, spectrum, power-law decay, alignment, uniformity.

All in float64 (on the device the features are on), on an N x D matrix of embeddings:

- RankMe (Garrido, Balestriero, Najman, LeCun, ICML 2023, eq. 1): with s the singular values of the embedding
  matrix (not centred, as the paper), p_k = s_k / ||s||_1 + eps, RankMe = exp(-sum_k p_k log p_k). It ranks runs
  of one method (a checkpoint, a hyperparameter), not methods against each other (the authors' caveat).
- The covariance spectrum (Jing, Vincent, LeCun, Tian, ICLR 2022, Fig. 2): the eigenvalues of the centred
  embeddings' covariance, sorted, plotted on a log scale; dimensional collapse shows as a cliff.
- alpha-ReQ (Agrawal et al., NeurIPS 2022): lambda_k ~ k^-alpha fitted by least squares in log-log over a stated
  index range of that spectrum, with the fit's R^2.
- Alignment and uniformity (Wang & Isola, ICML 2020, sec. 4.1, their `align_loss` with alpha = 2 and
  `uniform_loss` with t = 2), on l2-normalised features: alignment = E ||f(x) - f(x+)||^2 over positive pairs,
  uniformity = log E exp(-t ||f(x) - f(y)||^2) over distinct pairs.
"""
import math

import torch

from sslt_core.errors import DatasetError

RANKME_EPS = 1e-7  # the paper's epsilon
UNIFORMITY_T = 2.0  # Wang & Isola's t
# A warning fires when the effective rank of the backbone output is below this fraction of min(N, D) while its
# output std is healthy (dimensional collapse, Jing et al. 2022); the paper's healthy ResNet-50s sit far above it.
DIMENSIONAL_COLLAPSE_FRACTION = 0.02


def _matrix(features, what="features"):
    z = torch.as_tensor(features).double()
    if z.ndim != 2 or z.shape[0] < 2 or z.shape[1] < 1:
        raise DatasetError(f"{what}: need an N x D matrix with N >= 2, got shape {tuple(z.shape)}")
    if not torch.isfinite(z).all():
        raise DatasetError(f"{what}: NaN or infinite values; the encoder's weights are broken")
    return z


def rankme(features, eps=RANKME_EPS):
    """exp of the entropy of the normalised singular values (Garrido et al. 2023, eq. 1); 0 for all-zero features."""
    s = torch.linalg.svdvals(_matrix(features))
    total = s.sum()
    if total == 0:
        return 0.0
    p = s / total + eps
    return math.exp(-(p * p.log()).sum().item())


def covariance_spectrum(features):
    """Eigenvalues of the centred features' covariance (1/(N-1) normalisation), descending, as float64 CPU tensor
    of length min(N, D) (the rest are exactly 0)."""
    z = _matrix(features)
    centred = z - z.mean(dim=0, keepdim=True)
    return (torch.linalg.svdvals(centred) ** 2 / (z.shape[0] - 1)).cpu()


def default_fit_range(count):
    """1-based indices (first, last) of the spectrum alpha is fitted over: from the 10th eigenvalue (the head is
    not a power law) to half of the non-zero part (the sample spectrum's tail is biased when N is near D), or the
    whole spectrum when that leaves fewer than 5 points."""
    first, last = 10, count // 2
    return (first, last) if last - first + 1 >= 5 else (1, count)


def alpha_req(spectrum, fit_range=None):
    """{"alpha", "r2", "fit_range"}: the decay of lambda_k ~ k^-alpha, a least-squares line through
    (log k, log lambda_k) for k in fit_range (1-based, inclusive), and that line's coefficient of determination."""
    eigen = torch.as_tensor(spectrum).double().cpu()
    positive = int((eigen > eigen[0] * 1e-12).sum()) if len(eigen) and eigen[0] > 0 else 0
    if positive < 2:
        return {"alpha": None, "r2": None, "fit_range": None,
                "note": f"{positive} non-zero eigenvalue(s): the features have collapsed to a point or a line"}
    first, last = fit_range or default_fit_range(positive)
    if not 1 <= first < last <= positive:
        raise DatasetError(f"alpha-ReQ fit range {first}..{last} must lie within 1..{positive} (the non-zero "
                           "eigenvalues) and hold at least 2 of them")
    k = torch.arange(first, last + 1, dtype=torch.float64)
    x, y = k.log(), eigen[first - 1:last].log()
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    fitted = y.mean() + slope * (x - x.mean())
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 if total == 0 else 1 - (((y - fitted) ** 2).sum() / total).item()
    return {"alpha": -slope.item(), "r2": r2, "fit_range": [first, last]}


def _normalised(features, what):
    return torch.nn.functional.normalize(_matrix(features, what), dim=1)


def alignment(features, positives):
    """E ||f(x) - f(x+)||^2 of l2-normalised positive pairs (row i of `features` with row i of `positives`)."""
    a, b = _normalised(features, "alignment views"), _normalised(positives, "alignment positives")
    if a.shape != b.shape:
        raise DatasetError(f"alignment: the two views differ in shape, {tuple(a.shape)} and {tuple(b.shape)}")
    return (a - b).pow(2).sum(dim=1).mean().item()


def uniformity(features, t=UNIFORMITY_T, block=2048):
    """log E exp(-t ||f(x) - f(y)||^2) over the N(N-1) ordered pairs of distinct rows of the l2-normalised
    features; computed in row blocks (N = 25,600 would need a 5 GB distance matrix) with a log-sum-exp."""
    z = _normalised(features, "uniformity features")
    n = z.shape[0]
    sums = []
    for start in range(0, n, block):
        rows = z[start:start + block]
        squared = (2 - 2 * rows @ z.T).clamp_(min=0)  # ||a - b||^2 of unit vectors
        logits = -t * squared
        index = torch.arange(len(rows), device=z.device)
        logits[index, start + index] = -math.inf  # a row with itself is not a pair
        sums.append(torch.logsumexp(logits.flatten(), dim=0))
    return (torch.logsumexp(torch.stack(sums), dim=0) - math.log(n * (n - 1))).item()


def dimensional_collapse_warning(rank, count, dim, output_std):
    """A message when the effective rank is below DIMENSIONAL_COLLAPSE_FRACTION of min(N, D) while the output
    std is healthy (at least half of 1/sqrt(D); complete collapse is the std monitor's to report), else None."""
    limit = DIMENSIONAL_COLLAPSE_FRACTION * min(count, dim)
    if rank < limit and output_std >= 0.5 / math.sqrt(dim):
        return (f"effective rank (RankMe) {rank:.1f} is below {DIMENSIONAL_COLLAPSE_FRACTION:.0%} of "
                f"min(N={count}, D={dim}) while the output std {output_std:.4f} looks healthy: the representation "
                "uses few dimensions (dimensional collapse, Jing et al. 2022)")
    return None


def summary(features, prefix=""):
    """RankMe, the spectrum and alpha-ReQ of one embedding matrix, as a flat record."""
    spectrum = covariance_spectrum(features)
    fit = alpha_req(spectrum)
    return {f"{prefix}rankme": rankme(features), f"{prefix}alpha": fit["alpha"], f"{prefix}alpha_r2": fit["r2"],
            f"{prefix}alpha_fit_range": fit["fit_range"], f"{prefix}spectrum": spectrum.tolist(),
            f"{prefix}samples": int(torch.as_tensor(features).shape[0]),
            f"{prefix}dim": int(torch.as_tensor(features).shape[1])}
