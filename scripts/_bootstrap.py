"""First line of every job script: find tlbench, then hand the job to the job server.

Snakemake puts ``scripts/`` on ``sys.path``; in a job's conda environment
(``envs/tlbench.yaml``) tlbench is not installed, so its sources are used from
the checkout instead. Where tlbench is installed (the project's .venv), the
installed (editable) package is used as is.

Then, when the workflow runs a job server (local execution: the Snakefile's
``onstart``), the job is run by a process the server forks, with Keras already
imported, and this process exits with its status (:func:`tlbench.workflow.job_client.delegate`;
without a server, or one that cannot serve this job, the script goes on here).
"""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("tlbench") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tlbench.workflow.job_client import delegate  # noqa: E402

delegate()
