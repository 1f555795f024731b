"""Per-view augmentations of each method (each paper's appendix and official code), scaled to the crop size.

Every view is drawn from a random stream seeded by (seed, epoch, image index), so the views of an image are
the same whatever the number of data workers, and a resumed run sees exactly the views it would have seen.
"""
import random
import zlib
from dataclasses import dataclass

import torch
from torchvision import transforms

from sslt_core.images import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class ViewRecipe:
    size_fraction: float = 1.0  # crop size / the run's image size (SwAV's 96 px crops: 96/224)
    scale: tuple = (0.2, 1.0)  # RandomResizedCrop area range
    jitter: tuple = (0.4, 0.4, 0.4, 0.1)  # brightness, contrast, saturation, hue
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    solarize_p: float = 0.0


MOCO_V2 = ViewRecipe()  # also SimSiam's
SIMCLR = ViewRecipe(scale=(0.08, 1.0), jitter=(0.8, 0.8, 0.8, 0.2))
BYOL_1 = ViewRecipe(scale=(0.08, 1.0), jitter=(0.4, 0.4, 0.2, 0.1), blur_p=1.0)
BYOL_2 = ViewRecipe(scale=(0.08, 1.0), jitter=(0.4, 0.4, 0.2, 0.1), blur_p=0.1, solarize_p=0.2)
SWAV_LARGE = ViewRecipe(scale=(0.14, 1.0), jitter=(0.8, 0.8, 0.8, 0.2))
SWAV_SMALL = ViewRecipe(size_fraction=96 / 224, scale=(0.05, 0.14), jitter=(0.8, 0.8, 0.8, 0.2))


def build_view(recipe, image_size):
    size = max(8, round(image_size * recipe.size_fraction))
    kernel = max(3, int(0.1 * size) // 2 * 2 + 1)  # ~10% of the crop, odd (SimCLR B.1)
    steps = [
        transforms.RandomResizedCrop(size, scale=recipe.scale),
        transforms.RandomApply([transforms.ColorJitter(*recipe.jitter)], p=recipe.jitter_p),
        transforms.RandomGrayscale(p=recipe.grayscale_p),
        transforms.RandomApply([transforms.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=recipe.blur_p),
        transforms.RandomSolarize(128, p=recipe.solarize_p),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ]
    return transforms.Compose([s for s in steps if not (isinstance(s, transforms.RandomSolarize) and s.p == 0)])


class MultiView:
    """Turns one image into the list of a method's views."""

    def __init__(self, recipes, image_size):
        self.recipes = tuple(recipes)
        self.views = [build_view(r, image_size) for r in self.recipes]

    def __call__(self, image):
        return [view(image) for view in self.views]


class SeededViews(torch.utils.data.Dataset):
    """An ImageFolder whose views of image i in epoch e come from a stream seeded by (seed, e, i)."""

    def __init__(self, image_folder, multi_view, seed=0):
        self.images, self.multi_view, self.seed, self.epoch = image_folder, multi_view, seed, 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image, label = self.images[index]
        stream = zlib.crc32(f"{self.seed}/{self.epoch}/{index}".encode())
        state = torch.random.get_rng_state(), random.getstate()
        torch.manual_seed(stream)
        random.seed(stream)
        try:
            return self.multi_view(image), label
        finally:
            torch.random.set_rng_state(state[0])
            random.setstate(state[1])
