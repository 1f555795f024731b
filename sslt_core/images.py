"""Reading images, and the image statistics every floor normalises with.

Images decode to 8-bit RGB. A 16-bit image (PNG of mode I;16, or 32-bit integer holding 16-bit values) is
scaled to 8 bits (v * 255 / 65535), not clipped; a floating-point image is refused, since its range is unknown.
"""
import numpy as np
from PIL import Image, UnidentifiedImageError

from sslt_core.errors import CorruptImageError, DatasetError

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # RGB in [0, 1]
CROP_RATIO = 0.875  # evaluation: resize to crop / 0.875, center crop (256 -> 224 on ImageNet)


def _sixteen_bit_to_rgb(image, path):
    values = np.asarray(image, dtype=np.float64)
    if values.min() < 0 or values.max() > 65535:
        raise DatasetError(f"image {path} holds integer values outside 0-65535 ({values.min():g}..{values.max():g}); "
                           "convert it to an 8-bit RGB image")
    gray = np.rint(values * 255.0 / 65535.0).astype(np.uint8)
    return Image.fromarray(gray, mode="L").convert("RGB")


def load_rgb(path):
    """Decode an image file to 8-bit RGB; a file that does not decode raises CorruptImageError naming it."""
    try:
        with Image.open(path) as image:
            if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
                return _sixteen_bit_to_rgb(image, path)
            if image.mode == "F":
                raise DatasetError(f"image {path} holds floating-point pixels, whose range is unknown; convert it to "
                                   "an 8-bit RGB image")
            return image.convert("RGB")
    except FileNotFoundError:
        raise DatasetError(f"image {path} does not exist; check the dataset root and its file lists") from None
    except Image.DecompressionBombError as error:  # PIL's guard against a huge image that would fill memory
        raise CorruptImageError(f"image {path} is too large to decode safely ({error}); resize or remove that "
                                "file") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, DatasetError):
            raise
        raise CorruptImageError(
            f"cannot decode image {path} ({type(error).__name__}: {error}); delete or re-download that file"
        ) from None
