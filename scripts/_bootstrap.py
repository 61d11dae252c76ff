"""Make this checkout's ``src/`` importable for the workflow's scripts.

Snakemake puts ``scripts/`` on ``sys.path``; in a job's conda environment
(``envs/tlbench.yaml``) tlbench is not installed, so its sources are used from
the checkout instead. Where tlbench is installed (the project's .venv), the
installed (editable) package is used as is.
"""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("tlbench") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
