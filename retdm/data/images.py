"""Reading image files: decode one to a tensor, or check many and say which cannot be read.

Training, the image cache, the pipeline's checks and the report all read images through these
functions, so a file that one of them accepts the others accept too.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from retdm.errors import DataError

if TYPE_CHECKING:  # torch only where a tensor is made: the checks and the download stage start without it
    from torch import Tensor
from retdm.log import bar


def decode_image(path: Path) -> Tensor | str:
    """Decode an image file to a uint8 (3, H, W) RGB tensor, or say why it cannot be read.

    Returns:
        The tensor, or a short reason: ``"does not exist"`` or ``"cannot be decoded (<error>)"``
        (not an image, truncated, corrupt).
    """
    import torch

    image = _decode_rgb(path)
    if isinstance(image, str):
        return image
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)  # (H, W, 3) -> (3, H, W)


def _decode_rgb(path: Path) -> Image.Image | str:
    """``path`` fully decoded and converted to RGB, or why not: what :func:`decode_image` reads and
    :func:`find_unreadable_images` checks (without the tensor, whose copies hold the GIL)."""
    if not path.is_file():
        return "does not exist"
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:  # PIL's ways to refuse a file
        return f"cannot be decoded ({type(err).__name__}: {err})"


def read_image(path: Path, where: str = "") -> Tensor:
    """Decode an image file to a uint8 (3, H, W) RGB tensor.

    Raises:
        DataError: naming the file (and ``where``, e.g. the table row) when it is missing or
            cannot be decoded.
    """
    image = decode_image(path)
    if isinstance(image, str):
        fix = "fix the path column or restore the file" if image == "does not exist" else "replace or remove it"
        raise DataError(f"{where}image file {path} {image}; {fix}")
    return image


def decode_workers(workers: int | None = None) -> int:
    """Threads that decode images: ``workers``, by default ``min(4, cpu count)``. PIL releases the GIL
    while it decodes, so threads decode in parallel."""
    return workers if workers is not None else min(4, os.cpu_count() or 1)


def find_unreadable_images(root: str | os.PathLike, paths: Iterable[str], workers: int | None = None, *,
                           progress: bool = False) -> list[tuple[str, str]]:
    """Decode every image (as training does, :func:`decode_image`), in threads, and list those that fail.

    Args:
        root: directory the ``paths`` are relative to.
        paths: the image paths (e.g. a label table's ``path`` column).
        workers: decoding threads (:func:`decode_workers`).
        progress: show a progress bar.

    Returns:
        ``(path, why)`` of each missing, empty, truncated or corrupt file, in the order given;
        empty when every image decodes.
    """
    root, paths = Path(root), list(paths)

    def problem(rel: str) -> str:
        if not isinstance(rel, str) or not rel:
            return "empty path"
        image = _decode_rgb(root / rel)
        return image if isinstance(image, str) else ""

    with ThreadPoolExecutor(decode_workers(workers)) as pool:
        problems = list(bar(pool.map(problem, paths), show=progress, total=len(paths), desc="decode images"))
    return [(rel, why) for rel, why in zip(paths, problems) if why]


def unreadable_message(bad: list[tuple[str, str]], total: int, shown: int = 10) -> str:
    """``bad`` (``(file, why)`` pairs) as one line: how many of ``total`` images, and the first ``shown``."""
    listed = "; ".join(f"{name}: {why}" for name, why in bad[:shown])
    more = f"; and {len(bad) - shown} more" if len(bad) > shown else ""
    return f"{len(bad)} of {total} image file(s) cannot be read: {listed}{more}"
