"""Per-view augmentations of each method (each paper's appendix and official code), scaled to the crop size, and
the two data pipelines that apply them (train.data_pipeline).

Every view's parameters are drawn by pretrain/view_params.py from a generator seeded by (seed, epoch, image
index), as torchvision's transforms would draw them: the views of an image are the same whatever the number of
data workers, and a resumed run sees exactly the views it would have seen. No global RNG is touched.

- pil: worker processes decode with PIL and augment image by image with torchvision's functional ops.
- tensor: worker processes read the file's bytes and its size only; the training device decodes whole batches
  (nvJPEG on a GPU) and augments them as batched tensor ops (pretrain/tensor_views.py).
"""
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms import functional as TF

from pretrain.tensor_views import augment_batch, decodable_on_device, decode_batch
from pretrain.view_params import SOLARIZE_THRESHOLD, sample_view
from sslt_core.errors import CorruptImageError
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
    # the blur kernel (view_params.blur_kernel): "pil" covers the Gaussian as PIL's GaussianBlur, which MoCo v2,
    # SimSiam and SwAV use; "tenth" is 10% of the crop, as SimCLR's and BYOL's TF code
    blur_kernel: str = "pil"


MOCO_V2 = ViewRecipe()  # also SimSiam's
SIMCLR = ViewRecipe(scale=(0.08, 1.0), jitter=(0.8, 0.8, 0.8, 0.2), blur_kernel="tenth")
BYOL_1 = ViewRecipe(scale=(0.08, 1.0), jitter=(0.4, 0.4, 0.2, 0.1), blur_p=1.0, blur_kernel="tenth")
BYOL_2 = ViewRecipe(scale=(0.08, 1.0), jitter=(0.4, 0.4, 0.2, 0.1), blur_p=0.1, solarize_p=0.2, blur_kernel="tenth")
SWAV_LARGE = ViewRecipe(scale=(0.14, 1.0), jitter=(0.8, 0.8, 0.8, 0.2))
SWAV_SMALL = ViewRecipe(size_fraction=96 / 224, scale=(0.05, 0.14), jitter=(0.8, 0.8, 0.8, 0.2))


def apply_pil(image, params):
    """One view of a PIL image: torchvision's functional ops with the view's parameters (a PIL image)."""
    image = TF.resized_crop(image, *params.crop, [params.size, params.size], antialias=True)
    if params.jitter:
        order, brightness, contrast, saturation, hue = params.jitter
        for op in order:
            if op == 0 and brightness is not None:
                image = TF.adjust_brightness(image, brightness)
            elif op == 1 and contrast is not None:
                image = TF.adjust_contrast(image, contrast)
            elif op == 2 and saturation is not None:
                image = TF.adjust_saturation(image, saturation)
            elif op == 3 and hue is not None:
                image = TF.adjust_hue(image, hue)
    if params.grayscale:
        image = TF.rgb_to_grayscale(image, num_output_channels=3)
    if params.blur:
        image = TF.gaussian_blur(image, [params.blur[0]] * 2, [params.blur[1]] * 2)
    if params.solarize:
        image = TF.solarize(image, SOLARIZE_THRESHOLD)
    if params.flip:
        image = TF.hflip(image)
    return image


def view_stream(seed, epoch, index):
    """The generator of image `index`'s views in `epoch`."""
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}/{epoch}/{index}".encode()))


class SeededViews(torch.utils.data.Dataset):
    """An ImageFolder's views, image i of epoch e drawn from view_stream(seed, e, i).
    pipeline "pil": (list of normalised view tensors, label); "tensor": ((file bytes, [ViewParams per view], path,
    whether the device may decode it), label), decoded and augmented later by `to_device_views`."""

    def __init__(self, image_folder, recipes, image_size, seed=0, pipeline="pil"):
        self.images, self.recipes, self.image_size = image_folder, tuple(recipes), image_size
        self.seed, self.epoch, self.pipeline = seed, 0, pipeline

    def __len__(self):
        return len(self.images)

    def _params(self, index, height, width):
        stream = view_stream(self.seed, self.epoch, index)
        return [sample_view(r, height, width, self.image_size, stream) for r in self.recipes]

    def __getitem__(self, index):
        path, label = self.images.samples[index]
        if self.pipeline == "tensor":
            data = Path(path).read_bytes()
            try:
                with Image.open(path) as header:  # the size only: no decoding here
                    width, height = header.size
                    device_decodable = decodable_on_device(header)
            except OSError as error:
                raise CorruptImageError(f"cannot decode image {path} ({error}); delete or re-download that "
                                        "file") from None
            encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
            return (encoded, self._params(index, height, width), str(path), device_decodable), label
        image = self.images.loader(path)
        views = [apply_pil(image, p) for p in self._params(index, image.height, image.width)]
        return [TF.normalize(TF.to_tensor(v), IMAGENET_MEAN, IMAGENET_STD) for v in views], label


def collate(batch):
    """Default collation for PIL views; lists of bytes and parameters for the tensor pipeline."""
    if isinstance(batch[0][0], tuple):
        return [item[0] for item in batch], torch.tensor([item[1] for item in batch])
    return torch.utils.data.default_collate(batch)


def to_device_views(batch, device):
    """The views of a batch on `device`: as they are (pil), or decoded and augmented there (tensor)."""
    if isinstance(batch[0], torch.Tensor):  # the views (a pinned tensor pipeline batch may turn tuples into lists)
        return [view.to(device, non_blocking=True) for view in batch]
    encoded, params, names, device_decodable = zip(*batch)
    images = decode_batch(list(encoded), device, names, device_decodable)
    return [augment_batch(images, [p[v] for p in params]) for v in range(len(params[0]))]
