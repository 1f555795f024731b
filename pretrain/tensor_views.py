"""The tensor data path (train.data_pipeline: tensor): JPEGs decoded in batches on the training device (nvJPEG
through torchvision on a GPU, libjpeg-turbo on a CPU) and every view augmented as whole-batch tensor ops there,
with the per-image parameters of pretrain/view_params.py (so the same images as the PIL path's, up to decoding
and resampling arithmetic).

The ops are torchvision's tensor functional ops (torchvision/transforms/_functional_tensor.py) written for a
batch whose factors differ per image: brightness, contrast, saturation and hue in each image's own random order,
grayscale, Gaussian blur with each image's sigma (one grouped convolution), solarize, flip. Torchvision's own ops
take one factor for the whole batch; kornia's take a batch of factors but draw and order them their own way (its
ColorJitter applies the four ops in a fixed order), so neither applies the recipe's parameters as they are.
"""
import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms import functional as TF

from sslt_core.errors import CorruptImageError
from sslt_core.images import IMAGENET_MEAN, IMAGENET_STD

GRAY = (0.2989, 0.587, 0.114)  # torchvision's (and TF's) luma weights


def decodable_on_device(header):
    """Whether the device's batched decoder may decode an image, from its PIL header: colour and grayscale JPEGs;
    CMYK JPEGs (torchvision's nvJPEG decoding does not convert them) and other formats are decoded on the CPU."""
    return header.format == "JPEG" and header.mode in ("RGB", "L")


def decode_batch(encoded, device, names=None, device_decodable=None):
    """[uint8 3xHxW] from a list of encoded images (uint8 1-D tensors): JPEGs in one batched call on `device`, the
    others on the CPU. `device_decodable` says which (decodable_on_device of each file's header); without it,
    every file that starts as a JPEG goes to the device. A batch the device's decoder refuses is decoded image by
    image on the CPU. 16-bit images are scaled to 8 bits. A file that decodes nowhere raises CorruptImageError with
    its name (`names`)."""
    images = [None] * len(encoded)
    if device_decodable is None:
        device_decodable = [data[:2].tolist() == [0xFF, 0xD8] for data in encoded]
    jpeg = [i for i, decodable in enumerate(device_decodable) if decodable]
    if jpeg:
        try:
            decoded = decode_jpeg([encoded[i] for i in jpeg], mode=ImageReadMode.RGB, device=device)
            for i, image in zip(jpeg, decoded):
                images[i] = image
        except torch.cuda.OutOfMemoryError:
            raise
        except RuntimeError:
            pass  # decoded one by one below
    for i, image in enumerate(images):
        if image is None:
            try:
                image = decode_image(encoded[i], mode=ImageReadMode.RGB)
            except RuntimeError as error:
                name = names[i] if names else f"image {i} of the batch"
                raise CorruptImageError(f"cannot decode image {name} ({str(error).splitlines()[0][:120]}); delete "
                                        "or re-download that file") from None
            if image.dtype != torch.uint8:  # a 16-bit PNG: scaled, not clipped
                image = (image.float() * 255.0 / 65535.0).round().to(torch.uint8)
            images[i] = image.to(device)
    return images


def _gray(x):
    return (GRAY[0] * x[:, 0] + GRAY[1] * x[:, 1] + GRAY[2] * x[:, 2]).unsqueeze(1)


def _blend(x, y, ratio):
    return (ratio.view(-1, 1, 1, 1) * x + (1.0 - ratio.view(-1, 1, 1, 1)) * y).clamp(0, 1)


def _rgb2hsv(x):
    r, g, b = x.unbind(dim=-3)
    maxc, minc = x.max(dim=-3).values, x.min(dim=-3).values
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_divisor = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_divisor, (maxc - g) / cr_divisor, (maxc - b) / cr_divisor
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod(((hr + hg + hb) / 6.0 + 1.0), 1.0)
    return torch.stack((h, s, maxc), dim=-3)


def _hsv2rgb(x):
    h, s, v = x.unbind(dim=-3)
    i = torch.floor(h * 6.0)
    f = (h * 6.0) - i
    i = i.to(dtype=torch.int32) % 6
    p = torch.clamp((v * (1.0 - s)), 0.0, 1.0)
    q = torch.clamp((v * (1.0 - s * f)), 0.0, 1.0)
    t = torch.clamp((v * (1.0 - s * (1.0 - f))), 0.0, 1.0)
    mask = i.unsqueeze(dim=-3) == torch.arange(6, device=i.device).view(-1, 1, 1)
    a1 = torch.stack((v, q, p, p, t, v), dim=-3)
    a2 = torch.stack((t, v, v, q, p, p), dim=-3)
    a3 = torch.stack((p, p, t, v, v, q), dim=-3)
    return torch.einsum("...ijk, ...xijk -> ...xjk", mask.to(dtype=x.dtype), torch.stack((a1, a2, a3), dim=-4))


def _hue(x, factor):
    hsv = _rgb2hsv(x)
    h, s, v = hsv.unbind(dim=-3)
    h = (h + factor.view(-1, 1, 1)) % 1.0
    return _hsv2rgb(torch.stack((h, s, v), dim=-3))


COLOR_OPS = (
    lambda x, f: _blend(x, torch.zeros_like(x), f),  # brightness
    lambda x, f: _blend(x, _gray(x).mean(dim=(-3, -2, -1), keepdim=True), f),  # contrast
    lambda x, f: _blend(x, _gray(x), f),  # saturation
    _hue,
)


def color_jitter(x, params):
    """Each image's ColorJitter: its four ops in its own order, with its own factors (images without one kept)."""
    for position in range(4):
        for op in range(4):
            rows = [k for k, p in enumerate(params) if p.jitter and p.jitter[0][position] == op
                    and p.jitter[1 + op] is not None]
            if rows:
                index = torch.tensor(rows, device=x.device)
                factors = torch.tensor([params[k].jitter[1 + op] for k in rows], device=x.device, dtype=x.dtype)
                x = x.index_copy(0, index, COLOR_OPS[op](x[index], factors))
    return x


def gaussian_blur(x, kernel_size, sigmas):
    """Each image blurred with its own sigma: torchvision's 2-D kernel and reflect padding, one grouped conv."""
    half = (kernel_size - 1) * 0.5
    grid = torch.linspace(-half, half, steps=kernel_size, dtype=x.dtype, device=x.device)
    pdf = torch.exp(-0.5 * (grid / sigmas.view(-1, 1)).pow(2))
    kernel1d = pdf / pdf.sum(dim=1, keepdim=True)  # [B, k]
    kernel2d = kernel1d[:, :, None] * kernel1d[:, None, :]  # [B, k, k]: outer(y, x)
    b, c, h, w = x.shape
    weight = kernel2d.repeat_interleave(c, dim=0).unsqueeze(1)  # [B*C, 1, k, k]
    padded = F.pad(x.reshape(1, b * c, h, w), [kernel_size // 2] * 4, mode="reflect")
    return F.conv2d(padded, weight, groups=b * c).reshape(b, c, h, w)


def _where(x, rows, fn):
    if not rows:
        return x
    index = torch.tensor(rows, device=x.device)
    return x.index_copy(0, index, fn(x[index], rows))


def augment_batch(images, params, normalize=True):
    """[B, 3, S, S] float views of decoded images (uint8 3xHxW, any sizes) with their ViewParams (one size S)."""
    size = params[0].size
    x = torch.stack([TF.resized_crop(image.float() / 255.0, *p.crop, [size, size], antialias=True)
                     for image, p in zip(images, params)]).clamp(0, 1)
    x = color_jitter(x, params)
    x = _where(x, [k for k, p in enumerate(params) if p.grayscale], lambda v, _: _gray(v).expand(-1, 3, -1, -1))
    blurred = [k for k, p in enumerate(params) if p.blur]
    if blurred:
        sigmas = torch.tensor([params[k].blur[1] for k in blurred], device=x.device, dtype=x.dtype)
        x = _where(x, blurred, lambda v, _: gaussian_blur(v, params[blurred[0]].blur[0], sigmas))
    x = _where(x, [k for k, p in enumerate(params) if p.solarize],
               lambda v, _: torch.where(v >= 128 / 255, 1.0 - v, v))
    x = _where(x, [k for k, p in enumerate(params) if p.flip], lambda v, _: v.flip(-1))
    if normalize:
        mean = torch.tensor(IMAGENET_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x
