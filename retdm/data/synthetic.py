"""The embedded ``synthetic`` dataset: multi-label images generated from a seed, no download.

Every image shows a few of ten drawable *objects* (the labels) on a varied background, among
distractors that are not labels, under pixel noise and partial occlusion. Which objects appear
together is governed by latent *scene topics*, so the labels are correlated in a way a model
can learn from: knowing that an image shows a ``ring`` makes ``circle`` and ``dots`` more likely
and ``square`` less likely. The dataset therefore measures two things at once: recognising small,
randomly coloured, partly hidden shapes and textures among look-alike clutter, and exploiting
label co-occurrence.

Determinism
    Image ``i`` is generated from its own generator ``np.random.default_rng([seed, i])``: first its
    labels, then its pixels. It does not depend on ``num_images`` or on any other image, so the
    first ``k`` images of a 100-image and a 10,000-image dataset with the same seed and options are
    byte-identical (PNG is lossless). Only the train/test split, drawn by
    :func:`retdm.data.split.assign_split` from ``(num_images, test_fraction, seed)``, depends on the
    dataset size.

Labels (``LABEL_NAMES``, column order of the table)
    ``circle`` (filled disc), ``square`` (filled square, any rotation), ``triangle`` (filled,
    roughly equilateral, any rotation), ``plus`` (filled cross of two bars; rotated it becomes an
    X), ``ring`` (annulus, hollow centre shows the background), ``star`` (filled five-pointed
    star), ``stripes`` (patch of parallel bars at any angle), ``checker`` (patch of a checkerboard
    at any angle), ``dots`` (patch of a regular grid of small discs), ``zigzag`` (thick polyline of
    3 to 6 sharp alternating segments).

Scene topics
    Five topics with prior probabilities ``TOPIC_PRIOR``; each gives every label an independent
    inclusion probability (rows of ``TOPIC_LABEL_PROBS``; ``.`` stands for the background
    probability 0.05)::

        topic (prior)    circle square triangle plus ring star stripes checker dots zigzag
        bubbles (0.26)    0.80    .      .       .   0.70   .     .       .    0.40   .
        blocks  (0.22)     .     0.80    .     0.40   .     .     .      0.70   .     .
        spiky   (0.20)     .      .     0.80     .    .    0.70   .       .     .    0.40
        waves   (0.17)    0.40    .      .       .    .     .    0.80     .     .    0.70
        signs   (0.15)     .      .      .     0.80   .    0.40   .       .    0.70   .

    Every label is a core label (0.7 or 0.8) of exactly one topic and a secondary label (0.40) of
    at most one other, so pairs of core labels of the same topic co-occur far more often than
    independence predicts (lift about 2 to 3) and labels of different topics less often.

    Per image: draw a topic ``t1`` from the prior. With probability ``mix_prob`` (default 0.3) the
    image is a mixture: draw a second, different topic ``t2`` from the prior restricted to the
    other topics and a weight ``w ~ U(0.3, 0.7)``; the label probabilities are then
    ``w * P[t1] + (1 - w) * P[t2]``, otherwise ``P[t1]``. Each label is included independently
    with its probability. If no label was drawn, exactly one label is drawn with probability
    proportional to the image's label probabilities, so every image has at least one label. The
    mean is about 2.3 labels per image; every label is positive in roughly 17 % to 30 % of
    images. The topics themselves are not recorded in the table.

Rendering
    Drawing happens on a canvas ``supersample`` (default 2) times the output size with
    ``PIL.ImageDraw`` and numpy, which is then box-downsampled to ``image_size`` (anti-aliasing).

    * Background: with equal probability a solid colour, a linear gradient between two colours in
      a random direction, or a smooth blotchy field (a 4x4 grid of colours around a base colour,
      bicubically upsampled).
    * Objects: each positive label is drawn once, or twice with probability ``repeat_prob``
      (default 0.2). Its diameter is ``U(scale)`` times the image side (default ``scale=(0.3,
      0.45)``, i.e. about 19 to 29 px at 64 px; texture patches are 1.2 times larger so their
      pattern stays visible); its position is uniform, kept at least 0.7 radii from the border,
      and is redrawn up to 20 times to keep centres apart from earlier objects. Its rotation is
      uniform. Its colour is a random HSV colour (any hue), redrawn until it differs from the
      background under its centre by a Euclidean RGB distance of at least 60 (at most 12 tries,
      then the RGB complement of that background), so colour carries no information about the
      label; a texture's second colour is chosen the same way against the first. Texture patches (``stripes``, ``checker``, ``dots``) are a
      rotated rectangle or an ellipse filled with the pattern in the object colour over either a
      second random colour or, with probability 0.4, nothing (the background shows through);
      their period is 20 % to 35 % of the patch diameter but at least 3 output pixels (stripes
      fill half a period; a checker cell is half a period, at least 2 output pixels; a dot's
      radius is 0.3 periods).
    * Clutter (not labels): ``Poisson(clutter)`` distractors (default mean 1), sized like the
      objects (not enlarged), placed uniformly, coloured by the same rule as objects, chosen uniformly among: an irregular star-convex blob of 7
      to 12 vertices, a straight thick line, an open arc (90 to 220 degrees, ring-like), an
      elongated rotated ellipse (aspect 1.8 to 3), and a small irregular cluster of 2 to 4 specks.
      They resemble the objects in part (arcs vs ``ring``, ellipses vs ``circle``, lines vs
      ``zigzag`` and ``stripes``, specks vs ``dots``, blobs vs polygons).
    * Draw order: objects and clutter are drawn in a random order, so either may cover the other.
    * Occlusion: after all objects and clutter, each object independently, with probability
      ``occlusion`` (default 0.15), is partly hidden by one occluder centred 0.3 to 0.8 radii from
      the object's centre in a random direction. With equal probability it is a *cut-out* (an
      axis-aligned rectangle with sides ``U(occlusion_size)`` times the object diameter, default
      ``(0.3, 0.6)``, through which the background shows, erasing what was drawn there) or a
      *bar* (a randomly rotated rectangle of a random colour, ``U(occlusion_size)`` times two
      diameters long and 0.15 to 0.3 diameters thick). Occluders are never square patches of a
      random colour, so they do not mimic ``square``. They hide part, rarely all, of the object.
    * Noise: after downsampling, i.i.d. Gaussian noise of standard deviation ``noise`` (default 4,
      in 0-255 units) is added to every channel of every pixel, then values are rounded and
      clipped to 0-255.

Difficulty knobs (keyword options of :func:`make_synthetic`): ``noise``, ``clutter``,
``occlusion``, ``occlusion_size``, ``scale``, ``mix_prob``, ``repeat_prob``. Larger noise,
clutter, occlusion and smaller scale make the objects harder to recognise; ``mix_prob`` controls
how sharp the label correlation is.

Output layout: ``out_dir/images/000000.png ...`` (RGB PNG) and ``out_dir/labels.parquet`` (the
label-table contract of :mod:`retdm.data.table`: name ``synthetic``, ``image_id`` ``syn_000000``,
``path`` ``images/000000.png``, ``source`` a JSON string of the generator, its version and every
option). The whole directory is built in a temporary sibling and renamed into place only when
complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from retdm.data.registry import DATASETS
from retdm.data.split import assign_split
from retdm.data.synthetic_draw import LABEL_NAMES, SynthOptions, render_image
from retdm.data.table import LabelTable, read_label_table, write_label_table
from retdm.errors import ConfigError, DataError
from retdm.files import remove_stale_temporaries, replace_dir
from retdm.log import bar

GENERATOR = "retdm.data.synthetic"
GENERATOR_VERSION = 1

TOPIC_NAMES: tuple[str, ...] = ("bubbles", "blocks", "spiky", "waves", "signs")
TOPIC_PRIOR = np.array([0.26, 0.22, 0.20, 0.17, 0.15])

_BASE = 0.05
_TOPIC_CORE = {  # topic -> {label: probability}; other labels get _BASE
    "bubbles": {"circle": 0.80, "ring": 0.70, "dots": 0.40},
    "blocks": {"square": 0.80, "checker": 0.70, "plus": 0.40},
    "spiky": {"triangle": 0.80, "star": 0.70, "zigzag": 0.40},
    "waves": {"stripes": 0.80, "zigzag": 0.70, "circle": 0.40},
    "signs": {"plus": 0.80, "dots": 0.70, "star": 0.40},
}


def _topic_table() -> np.ndarray:
    table = np.full((len(TOPIC_NAMES), len(LABEL_NAMES)), _BASE)
    for t, name in enumerate(TOPIC_NAMES):
        for label, p in _TOPIC_CORE[name].items():
            table[t, LABEL_NAMES.index(label)] = p
    table.setflags(write=False)
    return table


TOPIC_LABEL_PROBS = _topic_table()
"""(5, 10) inclusion probability of each label (columns) under each topic (rows)."""




# ----------------------------------------------------------------------------------------------
# labels


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image ``index``: labels are drawn from it first, then pixels."""
    return np.random.default_rng([seed, index])


def sample_labels(rng: np.random.Generator, mix_prob: float = 0.3) -> tuple[np.ndarray, tuple[int, ...]]:
    """Draw one image's labels from the topic model.

    Returns:
        (labels, topics): ``labels`` (10,) uint8 multi-hot, never all zero; ``topics`` the one or
        two topic indices the image was drawn from.
    """
    t1 = int(rng.choice(len(TOPIC_NAMES), p=TOPIC_PRIOR))
    probs = TOPIC_LABEL_PROBS[t1]
    topics: tuple[int, ...] = (t1,)
    if rng.random() < mix_prob:
        prior = TOPIC_PRIOR.copy()
        prior[t1] = 0.0
        t2 = int(rng.choice(len(TOPIC_NAMES), p=prior / prior.sum()))
        w = rng.uniform(0.3, 0.7)
        probs = w * TOPIC_LABEL_PROBS[t1] + (1 - w) * TOPIC_LABEL_PROBS[t2]
        topics = (t1, t2)
    labels = (rng.random(len(LABEL_NAMES)) < probs).astype(np.uint8)
    if not labels.any():
        labels[int(rng.choice(len(LABEL_NAMES), p=probs / probs.sum()))] = 1
    return labels, topics


def generate_item(seed: int, index: int, options: SynthOptions) -> tuple[np.ndarray, Image.Image]:
    """Labels and image of item ``index``; independent of every other item and of the dataset size."""
    rng = image_rng(seed, index)
    labels, _topics = sample_labels(rng, options.mix_prob)
    return labels, render_image(rng, labels, options)


# ----------------------------------------------------------------------------------------------
# the dataset


def foreign_files(out_dir: Path) -> list[str]:
    """Files under ``out_dir`` that :func:`make_synthetic` did not write, relative to it, sorted.

    A dataset written by the generator is recognised by its own record: ``labels.parquet`` whose
    ``retdm.source`` names this generator; the files it wrote are that table and the images it
    lists. Without such a table (e.g. ``retdm data import`` wrote one into a folder of your images),
    every file counts as foreign.
    """
    files = sorted(str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if not p.is_dir() or p.is_symlink())
    try:
        table = read_label_table(out_dir / "labels.parquet")
        source = json.loads(table.source or "{}")
    except (DataError, json.JSONDecodeError):
        return files
    if not isinstance(source, dict) or source.get("generator") != GENERATOR or not table.has_images:
        return files
    ours = {"labels.parquet", *table.frame["path"]}
    return [f for f in files if f not in ours]


def source_record(num_images: int, seed: int, test_fraction: float, options: SynthOptions) -> str:
    """The table's ``retdm.source``: this generator, its version and every option (JSON, sorted keys)."""
    return json.dumps(
        {
            "generator": GENERATOR,
            "version": GENERATOR_VERSION,
            "options": {
                "num_images": num_images, "seed": seed, "test_fraction": test_fraction,
                **{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(options).items()},
            },
        },
        sort_keys=True,
    )


def check_replaceable(out_dir: Path, overwrite: bool) -> None:
    """Refuse to replace ``out_dir`` when it is a file, or (without ``overwrite``) holds files
    this generator did not write (``DataError`` naming up to three of them and the fix)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise DataError(f"{out_dir}: exists and is not a directory; choose another dataset directory")
    foreign = [] if overwrite else foreign_files(out_dir)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise DataError(
            f"{out_dir}: holds files the synthetic generator did not write ({shown}); refusing to replace it. "
            f"Choose an empty or new directory, or replace it anyway with `retdm data synth --force`"
        )


@DATASETS.register(
    "synthetic",
    help="embedded 10-label shapes-and-textures images with topic-correlated labels, generated from a seed",
)
def make_synthetic(
    out_dir: str | os.PathLike,
    *,
    num_images: int = 4000,
    image_size: int = 64,
    seed: int = 0,
    test_fraction: float = 0.2,
    noise: float = 4.0,
    clutter: float = 1.0,
    occlusion: float = 0.15,
    occlusion_size: tuple[float, float] = (0.3, 0.6),
    scale: tuple[float, float] = (0.3, 0.45),
    mix_prob: float = 0.3,
    repeat_prob: float = 0.2,
    supersample: int = 2,
    progress: bool = True,
    overwrite: bool = False,
) -> LabelTable:
    """Generate the ``synthetic`` dataset into ``out_dir`` and return its label table.

    Writes ``out_dir/images/{i:06d}.png`` and ``out_dir/labels.parquet``. Everything is built in a
    temporary sibling directory and renamed onto ``out_dir`` only on success; a previous dataset
    at ``out_dir`` is replaced then, and left untouched by a failure.

    Args:
        out_dir: dataset root to create or replace. An existing directory is replaced only when
            every file in it was written by this generator (:func:`foreign_files`); otherwise it is
            refused rather than deleted.
        num_images: number of images (>= 1).
        image_size: output side in pixels (>= 16).
        seed: non-negative integer; the same seed and options give byte-identical output.
        test_fraction: fraction of images in the test split.
        noise: Gaussian pixel-noise standard deviation, 0-255 units.
        clutter: mean number of distractors per image (Poisson).
        occlusion: probability that each object gets an occluding rectangle.
        occlusion_size: range of the occluder's sides as fractions of the object diameter.
        scale: range of object diameters as fractions of the image side.
        mix_prob: probability that an image mixes two topics.
        repeat_prob: probability that an object appears twice.
        supersample: anti-aliasing factor (canvas is this many times larger, then box-reduced).
        progress: show a tqdm progress bar.
        overwrite: replace ``out_dir`` even when it holds files this generator did not write.

    Raises:
        ConfigError: an option is out of range.
        DataError: ``out_dir`` is a file, or holds files this generator did not write (without ``overwrite``).
    """
    options = SynthOptions(
        image_size=image_size, noise=float(noise), clutter=float(clutter), occlusion=float(occlusion),
        occlusion_size=tuple(float(v) for v in occlusion_size), scale=tuple(float(v) for v in scale),
        mix_prob=float(mix_prob), repeat_prob=float(repeat_prob), supersample=supersample,
    )
    options.check()
    if not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ConfigError(f"synthetic: option num_images={num_images!r}; expected an integer >= 1")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"synthetic: option seed={seed!r}; expected a non-negative integer")
    split = assign_split(int(num_images), test_fraction, int(seed))

    out_dir = Path(out_dir)
    check_replaceable(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    source = source_record(int(num_images), int(seed), float(test_fraction), options)

    remove_stale_temporaries(out_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        (tmp / "images").mkdir()
        labels = np.zeros((num_images, len(LABEL_NAMES)), dtype=np.uint8)
        for i in bar(range(int(num_images)), show=progress, desc="synthetic", unit="img"):
            labels[i], image = generate_item(int(seed), i, options)
            image.save(tmp / "images" / f"{i:06d}.png", format="PNG")
        frame = pd.DataFrame(
            {
                "image_id": [f"syn_{i:06d}" for i in range(num_images)],
                "path": [f"images/{i:06d}.png" for i in range(num_images)],
                "split": split,
            }
        )
        for j, name in enumerate(LABEL_NAMES):
            frame[name] = labels[:, j]
        table = LabelTable(frame, LABEL_NAMES, tmp, "synthetic", source)
        write_label_table(table, tmp / "labels.parquet")
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_label_table(out_dir / "labels.parquet", expect_labels=LABEL_NAMES)
