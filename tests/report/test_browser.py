"""The headless-browser check itself: a page that renders passes, a broken image is caught.

Until the real report exists these build a self-contained page here: two tables and two inline
PNG figures, then the same page with an undecodable image and a missing file.
"""

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

from browser import check_rendered, needs_browser, open_page

HEADINGS = ("Browser check", "Scores", "Figures")


def _png_b64(seed: int) -> str:
    """A 64x48 PNG of coloured noise, base64, so the screenshot has many distinct colours."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(48, 64, 3), dtype=np.uint8)  # (H, W, 3)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _page(tmp_path: Path, extra_images: str = "") -> Path:
    rows = "".join(f"<tr><td>m{i}</td><td>{i / 10:.2f}</td></tr>" for i in range(3))
    figures = "".join(f'<figure><img src="data:image/png;base64,{_png_b64(seed)}" alt="figure {seed}" width="256">'
                      f"<figcaption>Figure {seed}</figcaption></figure>" for seed in (1, 2))
    html = f"""<!doctype html><html><head><meta charset="utf-8"><title>check</title></head><body>
<h1>Browser check</h1>
<h2>Scores</h2>
<table><thead><tr><th>method</th><th>CF1</th></tr></thead><tbody>{rows}</tbody></table>
<h3>Second table</h3>
<table><tr><th>a</th><th>b</th><th>c</th></tr><tr><td>1</td><td>2</td><td>3</td></tr></table>
<h2>Figures</h2>
{figures}{extra_images}
</body></html>"""
    path = tmp_path / "index.html"
    path.write_text(html, encoding="utf-8")
    return path


@needs_browser
def test_page_renders_tables_figures_and_a_screenshot(tmp_path):
    facts = open_page(_page(tmp_path), tmp_path / "shots" / "index.png")
    assert check_rendered(facts, headings=HEADINGS, min_tables=2, min_images=2) == []
    assert facts.title == "check"
    assert [(h.level, h.text) for h in facts.headings] == [
        (1, "Browser check"), (2, "Scores"), (3, "Second table"), (2, "Figures")]
    assert [(t.headers, t.rows) for t in facts.tables] == [(("method", "CF1"), 3), (("a", "b", "c"), 1)]
    assert [(i.alt, i.caption, i.natural_width, i.natural_height) for i in facts.images] == [
        ("figure 1", "Figure 1", 64, 48), ("figure 2", "Figure 2", 64, 48)]
    assert all(i.complete and i.width == 256 for i in facts.images)

    with Image.open(facts.screenshot) as shot:
        shot.load()
        assert shot.format == "PNG"
        assert shot.width >= 1000 and shot.height >= 2 * 192  # the window grew to the whole page
        colours = shot.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 100, "the screenshot is (nearly) blank"


@needs_browser
def test_broken_and_missing_images_are_reported(tmp_path):
    extra = ('<img src="data:image/png;base64,AAAA" alt="broken">'
             '<img src="missing.png" alt="missing">')
    facts = open_page(_page(tmp_path, extra), tmp_path / "index.png")
    by_alt = {image.alt: image for image in facts.images}
    assert by_alt["broken"].complete and by_alt["broken"].natural_width == 0 and by_alt["broken"].broken
    assert by_alt["missing"].natural_width == 0 and by_alt["missing"].broken
    assert not by_alt["figure 1"].broken

    problems = check_rendered(facts, headings=(*HEADINGS, "Nowhere"))
    assert any("'broken' did not render" in p for p in problems)
    assert any("'missing' did not render" in p for p in problems)
    assert any("heading 'Nowhere' not found" in p for p in problems)
    assert any("missing.png" in e and "ERR_FILE_NOT_FOUND" in e for e in facts.console_errors)
