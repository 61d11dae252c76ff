"""The study: a config checked against every axis and expanded into runs.

The config schema and its checks (``config``), reading a study (``load``), the matrix's
runs (``runs``) and the :class:`~tlbench.study.matrix.Study` with its paths and run specs
(``matrix``). It sits above the axes it checks (datasets, backbones, strategies, tuning
sections, transferability scores), although the workflow reads it first. Imports
analysis and the layers below it.
"""
