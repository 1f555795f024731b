"""Both data pipelines draw each view's parameters exactly as torchvision's transforms do; the tensor pipeline's
batched ops equal torchvision's functional ops image by image; on JPEG files the two pipelines give the same views
up to decoding and resampling arithmetic (tolerances stated below)."""
import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from torchvision import transforms
from torchvision.transforms import functional as TF

from pretrain.augment import SWAV_SMALL, ViewRecipe, apply_pil
from pretrain.methods import METHODS, build_method
from pretrain.tensor_views import augment_batch, decode_batch
from pretrain.view_params import sample_view
from sslt_core.config import to_dict
from tests.pretrain.tiny import tiny_config

IMAGE_SIZE = 64
TORCH_VS_FUNCTIONAL_ATOL = 2e-5  # float32 arithmetic in another order (one batched op vs one image at a time)
# PIL rounds to uint8 after every op and resamples and decodes with its own arithmetic. Measured on the demo JPEGs
# (4 recipes x 80 images): mean |difference| of [0, 1] pixels 0.005, 99th percentile 0.03, largest 0.17 (a pixel
# on the solarize threshold or a hue wrapping around).
PIL_VS_TENSOR_MEAN = 0.01
PIL_VS_TENSOR_P99 = 0.05


def torchvision_view(recipe, size):
    """The recipe as torchvision's own transforms, written out (the reference for the draws)."""
    kernel = max(3, int(0.1 * size) // 2 * 2 + 1)  # SimCLR B.1 (SimCLR's and BYOL's TF code)
    if recipe.blur_kernel == "pil":  # PIL's blur does not truncate: 4 sigma of sigma 2, at most the crop
        kernel = max(kernel, min(17, (size - 1) // 2 * 2 + 1))
    steps = [transforms.RandomResizedCrop(size, scale=recipe.scale),
             transforms.RandomApply([transforms.ColorJitter(*recipe.jitter)], p=recipe.jitter_p),
             transforms.RandomGrayscale(p=recipe.grayscale_p),
             transforms.RandomApply([transforms.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=recipe.blur_p)]
    if recipe.solarize_p > 0:
        steps.append(transforms.RandomSolarize(128, p=recipe.solarize_p))
    steps += [transforms.RandomHorizontalFlip(), transforms.PILToTensor()]
    return transforms.Compose(steps)


def recipes():
    found = {}
    for method in sorted(METHODS):
        for recipe in build_method(tiny_config(method)).view_recipes:
            found[str(to_dict(recipe))] = recipe
    return list(found.values())


def random_image(seed, height=57, width=83):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("recipe", recipes(), ids=lambda r: f"{r.scale}-{r.jitter}-{r.blur_p}-{r.solarize_p}")
def test_views_are_torchvisions_for_the_same_seed(recipe):
    """The same seed in torchvision's global RNG and in our generator: the same parameters, hence the same image
    byte for byte (the PIL path applies them with torchvision's functional ops)."""
    size = round(IMAGE_SIZE * recipe.size_fraction)
    for seed in range(40):
        image = random_image(seed)
        torch.manual_seed(seed)
        expected = torchvision_view(recipe, size)(image)
        params = sample_view(recipe, image.height, image.width, IMAGE_SIZE, torch.Generator().manual_seed(seed))
        assert torch.equal(TF.pil_to_tensor(apply_pil(image, params)), expected), seed


def test_the_draws_follow_the_recipes_probabilities():
    recipe = ViewRecipe(scale=(0.08, 1.0), jitter=(0.4, 0.4, 0.2, 0.1), jitter_p=0.8, grayscale_p=0.2, blur_p=0.5,
                        solarize_p=0.2)
    draws = [sample_view(recipe, 200, 300, 224, torch.Generator().manual_seed(s)) for s in range(4000)]
    rate = lambda flag: np.mean([bool(flag(d)) for d in draws])  # noqa: E731
    assert rate(lambda d: d.jitter) == pytest.approx(0.8, abs=0.03)
    assert rate(lambda d: d.grayscale) == pytest.approx(0.2, abs=0.03)
    assert rate(lambda d: d.blur) == pytest.approx(0.5, abs=0.03)
    assert rate(lambda d: d.solarize) == pytest.approx(0.2, abs=0.03)
    assert rate(lambda d: d.flip) == pytest.approx(0.5, abs=0.03)
    areas = np.array([d.crop[2] * d.crop[3] / (200 * 300) for d in draws])
    assert areas.min() >= 0.07 and areas.max() <= 1.0
    factors = np.array([d.jitter[1:] for d in draws if d.jitter])
    assert factors[:, 0].min() >= 0.6 and factors[:, 0].max() <= 1.4 and np.abs(factors[:, 3]).max() <= 0.1
    assert {d.jitter[0] for d in draws if d.jitter} == {tuple(p) for p in torch.tensor(
        [[a, b, c, d] for a in range(4) for b in range(4) for c in range(4) for d in range(4)
         if len({a, b, c, d}) == 4]).tolist()}  # every one of the 24 orders occurs


def reference_tensor_view(image, params):
    """torchvision's functional ops on one float tensor image, with the view's parameters."""
    x = TF.resized_crop(image.float() / 255, *params.crop, [params.size, params.size], antialias=True).clamp(0, 1)
    if params.jitter:
        order, b, c, s, h = params.jitter
        ops = {0: lambda v: TF.adjust_brightness(v, b), 1: lambda v: TF.adjust_contrast(v, c),
               2: lambda v: TF.adjust_saturation(v, s), 3: lambda v: TF.adjust_hue(v, h)}
        for op in order:
            x = ops[op](x)
    if params.grayscale:
        x = TF.rgb_to_grayscale(x, num_output_channels=3)
    if params.blur:
        x = TF.gaussian_blur(x, [params.blur[0]] * 2, [params.blur[1]] * 2)
    if params.solarize:
        x = TF.solarize(x, 128 / 255)
    if params.flip:
        x = TF.hflip(x)
    return x


@pytest.mark.parametrize("recipe", recipes(), ids=lambda r: f"{r.scale}-{r.jitter}-{r.blur_p}-{r.solarize_p}")
def test_batched_tensor_ops_equal_torchvision_image_by_image(recipe):
    images = [TF.pil_to_tensor(random_image(s, 40 + 7 * s, 90 - 5 * s)) for s in range(12)]
    params = [sample_view(recipe, im.shape[1], im.shape[2], IMAGE_SIZE, torch.Generator().manual_seed(100 + s))
              for s, im in enumerate(images)]
    assert any(p.jitter for p in params) and any(p.blur for p in params)
    batch = augment_batch(images, params, normalize=False)
    expected = torch.stack([reference_tensor_view(im, p) for im, p in zip(images, params)])
    torch.testing.assert_close(batch, expected, rtol=0, atol=TORCH_VS_FUNCTIONAL_ATOL)


def test_the_tensor_path_gives_the_pil_paths_views_on_jpegs(demo_root):
    files = sorted((demo_root / "imagenet" / "train").rglob("*.jpg"))[:24]
    recipe = recipes()[0]
    encoded = [torch.frombuffer(bytearray(f.read_bytes()), dtype=torch.uint8) for f in files]
    decoded = decode_batch(encoded, "cpu")
    differences = []
    for s, (f, image) in enumerate(zip(files, decoded)):
        pil = Image.open(io.BytesIO(f.read_bytes())).convert("RGB")
        params = sample_view(recipe, pil.height, pil.width, IMAGE_SIZE, torch.Generator().manual_seed(s))
        assert (pil.height, pil.width) == tuple(image.shape[1:])
        from_pil = TF.pil_to_tensor(apply_pil(pil, params)).float() / 255
        from_tensor = augment_batch([image], [params], normalize=False)[0]
        differences.append((from_pil - from_tensor).abs().flatten())
    differences = torch.cat(differences)
    assert differences.mean() < PIL_VS_TENSOR_MEAN and torch.quantile(differences, 0.99) < PIL_VS_TENSOR_P99


def test_the_tensor_pipeline_trains_and_resumes_exactly(demo_root, tmp_path):
    import json

    from pretrain.train import train

    def run(max_steps=0):
        return tiny_config("simsiam", demo_root, extra=["train.data_pipeline=tensor", f"train.max_steps={max_steps}"])

    train(run(), tmp_path / "straight", progress=False)
    train(run(max_steps=7), tmp_path / "resumed", progress=False)
    train(run(), tmp_path / "resumed", resume=True, progress=False)
    lines = [(tmp_path / d / "metrics.jsonl").read_text() for d in ("straight", "resumed")]
    assert lines[0] == lines[1] and len([json.loads(x) for x in lines[0].splitlines()]) > 15
    assert "data_pipeline tensor" in (tmp_path / "straight" / "log.txt").read_text()


def test_cmyk_jpegs_and_other_formats_are_decoded_on_the_cpu_as_pil_decodes_them(tmp_path):
    """The tensor pipeline sends colour and grayscale JPEGs to the device's decoder (nvJPEG on a GPU) and decodes
    the rest on the CPU (torchvision's nvJPEG decoding does not convert CMYK); every image equals PIL's RGB."""
    from torchvision.datasets import ImageFolder

    from pretrain.augment import SeededViews, collate

    folder = tmp_path / "train" / "shapes"
    folder.mkdir(parents=True)
    pixels = np.asarray(random_image(0, 40, 50).resize((96, 80)))
    for mode, suffix in (("RGB", "jpg"), ("L", "jpg"), ("CMYK", "jpg"), ("RGB", "png")):
        Image.fromarray(pixels).convert(mode).save(folder / f"{mode.lower()}.{suffix}", quality=95)
    dataset = SeededViews(ImageFolder(tmp_path / "train"), recipes()[:1], IMAGE_SIZE, pipeline="tensor")
    batch, _ = collate([dataset[i] for i in range(len(dataset))])
    encoded, _, names, device_decodable = zip(*batch)
    on_device = {name.rsplit("/", 1)[1]: decodable for name, decodable in zip(names, device_decodable)}
    assert on_device == {"rgb.jpg": True, "l.jpg": True, "cmyk.jpg": False, "rgb.png": False}
    for name, image in zip(names, decode_batch(list(encoded), "cpu", names, device_decodable)):
        expected = TF.pil_to_tensor(Image.open(name).convert("RGB"))
        assert torch.equal(image, expected), name


def untruncated_gaussian_blur(array, sigma):
    """A Gaussian blur that does not cut the Gaussian (PIL's GaussianBlur approximates one with box blurs): a 1-D
    kernel of 10 sigma on each side, rows then columns, reflect padding, float64; [H, W, C] in [0, 1]."""
    radius = int(10 * sigma)
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    padded = np.pad(array.astype(np.float64) / 255, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    rows = sum(kernel[i] * padded[:, i:i + array.shape[1]] for i in range(len(x)))
    return sum(kernel[i] * rows[i:i + array.shape[0]] for i in range(len(x)))


@pytest.mark.parametrize("pipeline", ["pil", "tensor"])
def test_swavs_96_px_crops_blur_sigma_2_as_pils_gaussian_blur_which_does_not_truncate(pipeline):
    """main_swav's PIL GaussianBlur(radius=sigma) on a 96 px crop: the kernel of 10% of the crop (9 px) cut sigma 2
    at 2 sigma (0.023 off an untruncated Gaussian at the corner of a square); the kernel must cover it."""
    square = np.zeros((96, 96, 3), np.uint8)
    square[40:56, 40:56] = 255
    params = sample_view(replace(SWAV_SMALL, blur_p=1.0), 96, 96, 224, torch.Generator().manual_seed(0))
    params = replace(params, crop=(0, 0, 96, 96), jitter=None, grayscale=False, blur=(params.blur[0], 2.0),
                     solarize=False, flip=False)
    assert params.size == 96
    if pipeline == "pil":
        view = TF.to_tensor(apply_pil(Image.fromarray(square), params))
    else:
        view = augment_batch([torch.from_numpy(square).permute(2, 0, 1)], [params], normalize=False)[0]
    view = view.permute(1, 2, 0).double().numpy()
    assert np.abs(view - untruncated_gaussian_blur(square, 2.0)).max() < 0.004  # uint8 rounding: 0.002
    pil = np.asarray(Image.fromarray(square).filter(ImageFilter.GaussianBlur(radius=2.0)), dtype=np.float64) / 255
    # PIL's three box blurs against the Gaussian, measured: max 0.012, mean 0.0003 (the 9 px kernel: 0.027, 0.0007)
    assert np.abs(view - pil).max() < 0.016 and np.abs(view - pil).mean() < 0.0005
