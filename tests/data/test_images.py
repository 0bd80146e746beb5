"""Decoding image files (retdm.data.images): every image checked, each failure named."""

import numpy as np
import pytest
from PIL import Image

from retdm.data.images import decode_image, find_unreadable_images, read_image, unreadable_message
from retdm.errors import DataError


def write_images(root, n=6):
    """``n`` good 64 x 64 JPEGs named 0.jpg … under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / f"{i}.jpg", quality=90)
    return [f"{i}.jpg" for i in range(n)]


def spoil(root):
    """Truncate 1.jpg to half its bytes and turn 4.jpg into text; the two files that no longer decode."""
    data = (root / "1.jpg").read_bytes()
    (root / "1.jpg").write_bytes(data[: len(data) // 2])
    (root / "4.jpg").write_text("label,notes\nnot,an image\n")
    return ["1.jpg", "4.jpg"]


@pytest.mark.parametrize("workers", [1, 3])
def test_every_truncated_or_fake_image_is_listed_with_why(tmp_path, workers):
    paths = write_images(tmp_path)
    assert find_unreadable_images(tmp_path, paths, workers) == []
    spoil(tmp_path)
    (tmp_path / "5.jpg").unlink()
    bad = find_unreadable_images(tmp_path, [*paths, ""], workers)
    assert [p for p, _ in bad] == ["1.jpg", "4.jpg", "5.jpg", ""]
    assert "truncated" in bad[0][1] and bad[1][1].startswith("cannot be decoded (UnidentifiedImageError")
    assert bad[2][1] == "does not exist" and bad[3][1] == "empty path"


def test_the_message_is_one_line_with_the_count_and_the_first_files():
    bad = [(f"{i}.jpg", "cannot be decoded (x)") for i in range(12)]
    text = unreadable_message(bad, 100, shown=2)
    assert text == "12 of 100 image file(s) cannot be read: 0.jpg: cannot be decoded (x); 1.jpg: cannot be " \
                   "decoded (x); and 10 more"


def test_read_image_refuses_what_the_check_lists(tmp_path):
    write_images(tmp_path, 2)
    spoil_one = (tmp_path / "1.jpg").read_bytes()
    (tmp_path / "1.jpg").write_bytes(spoil_one[:40])
    assert decode_image(tmp_path / "0.jpg").shape == (3, 64, 64)
    with pytest.raises(DataError, match=r"row 1: image file .*1\.jpg cannot be decoded .*replace or remove it"):
        read_image(tmp_path / "1.jpg", "row 1: ")
