"""Drawing the generated demo data: ten shape categories on cluttered, textured backgrounds.

The category is the outline of a shape and nothing else: every object gets a random colour pair, fill texture,
rotation, aspect, scale and position, and the background gets random texture and clutter (lines, blobs and
rings that are none of the categories). So mean colour says nothing about the category, while an encoder
that has learnt shape does far better than a random one. Objects are rasterised with pycocotools, so the
pixels, the COCO polygon, its mask, its area and its box all agree exactly.
"""
import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pycocotools import mask as mask_utils

from sslt_core.datasets import DEMO_CLASSES as CLASSES


def _circle(n=40):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], 1)


def _star(points=5, inner=0.45):
    t = np.linspace(0, 2 * np.pi, 2 * points, endpoint=False) - np.pi / 2
    r = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([r * np.cos(t), r * np.sin(t)], 1)


def _crescent():
    # Inside the unit circle, outside a circle of radius 0.85 centred at (0.45, 0); they meet at x = 0.5333.
    x, y = 0.48 / 0.9, np.sqrt(1 - (0.48 / 0.9) ** 2)
    outer = np.arctan2(y, x)
    inner = np.arctan2(y, x - 0.45)
    t1 = np.linspace(outer, 2 * np.pi - outer, 24)
    t2 = np.linspace(2 * np.pi - inner, inner, 16)
    return np.concatenate([np.stack([np.cos(t1), np.sin(t1)], 1),
                           np.stack([0.45 + 0.85 * np.cos(t2), 0.85 * np.sin(t2)], 1)])


def _heart(n=40):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))  # image y points down
    return np.stack([x, y], 1)


_OUTLINES = {
    "circle": _circle(),
    "triangle": _circle(3) @ np.array([[0, 1], [-1, 0]]),
    "square": np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float),
    "star": _star(),
    "cross": np.array([[-0.3, -1], [0.3, -1], [0.3, -0.3], [1, -0.3], [1, 0.3], [0.3, 0.3], [0.3, 1],
                       [-0.3, 1], [-0.3, 0.3], [-1, 0.3], [-1, -0.3], [-0.3, -0.3]]),
    "crescent": _crescent(),
    "arrow": np.array([[-1, -0.25], [0.2, -0.25], [0.2, -0.65], [1, 0], [0.2, 0.65], [0.2, 0.25], [-1, 0.25]]),
    "heart": _heart(),
    "hourglass": np.array([[-0.8, -1], [0.8, -1], [0.12, 0], [0.8, 1], [-0.8, 1], [-0.12, 0]]),
    "bolt": np.array([[-0.25, -1], [0.55, -1], [0.1, -0.2], [0.6, -0.2], [-0.4, 1], [-0.1, 0.1], [-0.55, 0.1]]),
}


def _normalised(points):
    points = points - (points.max(0) + points.min(0)) / 2
    return points / np.abs(points).max()


OUTLINES = {name: _normalised(np.asarray(_OUTLINES[name], float)) for name in CLASSES}


def random_colour(rng, away_from=None, min_distance=90.0):
    """A random RGB colour, at least `min_distance` from `away_from` so the object stands out."""
    for _ in range(100):
        colour = rng.uniform(0, 255, 3)
        if away_from is None or np.linalg.norm(colour - away_from) >= min_distance:
            return colour
    return 255 - np.asarray(away_from)


def texture(rng, height, width, colour_a, colour_b):
    """A (height, width, 3) float image: solid, stripes, checks, blotches or a gradient of two colours."""
    yy, xx = np.mgrid[0:height, 0:width].astype(float)
    kind = rng.integers(5)
    if kind == 0:
        weight = np.zeros((height, width))
    elif kind in (1, 2):
        angle, period = rng.uniform(0, np.pi), rng.uniform(3, 10)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        weight = (np.floor(u / period) % 2) if kind == 1 else (np.floor(u / period) + np.floor(v / period)) % 2
    elif kind == 3:
        coarse = rng.uniform(0, 1, (max(2, height // 8), max(2, width // 8)))
        weight = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((width, height),
                                                                                     Image.BILINEAR)) / 255.0
    else:
        angle = rng.uniform(0, 2 * np.pi)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        weight = (u - u.min()) / max(np.ptp(u), 1e-6)
    weight = weight[..., None]
    return (1 - weight) * colour_a + weight * colour_b


def object_polygon(rng, name, centre, size):
    """The outline of category `name`, randomly rotated and stretched, `size` pixels across, at `centre`."""
    angle = rng.uniform(0, 2 * np.pi)
    stretch = np.diag([rng.uniform(0.8, 1.25), 1.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = OUTLINES[name] @ stretch.T @ rotation.T
    points = points / np.abs(points).max() * (size / 2)
    return np.round(points + np.asarray(centre, float), 2)  # as stored in the COCO json, so masks agree


def polygon_mask(polygon, height, width):
    """(height, width) uint8 mask of a polygon, rasterised the way COCO's own tools do."""
    rle = mask_utils.frPyObjects([polygon.reshape(-1).tolist()], height, width)
    return mask_utils.decode(mask_utils.merge(rle))


def _clutter(rng, image, count):
    draw = ImageDraw.Draw(image)
    height, width = image.height, image.width
    for _ in range(count):
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        kind = rng.integers(3)
        if kind == 0:  # a line
            x0, x1 = rng.uniform(0, width, 2)
            y0, y1 = rng.uniform(0, height, 2)
            draw.line([(x0, y0), (x1, y1)], fill=colour, width=int(rng.integers(1, 3)))
        elif kind == 1:  # an irregular blob: random radii, so no category's outline
            n = int(rng.integers(5, 10))
            t = np.sort(rng.uniform(0, 2 * np.pi, n))
            r = rng.uniform(0.3, 1.0, n) * rng.uniform(2, min(height, width) / 6)
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            draw.polygon([(cx + a * np.cos(b), cy + a * np.sin(b)) for a, b in zip(r, t)], fill=colour)
        else:  # a thin ring
            r = rng.uniform(2, min(height, width) / 5)
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=1)


def render(rng, height, width, polygons, clutter=None):
    """Draw `polygons` (each (N, 2) in pixels) over a textured, cluttered background.

    Returns the RGB image (PIL) and each object's visible uint8 mask (objects are drawn in order and do not
    overlap when they come from `sample_layout`, so each mask is its whole polygon).
    """
    base = random_colour(rng)
    background = texture(rng, height, width, base, np.clip(base + rng.normal(0, 40, 3), 0, 255))
    image = Image.fromarray(background.astype(np.uint8))
    _clutter(rng, image, int(rng.integers(1, 5)) if clutter is None else clutter)
    pixels = np.asarray(image, dtype=float).copy()
    masks = []
    for polygon in polygons:
        mask = polygon_mask(polygon, height, width)
        colour_a = random_colour(rng, away_from=base)
        colour_b = np.clip(colour_a + rng.normal(0, 60, 3), 0, 255)
        fill = texture(rng, height, width, colour_a, colour_b)
        pixels[mask.astype(bool)] = fill[mask.astype(bool)]
        masks.append(mask)
    pixels += rng.normal(0, rng.uniform(0, 8), pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.8)))
    return image, masks


def classification_image(rng, class_index, size):
    """A `size` x `size` image of one object of CLASSES[class_index], 50-90% of the image across."""
    extent = rng.uniform(0.5, 0.9) * size
    centre = rng.uniform(extent / 2, size - extent / 2, 2)
    image, _ = render(rng, size, size, [object_polygon(rng, CLASSES[class_index], centre, extent)])
    return image


def sample_layout(rng, height, width, count, min_frac=0.1, max_frac=0.45, tries=60):
    """Up to `count` non-overlapping objects inside the image: a list of (class_index, polygon)."""
    placed, boxes = [], []
    short = min(height, width)
    for _ in range(count):
        for _ in range(tries):
            size = rng.uniform(min_frac, max_frac) * short
            centre = rng.uniform(size / 2 + 1, [width - size / 2 - 1, height - size / 2 - 1])
            class_index = int(rng.integers(len(CLASSES)))
            polygon = object_polygon(rng, CLASSES[class_index], centre, size)
            box = np.concatenate([polygon.min(0) - 2, polygon.max(0) + 2])
            if all(box[0] > b[2] or box[2] < b[0] or box[1] > b[3] or box[3] < b[1] for b in boxes):
                placed.append((class_index, polygon))
                boxes.append(box)
                break
    return placed
