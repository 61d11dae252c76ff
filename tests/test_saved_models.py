"""``model.keras`` files saved before the package was laid out by layers still load.

``tests/data/models_3f9e176/`` holds two runs of the tiny study (configs/test/tiny.yaml)
trained at commit 3f9e176, the last before the layout: ``small_cnn`` from scratch with
the ``flip`` augmentation (tlbench's augmentation and Preprocess layers inside) and
``fine_tune`` from a pretraining run; ``test_x.npy`` is that study's test split. Keras
finds tlbench's layers by their registered names (``tlbench>Name``), not by module path,
so moving the modules must leave every saved model loadable and its predictions equal.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tlbench.models.backbones.from_run import load_run_classifier

DATA = Path(__file__).resolve().parent / "data" / "models_3f9e176"
RUNS = sorted(p for p in DATA.iterdir() if p.is_dir())


def test_both_saved_runs_are_here():
    assert [p.name for p in RUNS] == ["cnn_scratch_scratch_flip", "cnn_source_fine_tune_none"]


LOAD = """
import sys
import numpy as np
from pathlib import Path
from tlbench.models.backbones.from_run import load_run_model
from tlbench.models.inputs import predict
model = load_run_model(Path(sys.argv[1]))
x = np.load(sys.argv[2]).astype("float32")
np.save(sys.argv[3], predict(model, x, 16))
"""


@pytest.mark.parametrize("run", RUNS, ids=lambda p: p.name)
def test_a_model_saved_before_the_layout_predicts_what_it_predicted(run, tmp_path):
    """In a fresh process that imports only the loader: the loader itself registers
    every custom layer the model holds."""
    out = tmp_path / "y_prob.npy"
    proc = subprocess.run(
        [sys.executable, "-c", LOAD, str(run), str(DATA / "test_x.npy"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = np.load(run / "predictions.npz")["y_prob"]
    assert np.load(out) == pytest.approx(saved, abs=1e-6)


@pytest.mark.parametrize("run", RUNS, ids=lambda p: p.name)
def test_its_classifier_and_class_names_load_for_the_source_scores(run):
    model, classes = load_run_classifier(run, (16, 16, 3))
    assert classes == json.loads((run / "classes.json").read_text())
    assert model.output_shape[-1] == len(classes)
