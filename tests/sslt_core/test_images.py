"""Images decode to 8-bit RGB; 16-bit images are scaled (not clipped); float images are refused clearly."""
import numpy as np
import pytest
from PIL import Image

from sslt_core.errors import CorruptImageError, DatasetError
from sslt_core.images import load_rgb
from tests.sslt_core import hostile


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped(tmp_path):
    values = np.array([[0, 257, 32896], [65535, 1000, 50000]], dtype=np.uint16)
    image = load_rgb(hostile.png16(tmp_path / "deep.png", values))
    rgb = np.asarray(image)
    assert image.mode == "RGB" and rgb.shape == (2, 3, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.rint(values.astype(float) * 255 / 65535).astype(np.uint8))
    assert (rgb[..., 0] == 255).mean() < 0.5  # clipping would turn every value above 255 into 255


def test_an_8_bit_image_is_unchanged(tmp_path):
    values = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(np.asarray(load_rgb(tmp_path / "rgb.png")), values)


def test_a_float_image_is_refused(tmp_path):
    Image.fromarray(np.ones((4, 4), dtype=np.float32), mode="F").save(tmp_path / "float.tiff")
    with pytest.raises(DatasetError, match="floating-point pixels"):
        load_rgb(tmp_path / "float.tiff")


def test_a_corrupt_file_names_itself(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(CorruptImageError, match="broken.jpg"):
        load_rgb(tmp_path / "broken.jpg")


def test_an_image_past_pils_decompression_bomb_limit_is_refused_naming_itself(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("RGB", (40, 40)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 1600 pixels > 2 x the limit: PIL's bomb error
    with pytest.raises(CorruptImageError, match="huge.png is too large to decode safely"):
        load_rgb(path)
