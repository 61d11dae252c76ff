"""Analysis: computes from the run folders; draws and writes no page.

The one reader of a run folder (``runs``), the study's tables, choosing by validation
(``selection``), the test-split ledger, learning curves, the verdict (``verdict/``: the
paired bootstrap, cells, pairs, across datasets) and transferability (``transferability/``:
scores, scoring a feature cache, tau, prescreening). Functions return frames and
records; every figure and page is drawn in :mod:`tlbench.report`. Imports tuning and the
layers below it.
"""
