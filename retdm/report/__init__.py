"""The report of ``retdm report``: figures drawn from results, and a page (HTML or Markdown) that holds them.

:mod:`retdm.report.figures` turns tables of results into PNG bytes (and :mod:`retdm.report.embedding`
the embedding map); :mod:`retdm.report.page` is a tiny
document model (sections of text, tables, figures, links) with a self-contained HTML renderer and a
Markdown renderer.
"""

from retdm.report.embedding import embedding_map, project_2d
from retdm.report.figures import (
    convergence_figure,
    per_class_ap_figure,
    prediction_examples,
    sensitivity_heatmaps,
    threshold_effect_figure,
)
from retdm.report.page import Figure, Link, Section, Table, Text, render_html, render_markdown

__all__ = [
    "convergence_figure", "embedding_map", "per_class_ap_figure", "prediction_examples", "project_2d",
    "sensitivity_heatmaps", "threshold_effect_figure",
    "Figure", "Link", "Section", "Table", "Text", "render_html", "render_markdown",
]
