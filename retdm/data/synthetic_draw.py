"""Drawing one image of the embedded ``synthetic`` dataset: the ten label objects on a varied
background among distractors, with occlusion and pixel noise (``retdm.data.synthetic`` describes
the dataset and draws the labels; this module only draws pixels, from the generator it is given).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from retdm.errors import ConfigError

LABEL_NAMES: tuple[str, ...] = (
    "circle", "square", "triangle", "plus", "ring", "star", "stripes", "checker", "dots", "zigzag",
)

TEXTURES = ("stripes", "checker", "dots")
CLUTTER_KINDS = ("blob", "line", "arc", "ellipse", "specks")
_MIN_CONTRAST = 60.0


@dataclass(frozen=True)
class SynthOptions:
    """Rendering options of one synthetic image (see the module docstring for their meaning)."""

    image_size: int = 64
    noise: float = 4.0
    clutter: float = 1.0
    occlusion: float = 0.15
    occlusion_size: tuple[float, float] = (0.3, 0.6)
    scale: tuple[float, float] = (0.3, 0.45)
    mix_prob: float = 0.3
    repeat_prob: float = 0.2
    supersample: int = 2

    def check(self) -> None:
        """Raise ``ConfigError`` naming the first option out of range."""

        def bad(name: str, want: str) -> ConfigError:
            return ConfigError(f"synthetic: option {name}={getattr(self, name)!r}; expected {want}")

        if not isinstance(self.image_size, (int, np.integer)) or self.image_size < 16:
            raise bad("image_size", "an integer >= 16")
        if not self.noise >= 0:
            raise bad("noise", "a standard deviation >= 0 (0-255 units)")
        if not self.clutter >= 0:
            raise bad("clutter", "a mean distractor count >= 0")
        for name in ("occlusion", "mix_prob", "repeat_prob"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(name, "a probability in [0, 1]")
        lo, hi = self.occlusion_size
        if not 0 < lo <= hi <= 0.9:
            raise bad("occlusion_size", "(lo, hi) with 0 < lo <= hi <= 0.9 (fractions of the object diameter)")
        lo, hi = self.scale
        if not 0.03 <= lo <= hi <= 0.8:
            raise bad("scale", "(lo, hi) with 0.03 <= lo <= hi <= 0.8 (fractions of the image side)")
        if not isinstance(self.supersample, (int, np.integer)) or not 1 <= self.supersample <= 4:
            raise bad("supersample", "an integer in 1..4")


# ----------------------------------------------------------------------------------------------
# rendering helpers (canvas coordinates, float pixels)


def _colour(rng: np.random.Generator, sat=(0.25, 1.0), val=(0.3, 1.0)) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb(rng.random(), rng.uniform(*sat), rng.uniform(*val))
    return np.array([r, g, b]) * 255.0


def _contrasting(rng: np.random.Generator, ref: np.ndarray) -> np.ndarray:
    for _ in range(12):
        c = _colour(rng)
        if np.linalg.norm(c - ref) >= _MIN_CONTRAST:
            return c
    return 255.0 - ref  # the complement always contrasts enough unless ref is mid-grey; fine either way


def _rgb(c: np.ndarray) -> tuple[int, int, int]:
    c = np.clip(np.rint(c), 0, 255).astype(int)
    return int(c[0]), int(c[1]), int(c[2])


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    kind = int(rng.integers(3))
    base = _colour(rng, sat=(0.0, 0.8), val=(0.15, 1.0))
    if kind == 0:
        return np.broadcast_to(base, (size, size, 3)).astype(np.float32)
    if kind == 1:
        other = _colour(rng, sat=(0.0, 0.8), val=(0.15, 1.0))
        ang = rng.uniform(0, 2 * math.pi)
        ax = (np.arange(size) + 0.5) / size - 0.5
        proj = np.cos(ang) * ax[None, :] + np.sin(ang) * ax[:, None]
        t = (proj - proj.min()) / max(proj.max() - proj.min(), 1e-6)
        return (base * (1 - t[..., None]) + other * t[..., None]).astype(np.float32)
    grid = np.clip(base + rng.normal(0, 45, size=(4, 4, 3)), 0, 255).astype(np.uint8)
    return np.asarray(Image.fromarray(grid, "RGB").resize((size, size), Image.BICUBIC), dtype=np.float32)


def _rotate(points: np.ndarray, angle: float, cx: float, cy: float) -> list[tuple[float, float]]:
    c, s = math.cos(angle), math.sin(angle)
    x = points[:, 0] * c - points[:, 1] * s + cx
    y = points[:, 0] * s + points[:, 1] * c + cy
    return list(zip(x.tolist(), y.tolist()))


def _regular(n: int, radius: float, phase: float = 0.0) -> np.ndarray:
    a = phase + 2 * math.pi * np.arange(n) / n
    return np.stack([np.cos(a), np.sin(a)], axis=1) * radius


def _paste_pattern(canvas: Image.Image, rng: np.random.Generator, kind: str, cx: float, cy: float,
                   r: float, colour: np.ndarray, min_period: float) -> None:
    """Draw a texture patch of radius ``r`` centred at (cx, cy)."""
    half = int(math.ceil(r)) + 1
    x0, y0 = int(round(cx)) - half, int(round(cy)) - half
    ax = np.arange(2 * half, dtype=np.float32) + 0.5
    X = ax[None, :] + x0 - cx
    Y = ax[:, None] + y0 - cy
    ang = rng.uniform(0, math.pi)
    c, s = math.cos(ang), math.sin(ang)
    U, V = X * c + Y * s, -X * s + Y * c
    # region: rotated rectangle or ellipse with aspect in [0.7, 1]
    aspect = rng.uniform(0.7, 1.0)
    if rng.random() < 0.5:
        hw, hh = r / math.sqrt(1 + aspect**2), r * aspect / math.sqrt(1 + aspect**2)
        hw, hh = hw * 1.15, hh * 1.15  # a rectangle inscribed in the circle looks small; enlarge a bit
        region = (np.abs(U) <= hw) & (np.abs(V) <= hh)
    else:
        region = (U / r) ** 2 + (V / (r * aspect)) ** 2 <= 1.0
    period = max(rng.uniform(0.2, 0.35) * 2 * r, min_period)
    phase_u, phase_v = rng.uniform(0, period, size=2)
    if kind == "stripes":
        on = np.mod(U + phase_u, period) < period * 0.5
    elif kind == "checker":
        cell = max(0.5 * period, min_period * 0.67)
        on = (np.floor((U + phase_u) / cell) + np.floor((V + phase_v) / cell)) % 2 == 0
    else:  # dots
        du = np.mod(U + phase_u, period) - period / 2
        dv = np.mod(V + phase_v, period) - period / 2
        on = du**2 + dv**2 <= (period * 0.3) ** 2
    rgba = np.zeros((2 * half, 2 * half, 4), dtype=np.uint8)
    rgba[..., :3] = _rgb(colour)
    if rng.random() < 0.4:  # transparent second colour
        alpha = region & on
    else:
        second = _contrasting(rng, colour)
        rgba[~on, :3] = _rgb(second)
        alpha = region
    rgba[..., 3] = alpha.astype(np.uint8) * 255
    patch = Image.fromarray(rgba, "RGBA")
    canvas.paste(patch, (x0, y0), patch)


def _draw_object(canvas: Image.Image, draw: ImageDraw.ImageDraw, rng: np.random.Generator, label: str,
                 cx: float, cy: float, r: float, colour: np.ndarray, unit: float) -> None:
    """Draw one labelled object of radius ``r`` (canvas pixels); ``unit`` is one output pixel."""
    fill = _rgb(colour)
    ang = rng.uniform(0, 2 * math.pi)
    if label == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif label == "square":
        draw.polygon(_rotate(_regular(4, r * 0.95), ang, cx, cy), fill=fill)
    elif label == "triangle":
        pts = _regular(3, r) + rng.uniform(-0.08, 0.08, size=(3, 2)) * r
        draw.polygon(_rotate(pts, ang, cx, cy), fill=fill)
    elif label == "plus":
        w = r * rng.uniform(0.2, 0.3)
        pts = np.array([[w, w], [r, w], [r, -w], [w, -w], [w, -r], [-w, -r], [-w, -w], [-r, -w],
                        [-r, w], [-w, w], [-w, r], [w, r]])
        draw.polygon(_rotate(pts, ang, cx, cy), fill=fill)
    elif label == "ring":
        width = max(int(round(r * rng.uniform(0.25, 0.4))), int(round(1.5 * unit)))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=fill, width=width)
    elif label == "star":
        outer = _regular(5, r, -math.pi / 2)
        inner = _regular(5, r * rng.uniform(0.38, 0.5), -math.pi / 2 + math.pi / 5)
        pts = np.empty((10, 2))
        pts[0::2], pts[1::2] = outer, inner
        draw.polygon(_rotate(pts, ang, cx, cy), fill=fill)
    elif label in TEXTURES:
        _paste_pattern(canvas, rng, label, cx, cy, r, colour, min_period=3.0 * unit)
    elif label == "zigzag":
        n = int(rng.integers(3, 7))
        length = 2 * r * rng.uniform(1.0, 1.25)
        amp = r * rng.uniform(0.3, 0.5)
        xs = np.linspace(-length / 2, length / 2, n + 1)
        ys = np.where(np.arange(n + 1) % 2 == 0, -amp / 2, amp / 2)
        width = max(int(round(r * rng.uniform(0.18, 0.28))), int(round(1.5 * unit)))
        draw.line(_rotate(np.stack([xs, ys], 1), ang, cx, cy), fill=fill, width=width, joint="curve")
    else:  # pragma: no cover - LABEL_NAMES and this function are kept in step
        raise AssertionError(label)


def _draw_clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, kind: str, cx: float, cy: float,
                  r: float, colour: np.ndarray, unit: float) -> None:
    """Draw one distractor (not a label) of radius ``r``."""
    fill = _rgb(colour)
    ang = rng.uniform(0, 2 * math.pi)
    width = max(int(round(r * rng.uniform(0.18, 0.3))), int(round(1.5 * unit)))
    if kind == "blob":
        n = int(rng.integers(7, 13))
        a = np.sort(rng.uniform(0, 2 * math.pi, n))
        rad = r * rng.uniform(0.55, 1.0, n)
        draw.polygon(_rotate(np.stack([np.cos(a) * rad, np.sin(a) * rad], 1), ang, cx, cy), fill=fill)
    elif kind == "line":
        half = r * rng.uniform(0.8, 1.4)
        draw.line(_rotate(np.array([[-half, 0.0], [half, 0.0]]), ang, cx, cy), fill=fill, width=width)
    elif kind == "arc":
        start = math.degrees(ang)
        draw.arc([cx - r, cy - r, cx + r, cy + r], start, start + rng.uniform(90, 220), fill=fill, width=width)
    elif kind == "ellipse":
        aspect = rng.uniform(1.8, 3.0)
        a = np.linspace(0, 2 * math.pi, 24, endpoint=False)
        pts = np.stack([np.cos(a) * r, np.sin(a) * r / aspect], 1)
        draw.polygon(_rotate(pts, ang, cx, cy), fill=fill)
    else:  # specks
        k = int(rng.integers(2, 5))
        for _ in range(k):
            px, py = cx + rng.uniform(-r, r), cy + rng.uniform(-r, r)
            sr = r * rng.uniform(0.1, 0.2) + unit * 0.5
            draw.ellipse([px - sr, py - sr, px + sr, py + sr], fill=fill)


def _place_objects(rng: np.random.Generator, labels: np.ndarray, options: SynthOptions,
                   size: int) -> list[tuple[str, float, float, float]]:
    """``(label, cx, cy, r)`` of each object of ``labels`` (some twice), apart from the others where
    20 tries allow."""
    objects: list[tuple[str, float, float, float]] = []
    for j in np.flatnonzero(labels):
        name = LABEL_NAMES[int(j)]
        copies = 2 if rng.random() < options.repeat_prob else 1
        for _ in range(copies):
            r = rng.uniform(*options.scale) * size / 2
            if name in TEXTURES:
                r *= 1.2
            lo, hi = 0.7 * r, size - 0.7 * r
            for _attempt in range(20):
                cx, cy = rng.uniform(lo, hi, size=2)
                if all((cx - ox) ** 2 + (cy - oy) ** 2 >= (0.8 * (r + orr)) ** 2 for _, ox, oy, orr in objects):
                    break
            objects.append((name, float(cx), float(cy), float(r)))
    return objects


def _occlude(canvas: Image.Image, draw: ImageDraw.ImageDraw, rng: np.random.Generator,
             objects: list[tuple[str, float, float, float]], bg: np.ndarray, options: SynthOptions) -> None:
    """Occlude each object with probability ``options.occlusion``: a cut-out of the background or a bar."""
    bg_image = None
    for _name, cx, cy, r in objects:
        if rng.random() >= options.occlusion:
            continue
        a = rng.uniform(0, 2 * math.pi)
        d = rng.uniform(0.3, 0.8) * r
        ox, oy = cx + d * math.cos(a), cy + d * math.sin(a)
        if rng.random() < 0.5:  # cut-out: the background shows through a rectangle
            w, h = rng.uniform(*options.occlusion_size, size=2) * 2 * r
            box = (int(round(ox - w / 2)), int(round(oy - h / 2)), int(round(ox + w / 2)), int(round(oy + h / 2)))
            if bg_image is None:
                bg_image = Image.fromarray(np.clip(np.rint(bg), 0, 255).astype(np.uint8), "RGB")
            canvas.paste(bg_image.crop(box), box[:2])
        else:  # a bar of a random colour across the object
            length = rng.uniform(*options.occlusion_size) * 4 * r
            thick = rng.uniform(0.15, 0.3) * 2 * r
            pts = np.array([[-length / 2, -thick / 2], [length / 2, -thick / 2], [length / 2, thick / 2],
                            [-length / 2, thick / 2]])
            draw.polygon(_rotate(pts, rng.uniform(0, math.pi), ox, oy), fill=_rgb(_colour(rng)))


def render_image(rng: np.random.Generator, labels: np.ndarray, options: SynthOptions) -> Image.Image:
    """Render one RGB image showing the objects of ``labels`` (drawn from ``rng`` after the labels)."""
    ss = options.supersample
    size = options.image_size * ss
    unit = float(ss)
    bg = _background(rng, size)
    canvas = Image.fromarray(np.clip(np.rint(bg), 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(canvas)

    objects = _place_objects(rng, labels, options, size)

    n_clutter = int(rng.poisson(options.clutter))
    items: list[tuple] = [("object", *o) for o in objects]
    for _ in range(n_clutter):
        kind = CLUTTER_KINDS[int(rng.integers(len(CLUTTER_KINDS)))]
        r = rng.uniform(*options.scale) * size / 2
        cx, cy = rng.uniform(0.5 * r, size - 0.5 * r, size=2)
        items.append(("clutter", kind, float(cx), float(cy), float(r)))
    order = rng.permutation(len(items))

    for k in order:
        what, name, cx, cy, r = items[int(k)]
        ref = bg[min(int(cy), size - 1), min(int(cx), size - 1)]
        colour = _contrasting(rng, ref)
        if what == "object":
            _draw_object(canvas, draw, rng, name, cx, cy, r, colour, unit)
        else:
            _draw_clutter(draw, rng, name, cx, cy, r, colour, unit)

    _occlude(canvas, draw, rng, objects, bg, options)

    if ss > 1:
        canvas = canvas.reduce(ss)
    pixels = np.asarray(canvas, dtype=np.float32)
    if options.noise > 0:
        pixels = pixels + rng.normal(0.0, options.noise, size=pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), "RGB")
