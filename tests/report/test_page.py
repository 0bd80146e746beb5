"""The report page: self-contained HTML and Markdown with its figure files."""

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from retdm.errors import ConfigError, DataError
from retdm.report.page import Figure, Link, Section, Table, Text, render_html, render_markdown


def _png(colour: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (8, 6), colour)
    image.putpixel((0, 0), (255, 255, 255))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _sections() -> list[Section]:
    frame = pd.DataFrame({"method": ["retdm", "bce", "RETDM (paper)"], "CF1": [0.712, 0.650, 0.900],
                          "hamming": [0.080, 0.070, 0.010], "reference": [False, False, True]})
    table = Table(frame, highlight={"CF1": "max", "hamming": "min"}, flags=pd.Series([False, False, True]))
    return [
        Section("Summary & <results>", [Text("Scores at **0.5**; see `params.yaml`.\n\n- one\n- two <b>"), table]),
        Section("Lineage", [Text("a <- b\n  `x`", code=True)]),
        Section("Figures", [Figure(_png((200, 30, 30)), "Loss <per> epoch", "convergence"),
                            Figure(_png((30, 30, 200)), "Embedding map", "embedding.png"),
                            Link("provenance", "provenance.json")]),
    ]


def test_html_is_self_contained_and_escaped():
    sections = _sections()
    page = render_html("RETDM report", sections, generated="run abc, commit 123")
    assert re.search(r'<h2 id="summary--results">Summary &amp; &lt;results&gt;</h2>', page)
    assert '<h2 id="figures">Figures</h2>' in page
    assert '<a href="#summary--results">' in page and '<a href="#figures">' in page  # table of contents
    assert "<b>" not in page and "&lt;b&gt;" in page
    assert "<pre><code>a &lt;- b\n  `x`</code></pre>" in page
    assert "<strong>0.5</strong>" in page and "<code>params.yaml</code>" in page and "<li>one</li>" in page
    uris = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]*)"', page)
    figures = [b for s in sections for b in s.blocks if isinstance(b, Figure)]
    assert [base64.b64decode(data) for data, _ in uris] == [f.png for f in figures]
    assert uris[0][1] == "Loss &lt;per&gt; epoch" and "<figcaption>Loss &lt;per&gt; epoch</figcaption>" in page
    assert "http" not in page.lower() and "<link" not in page and "<script" not in page and "@import" not in page
    assert render_html("RETDM report", _sections(), generated="run abc, commit 123") == page


def test_best_values_are_bold_ignoring_reference_rows_and_nan():
    page = render_html("t", _sections(), generated="")
    assert "<strong>0.712</strong>" in page  # max among our rows; the paper's 0.900 is a reference row
    assert "<strong>0.07</strong>" in page
    assert "<strong>0.900</strong>" not in page and "<strong>0.01</strong>" not in page
    assert page.count('<tr class="reference">') == 1 and ">reference<" not in page  # column not rendered
    assert 'class="flag"' in page
    frame = pd.DataFrame({"m": ["a", "b"], "v": [np.nan, 0.5]})
    nan_page = render_html("t", [Section("s", [Table(frame, highlight={"v": "max"})])], generated="")
    assert "<strong>0.5</strong>" in nan_page and "–" in nan_page
    precise = pd.DataFrame({"v": [0.1234, 0.5], "n": [1.0, 12.0]})
    precise_page = render_html("t", [Section("s", [Table(precise)])], generated="")
    assert ">0.1234<" in precise_page and ">0.5000<" in precise_page and ">12<" in precise_page


def test_markdown_writes_referenced_figures(tmp_path):
    sections = _sections()
    text = render_markdown("RETDM report", sections, figures_dir=tmp_path / "figures", link_prefix="figures")
    assert text.startswith("# RETDM report\n") and "## Summary &amp; &lt;results&gt;" in text and "## Figures" in text
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert refs == ["figures/convergence.png", "figures/embedding.png"]
    for ref, figure in zip(refs, [b for b in sections[2].blocks if isinstance(b, Figure)]):
        assert (tmp_path / ref).read_bytes() == figure.png
    assert "| **0.712** |" in text and "| *0.900* |" in text and "RETDM (paper)* ⚠" in text
    assert "|---|---:|---:|" in text and "[provenance](provenance.json)" in text
    assert "```\na <- b\n  `x`\n```" in text
    assert "(#summary--results)" in text and "- two &lt;b&gt;" in text and "*Loss &lt;per&gt; epoch*" in text


def test_bad_documents_raise_before_writing(tmp_path):
    with pytest.raises(DataError, match="PNG signature"):
        Figure(b"not a png", "c", "x")
    with pytest.raises(DataError, match="letters, digits"):
        Figure(_png((0, 0, 0)), "c", "../evil")
    with pytest.raises(ConfigError, match="'max' or 'min'"):
        Table(pd.DataFrame({"a": [1.0]}), highlight={"a": "best"})
    twice = [Section("a", [Figure(_png((0, 0, 0)), "c", "same")]), Section("b", [Figure(_png((1, 1, 1)), "c", "same")])]
    with pytest.raises(DataError, match="used twice"):
        render_markdown("t", twice, figures_dir=tmp_path / "figs", link_prefix="figs")
    assert not (tmp_path / "figs").exists()


def test_int_columns_stay_ints_and_missing_values_show_a_dash():
    frame = pd.DataFrame({"m": ["a", None], "seeds": [3, 1], "v": [0.25, np.nan],
                          "k": pd.array([1, None], dtype="Int64")})
    page = render_html("t", [Section("s", [Table(frame, highlight={"seeds": "max"})])], generated="")
    assert "<strong>3</strong>" in page and ">1<" in page and ">0.25<" in page and page.count(">–<") == 3
