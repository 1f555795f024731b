"""The random parameters of one augmented view, drawn as torchvision's transforms draw them.

`sample_view(recipe, height, width, generator)` makes exactly the draws, in exactly the order, that
torchvision's Compose([RandomResizedCrop, RandomApply([ColorJitter]), RandomGrayscale, RandomApply([GaussianBlur]),
RandomSolarize, RandomHorizontalFlip]) makes from the global RNG, but from `generator`: seeded by (seed, epoch,
image index), the same parameters whatever process or device applies them. Both data pipelines apply these
parameters: the PIL one image by image with torchvision's functional ops (pretrain/augment.py), the tensor one on
whole batches on the training device (pretrain/tensor_views.py).
"""
import math
from dataclasses import dataclass

import torch

CROP_RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's default aspect ratios
BLUR_SIGMA = (0.1, 2.0)
BLUR_COVER = 4  # sigmas on each side a "pil" blur kernel covers: the Gaussian's mass left out is below 1e-4
SOLARIZE_THRESHOLD = 128  # of 255


@dataclass(frozen=True)
class ViewParams:
    size: int  # output side in pixels
    crop: tuple  # (top, left, height, width) in the source image
    jitter: tuple | None  # (order of the 4 ops: 0 brightness 1 contrast 2 saturation 3 hue, b, c, s, h), if applied
    grayscale: bool
    blur: tuple | None  # (kernel size, sigma), if applied
    solarize: bool
    flip: bool


def _uniform(low, high, generator):
    return float(torch.empty(1).uniform_(low, high, generator=generator))


def _rand(generator):
    return float(torch.rand(1, generator=generator))


def crop_params(height, width, scale, ratio, generator):
    """RandomResizedCrop.get_params: 10 tries at a random area and aspect, then the central crop."""
    area = height * width
    log_ratio = torch.log(torch.tensor(ratio))
    for _ in range(10):
        target_area = area * _uniform(scale[0], scale[1], generator)
        aspect = torch.exp(torch.empty(1).uniform_(log_ratio[0], log_ratio[1], generator=generator)).item()
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            i = int(torch.randint(0, height - h + 1, size=(1,), generator=generator))
            j = int(torch.randint(0, width - w + 1, size=(1,), generator=generator))
            return i, j, h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def jitter_params(strengths, generator):
    """ColorJitter.get_params: a random order of the four ops, then each factor (brightness, contrast and saturation
    in [max(0, 1 - x), 1 + x], hue in [-x, x]; None, and no draw, for a strength of 0)."""
    order = tuple(int(k) for k in torch.randperm(4, generator=generator))
    b, c, s, h = strengths
    factors = [_uniform(max(0.0, 1 - x), 1 + x, generator) if x else None for x in (b, c, s)]
    return (order, *factors, _uniform(-h, h, generator) if h else None)


def blur_kernel(size, kind="pil"):
    """The blur's kernel side, odd. "tenth": about 10% of the crop (SimCLR B.1; SimCLR's and BYOL's TF code cut
    the Gaussian there). "pil", for the recipes that blur with PIL's GaussianBlur(radius=sigma) (MoCo v2, SimSiam,
    SwAV), which does not truncate: also wide enough to cover BLUR_COVER sigmas of the largest sigma (17 px; SwAV's
    96 px crops would otherwise get 9, cutting sigma 2 at 2 sigma), at most the crop (reflect padding)."""
    tenth = max(3, int(0.1 * size) // 2 * 2 + 1)
    if kind == "tenth":
        return tenth
    return max(tenth, min(2 * math.ceil(BLUR_COVER * BLUR_SIGMA[1]) + 1, (size - 1) // 2 * 2 + 1))


def view_size(recipe, image_size):
    return max(8, round(image_size * recipe.size_fraction))


def sample_view(recipe, height, width, image_size, generator):
    """The parameters of one view of an image of `height` x `width` pixels (a ViewRecipe of pretrain/augment.py)."""
    size = view_size(recipe, image_size)
    crop = crop_params(height, width, recipe.scale, CROP_RATIO, generator)
    jitter = jitter_params(recipe.jitter, generator) if not recipe.jitter_p < _rand(generator) else None
    grayscale = _rand(generator) < recipe.grayscale_p
    blur = None
    if not recipe.blur_p < _rand(generator):
        blur = (blur_kernel(size, recipe.blur_kernel), _uniform(*BLUR_SIGMA, generator))
    solarize = recipe.solarize_p > 0 and _rand(generator) < recipe.solarize_p
    flip = _rand(generator) < 0.5
    return ViewParams(size, crop, jitter, grayscale, blur, solarize, flip)
