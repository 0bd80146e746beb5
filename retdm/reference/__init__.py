"""Reference data shipped with the package.

``paper_tables.csv``: the results printed in Tables II (scene), III (mirflickr), IV and V (coco)
of Li et al., "Reconstruction Regularized Deep Metric Learning for Multi-label Image
Classification", IEEE TNNLS (arXiv 2007.13547), transcribed in long form with columns
``table, dataset, method, metric, value, note``. The ``note`` column records transcription
fixes (e.g. a pair of columns printed swapped) and values the paper cites from other papers.
Read it through :func:`retdm.compare.paper_table`.
"""
