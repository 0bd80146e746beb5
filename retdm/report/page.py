"""A tiny document model for the report and its two renderers: one self-contained HTML file, or Markdown.

A document is a title plus :class:`Section` s; a section holds blocks: :class:`Text` (a small
Markdown subset), :class:`Table`, :class:`Figure` (PNG bytes) and :class:`Link`.
:func:`render_html` inlines everything (CSS, images as data URIs) so the file opens anywhere with
no network; :func:`render_markdown` writes the figures as PNG files and references them relatively.
All text is HTML-escaped in the HTML output. Neither renderer adds a timestamp: ``generated`` is
whatever line the caller passes, so identical inputs render identically.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from retdm.errors import ConfigError, DataError
from retdm.files import atomic_write

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
REFERENCE_COLUMN = "reference"  # boolean column of a Table: reference rows (e.g. the paper's); never bolded
FLAG_MARK = "⚠"
MISSING = "–"
MAX_DECIMALS = 4  # a float column shows at most this many digits after the point (Table.decimals overrides)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Inline Markdown that Text understands: `code`, **bold**, *italic*, [text](href).
_INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|\*([^*\s][^*]*?)\*|\[([^\]]+)\]\(([^)\s]+)\)")


@dataclass(frozen=True)
class Text:
    """Prose in a Markdown subset: paragraphs split by blank lines, ``- `` bullet lists, and inline
    `code`, **bold**, *italic* and [links](href); Markdown output passes it through (``<``, ``>``, ``&``
    escaped outside code spans). With ``code=True`` the text is shown verbatim in a monospace block."""

    markdown_like: str
    code: bool = False


@dataclass(frozen=True)
class Table:
    """A table of values.

    Attributes:
        frame: the rows to show; an optional boolean column ``reference`` marks reference rows (not
            rendered; shown in italics and ignored when picking the best values).
        highlight: column → ``"max"`` or ``"min"``: bold the best value of that column, ignoring NaN
            and reference rows (ties are all bold).
        flags: optional per-row marks, aligned to ``frame.index``: True or a non-empty string flags
            the row, which gets ⚠ after its first cell (the string becomes the HTML tooltip).
        decimals: digits after the point for float columns; None picks per column the fewest that
            show every value as rounded to :data:`MAX_DECIMALS` (0.65 and 0.712 → 0.650 and 0.712).
    """

    frame: pd.DataFrame
    highlight: dict[str, str] | None = None
    flags: pd.Series | None = None
    decimals: int | None = None

    def __post_init__(self) -> None:
        for column, direction in (self.highlight or {}).items():
            if column not in self.frame.columns:
                raise ConfigError(f"Table.highlight: no column {column!r}; the table has {list(self.frame.columns)}")
            if direction not in ("max", "min"):
                raise ConfigError(f"Table.highlight[{column!r}]: expected 'max' or 'min', got {direction!r}")
            if not (pd.api.types.is_numeric_dtype(self.frame[column]) or self.frame[column].isna().all()):
                raise ConfigError(f"Table.highlight: column {column!r} is {self.frame[column].dtype}, not numeric; "
                                  "highlight only numeric columns")
        flags = self.flags
        if flags is not None and not (self.frame.index.is_unique and flags.index.isin(self.frame.index).all()):
            raise DataError("Table.flags: expected a Series indexed like the frame (unique index), got index "
                            f"{list(self.flags.index)[:5]} for a frame indexed {list(self.frame.index)[:5]}")


@dataclass(frozen=True)
class Figure:
    """A PNG figure.

    Attributes:
        png: the PNG bytes (e.g. from :mod:`retdm.report.figures`).
        caption: shown under the figure; also the image's alt text.
        name: file stem for the Markdown output (``[A-Za-z0-9_.-]``, ``.png`` is appended if absent).
    """

    png: bytes
    caption: str
    name: str

    def __post_init__(self) -> None:
        if not bytes(self.png[:8]) == PNG_SIGNATURE:
            raise DataError(f"Figure {self.name!r}: png does not start with the PNG signature; pass PNG bytes")
        if not _NAME.match(self.name) or ".." in self.name:
            raise DataError(f"Figure name {self.name!r}: use letters, digits, '_', '.', '-' only (it becomes a file "
                            "name)")

    @property
    def filename(self) -> str:
        return self.name if self.name.lower().endswith(".png") else f"{self.name}.png"


@dataclass(frozen=True)
class Link:
    """A link on its own line."""

    text: str
    href: str


@dataclass(frozen=True)
class Section:
    """A titled part of the report (an ``<h2>`` / ``##``) and its blocks in order."""

    title: str
    blocks: list = field(default_factory=list)


# --- shared helpers --------------------------------------------------------------------------------

def _slugs(titles: list[str]) -> list[str]:
    """GitHub-style anchors (lower case, punctuation dropped, spaces → '-'), made unique with -1, -2, …"""
    seen: dict[str, int] = {}
    out = []
    for title in titles:
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-") or "section"
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.append(slug if count == 0 else f"{slug}-{count}")
    return out


def _check_blocks(sections: list[Section]) -> None:
    names: dict[str, str] = {}
    for section in sections:
        for block in section.blocks:
            if not isinstance(block, (Text, Table, Figure, Link)):
                raise DataError(f"section {section.title!r}: blocks must be Text, Table, Figure or Link, got "
                                f"{type(block).__name__}")
            if isinstance(block, Figure):
                key = block.filename.lower()
                if key in names:
                    raise DataError(f"figure name {block.filename!r} is used twice (sections {names[key]!r} and "
                                    f"{section.title!r}); give each figure its own name")
                names[key] = section.title


def _flag_text(value: object) -> str:
    """"" for an unflagged row; else the tooltip text ("flagged" for a plain True)."""
    if isinstance(value, (bool, np.bool_)):
        return "flagged" if value else ""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def _decimals(column: pd.Series) -> int:
    """Fewest digits after the point that show every value of the column as rounded to MAX_DECIMALS."""
    values = column.to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    for digits in range(MAX_DECIMALS):
        if np.allclose(values, np.round(values, digits), rtol=0, atol=1e-9):
            return digits
    return MAX_DECIMALS


def _cells(table: Table) -> tuple[list[str], list[list[tuple[str, bool, bool]]], list[bool], list[str], list[bool]]:
    """Formatted table: headers, rows of (text, bold, numeric), reference per row, flag text per row, numeric per
    column. Flag text is "" when the row is not flagged."""
    frame = table.frame
    reference = (frame[REFERENCE_COLUMN].fillna(False).astype(bool) if REFERENCE_COLUMN in frame.columns
                 else pd.Series(False, index=frame.index))
    shown = [c for c in frame.columns if c != REFERENCE_COLUMN]
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in shown]
    best: dict[str, float] = {}
    for column, direction in (table.highlight or {}).items():
        values = pd.to_numeric(frame.loc[~reference, column], errors="coerce").dropna()
        if len(values):
            best[column] = float(values.max() if direction == "max" else values.min())
    flags = [_flag_text(v) for v in table.flags.reindex(frame.index)] if table.flags is not None else [""] * len(frame)
    decimals = {c: table.decimals if table.decimals is not None else _decimals(frame[c])
                for c, is_num in zip(shown, numeric) if is_num and pd.api.types.is_float_dtype(frame[c])}
    columns = []  # per column, its cells; column-wise so that ints stay ints (iterrows would upcast)
    for column, is_num in zip(shown, numeric):
        cells = []
        for value, ref in zip(frame[column].tolist(), reference.tolist()):
            if value is None or (np.ndim(value) == 0 and pd.isna(value)):
                cells.append((MISSING, False, is_num))
                continue
            text = f"{float(value):.{decimals[column]}f}" if column in decimals else str(value)
            cells.append((text, column in best and not ref and float(value) == best[column], is_num))
        columns.append(cells)
    rows = [list(cells) for cells in zip(*columns)] if columns else [[] for _ in range(len(frame))]
    return [str(c) for c in shown], rows, list(reference), flags, numeric


# --- HTML ----------------------------------------------------------------------------------------

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --zebra: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1100px; padding: 2rem 1.5rem 4rem; color: var(--fg); line-height: 1.5;
       font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; font-size: 15px; }
h1 { font-size: 1.8rem; margin-bottom: 0.2rem; }
h2 { font-size: 1.35rem; margin-top: 2.5rem; padding-bottom: 0.3rem; border-bottom: 1px solid var(--line); }
a { color: var(--accent); }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em; background: var(--zebra);
       padding: 0.1em 0.3em; border-radius: 4px; }
.generated { color: var(--muted); font-size: 0.9rem; margin-top: 0; }
nav.toc { background: var(--zebra); border: 1px solid var(--line); border-radius: 6px; padding: 0.6rem 1.2rem; }
nav.toc ol { margin: 0.3rem 0; padding-left: 1.3rem; }
.table-wrap { max-height: 80vh; overflow: auto; border: 1px solid var(--line); border-radius: 6px; margin: 1rem 0; }
table { border-collapse: collapse; width: 100%; font-size: 0.9rem; }
th, td { padding: 0.35rem 0.7rem; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
thead th { position: sticky; top: 0; background: #eaeef2; z-index: 1; }
tbody tr:nth-child(even) { background: var(--zebra); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.reference td { font-style: italic; color: var(--muted); }
.flag { color: #bc4c00; }
figure { margin: 1.5rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figcaption { color: var(--muted); font-size: 0.9rem; margin-top: 0.3rem; }
"""


def _inline_html(text: str) -> str:
    out, end = [], 0
    for match in _INLINE.finditer(text):
        out.append(html.escape(text[end:match.start()]))
        code, bold, italic, label, href = match.groups()
        if code is not None:
            out.append(f"<code>{html.escape(code)}</code>")
        elif bold is not None:
            out.append(f"<strong>{html.escape(bold)}</strong>")
        elif italic is not None:
            out.append(f"<em>{html.escape(italic)}</em>")
        else:
            out.append(f'<a href="{html.escape(href, quote=True)}">{html.escape(label)}</a>')
        end = match.end()
    out.append(html.escape(text[end:]))
    return "".join(out)


def _text_html(text: Text) -> str:
    if text.code:
        return f"<pre><code>{html.escape(text.markdown_like.strip(chr(10)))}</code></pre>"
    parts = []
    for para in re.split(r"\n\s*\n", text.markdown_like.strip()):
        lines = [line.strip() for line in para.splitlines() if line.strip()]
        if lines and all(line.startswith(("- ", "* ")) for line in lines):
            items = "".join(f"<li>{_inline_html(line[2:])}</li>" for line in lines)
            parts.append(f"<ul>{items}</ul>")
        elif lines:
            parts.append(f"<p>{_inline_html(' '.join(lines))}</p>")
    return "\n".join(parts)


NUM, REF = ' class="num"', ' class="reference"'


def _table_html(table: Table) -> str:
    headers, rows, reference, flags, numeric = _cells(table)
    head = "".join(f'<th{NUM if num else ""} scope="col">{html.escape(h)}</th>'
                   for h, num in zip(headers, numeric))
    body = []
    for cells, ref, flag in zip(rows, reference, flags):
        tds = []
        for j, (text, bold, num) in enumerate(cells):
            content = f"<strong>{html.escape(text)}</strong>" if bold else html.escape(text)
            if j == 0 and flag:
                content += f' <span class="flag" title="{html.escape(flag, quote=True)}">{FLAG_MARK}</span>'
            tds.append(f'<td{NUM if num else ""}>{content}</td>')
        body.append(f'<tr{REF if ref else ""}>{"".join(tds)}</tr>')
    return (f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(body)
            + "\n</tbody></table></div>")


def _figure_html(figure: Figure) -> str:
    data = base64.b64encode(bytes(figure.png)).decode("ascii")
    caption = html.escape(figure.caption, quote=True)
    anchor = html.escape(Path(figure.filename).stem, quote=True)
    return (f'<figure id="fig-{anchor}"><img src="data:image/png;base64,{data}" alt="{caption}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _block_html(block: Text | Table | Figure | Link) -> str:
    if isinstance(block, Text):
        return _text_html(block)
    if isinstance(block, Table):
        return _table_html(block)
    if isinstance(block, Figure):
        return _figure_html(block)
    return f'<p><a href="{html.escape(block.href, quote=True)}">{html.escape(block.text)}</a></p>'


def render_html(title: str, sections: list[Section], *, generated: str) -> str:
    """The report as ONE self-contained HTML file: inline CSS, images as data URIs, no external resource.

    Args:
        title: the page title (``<title>`` and ``<h1>``).
        sections: the content; each becomes an ``<h2>`` listed in the table of contents.
        generated: a line shown under the title (e.g. run, commit); the renderer adds no timestamp.

    Returns:
        The HTML text.
    """
    _check_blocks(sections)
    slugs = _slugs([s.title for s in sections])
    toc = "".join(f'<li><a href="#{slug}">{html.escape(s.title)}</a></li>' for s, slug in zip(sections, slugs))
    body = []
    for section, slug in zip(sections, slugs):
        body.append(f'<section><h2 id="{slug}">{html.escape(section.title)}</h2>')
        body += [_block_html(block) for block in section.blocks]
        body.append("</section>")
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
        f"<h1>{html.escape(title)}</h1>", f'<p class="generated">{html.escape(generated)}</p>',
        f'<nav class="toc"><strong>Contents</strong><ol>{toc}</ol></nav>', *body, "</body>", "</html>", ""])


# --- Markdown ------------------------------------------------------------------------------------

def _md_escape(text: str) -> str:
    """HTML-escape text outside `code` spans (GitHub renders the entities back; raw tags never reach the page)."""
    parts = re.split(r"(`[^`]+`)", text)
    return "".join(part if part.startswith("`") and part.endswith("`") and len(part) > 1
                   else html.escape(part, quote=False) for part in parts)


def _md_cell(text: str) -> str:
    return _md_escape(text).replace("|", "\\|").replace("\n", " ")


def _table_markdown(table: Table) -> str:
    headers, rows, reference, flags, numeric = _cells(table)
    lines = ["| " + " | ".join(_md_cell(h) for h in headers) + " |",
             "|" + "|".join("---:" if num else "---" for num in numeric) + "|"]
    for cells, ref, flag in zip(rows, reference, flags):
        texts = []
        for j, (text, bold, _) in enumerate(cells):
            text = _md_cell(text)
            text = f"**{text}**" if bold else f"*{text}*" if ref and text != MISSING else text
            texts.append(text + (f" {FLAG_MARK}" if j == 0 and flag else ""))
        lines.append("| " + " | ".join(texts) + " |")
    return "\n".join(lines)


def render_markdown(title: str, sections: list[Section], *, figures_dir: Path, link_prefix: str,
                    generated: str = "") -> str:
    """The report as GitHub-flavoured Markdown; figures are written as PNG files.

    Args:
        title: the ``#`` heading.
        sections: the content; each becomes a ``##`` heading listed in the table of contents.
        figures_dir: where each figure is written as ``<Figure.name>.png`` (created if missing;
            each file written atomically; all names are checked before any file is written).
        link_prefix: the path from the Markdown file to ``figures_dir`` (e.g. ``"figures"``); images
            are referenced as ``<link_prefix>/<name>.png`` (``""`` means beside the Markdown file).
        generated: an optional line shown in italics under the title, as in :func:`render_html`.

    Returns:
        The Markdown text (the caller writes it).
    """
    _check_blocks(sections)
    figures_dir = Path(figures_dir)
    prefix = link_prefix.rstrip("/") + "/" if link_prefix.strip("/") else ""
    slugs = _slugs([s.title for s in sections])
    lines = [f"# {_md_cell(title)}", "", *([f"_{_md_cell(generated)}_", ""] if generated else []), "## Contents", ""]
    lines += [f"{i}. [{_md_cell(s.title)}](#{slug})" for i, (s, slug) in enumerate(zip(sections, slugs), 1)]
    writes: list[Callable[[], None]] = []
    for section in sections:
        lines += ["", f"## {_md_cell(section.title)}", ""]
        for block in section.blocks:
            if isinstance(block, Text) and block.code:
                fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", block.markdown_like)), default=0))
                lines += [fence, block.markdown_like.strip("\n"), fence]
            elif isinstance(block, Text):
                lines.append(_md_escape(block.markdown_like.strip()))
            elif isinstance(block, Table):
                lines.append(_table_markdown(block))
            elif isinstance(block, Figure):
                alt = _md_cell(block.caption).replace("[", "(").replace("]", ")")
                lines += [f"![{alt}]({prefix}{block.filename})", "", f"*{_md_cell(block.caption)}*"]
                writes.append(lambda b=block: atomic_write(figures_dir / b.filename,
                                                           lambda tmp: Path(tmp).write_bytes(bytes(b.png))))
            else:
                href = f"<{block.href}>" if re.search(r"[\s()]", block.href) else block.href
                lines.append(f"[{_md_cell(block.text)}]({href})")
            lines.append("")
    if writes:
        figures_dir.mkdir(parents=True, exist_ok=True)
    for write in writes:
        write()
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).rstrip("\n") + "\n"
