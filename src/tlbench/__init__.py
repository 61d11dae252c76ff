"""tlbench: a benchmark study of transfer learning for image classification.

The package holds the study's logic; the Snakemake workflow (``Snakefile``,
``rules/``, ``scripts/``) only expands the configured matrix and calls it.
"""

__version__ = "0.1.0"
