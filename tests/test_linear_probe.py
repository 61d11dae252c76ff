"""The linear_probe strategy: its Keras head is the probe, C is chosen by cross-validation on
the train split before the test split is read, and the saved model scores on val what the
probe records."""

from __future__ import annotations

import shutil

import keras
import numpy as np
import pytest
from engine_helpers import SplitRecorder, tiny_spec

from tlbench.core.errors import SpecError
from tlbench.models import inputs
from tlbench.models.probe import fit_linear_probe
from tlbench.strategies.linear_probe import probe_head
from tlbench.training import engine
from tlbench.training.spec import resolve_spec


@pytest.mark.parametrize("num_classes", [2, 3])
def test_the_keras_head_predicts_what_sklearn_does(num_classes):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(num_classes)
    y = np.arange(60) % num_classes
    scale = np.array([1.0, 5.0, 0.2, 30.0, 2.0])
    # features far from zero mean and unit scale, so the folded scaler matters
    x = (rng.normal(size=(60, 5)) + y[:, None]) * scale + 40.0
    fit = fit_linear_probe(x, y, x, y, grid=[0.01, 1.0], num_classes=num_classes)
    head = probe_head(fit)
    sklearn = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=fit.C, solver="lbfgs", max_iter=fit.max_iter, random_state=0),
    ).fit(x, y)
    x_new = (rng.normal(size=(25, 5)) + 1.0) * scale + 40.0
    got = head.predict(x_new.astype(np.float32), verbose=0)
    np.testing.assert_allclose(got, sklearn.predict_proba(x_new), atol=1e-5)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"grid": [1.0, -2.0]}, r"strategy\.params\.grid: C = -2\.0 is not a finite number > 0"),
        ({"grid": []}, r"strategy\.params\.grid: \[\] is empty"),
        ({"max_iter": 0}, r"strategy\.params\.max_iter: 0 must be an integer >= 1"),
        ({"batchnorm": "train"}, r"batchnorm: 'train' is not valid for strategy 'linear_probe'"),
    ],
)
def test_bad_parameters_name_the_value(tiny_prepared, params, message):
    spec = tiny_spec(tiny_prepared, "linear_probe")
    spec["strategy"]["params"] = params
    with pytest.raises(SpecError, match=message):
        resolve_spec(spec)


def test_a_run_chooses_C_before_the_test_split_is_read(tiny_prepared, tmp_path, monkeypatch):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    events = []
    real_load, real_fit = inputs.load_prepared, LogisticRegression.fit

    def fit(self, *args, **kwargs):
        events.append(("fit", self.C))
        return real_fit(self, *args, **kwargs)

    # the tiny data is separable: a third of the val labels moved to another class, so that
    # val accuracy is not train accuracy (nor 1.0 for every C)
    prepared = tmp_path / "noisy_val"
    shutil.copytree(tiny_prepared, prepared)
    y = np.load(prepared / "val_y.npy")
    y[: len(y) // 3] = (y[: len(y) // 3] + 1) % 3
    np.save(prepared / "val_y.npy", y)
    monkeypatch.setattr(
        engine, "load_prepared", lambda path: SplitRecorder(real_load(path), events)
    )
    monkeypatch.setattr(LogisticRegression, "fit", fit)
    spec = tiny_spec(prepared, "linear_probe")
    spec["strategy"]["params"] = {"grid": [1e-4, 1.0, 1e4]}
    out = tmp_path / "probe"
    metrics = engine.run(spec, out)
    fits = [e for e in events if e[0] == "fit"]
    folds = metrics["probe_cv_folds"]
    assert folds == 5  # 24 images per class in the tiny training split
    assert fits == [("fit", c) for c in (1e-4, 1.0, 1e4) for _ in range(folds)] + [
        ("fit", metrics["chosen_C"])
    ]  # every fold of every C, then the chosen C on the whole train split
    assert events.count(("split", "test")) == 1 and events[-1] == ("split", "test")
    assert metrics["fit_seconds"] == round(metrics["probe_train_seconds"], 4)
    assert 0 < metrics["fit_seconds"] < metrics["train_seconds"]
    # C is the cross-validation choice on TRAIN features (the same folds computed here)
    model = keras.saving.load_model(out / "model.keras")
    x_train, y_train = real_load(prepared).split("train")
    x_val, y_val = real_load(prepared).split("val")
    monkeypatch.setattr(LogisticRegression, "fit", real_fit)
    pooled = keras.Model(model.input, model.get_layer("gap").output)
    f_train, f_val = (
        pooled.predict(np.asarray(x, np.float32), verbose=0) for x in (x_train, x_val)
    )
    splits = StratifiedKFold(folds, shuffle=True, random_state=0).split(f_train, y_train)
    correct = np.zeros(3)
    for train_rows, held in splits:
        scaler = StandardScaler().fit(f_train[train_rows])
        for i, c in enumerate(metrics["probe_grid"]):
            clf = LogisticRegression(C=c, max_iter=metrics["probe_max_iter"], random_state=0)
            clf.fit(scaler.transform(f_train[train_rows]), y_train[train_rows])
            correct[i] += np.sum(clf.predict(scaler.transform(f_train[held])) == y_train[held])
    np.testing.assert_allclose(metrics["probe_cv_accuracy"], correct / len(y_train))
    assert metrics["chosen_C"] == metrics["probe_grid"][int(np.argmax(correct))]
    # the saved model is the probe: on val it scores the recorded validation accuracy
    prob = model.predict(np.asarray(x_val, np.float32), verbose=0)
    best = metrics["probe_val_accuracy"]
    assert best < 1.0  # the noisy val labels: not every model is perfect there
    assert np.mean(prob.argmax(axis=1) == y_val) == pytest.approx(best)
    assert metrics["val"]["accuracy"] == pytest.approx(best)
    x_test, _ = real_load(prepared).split("test")
    test_prob = model.predict(np.asarray(x_test, np.float32), verbose=0)
    np.testing.assert_allclose(test_prob, np.load(out / "predictions.npz")["y_prob"], atol=1e-5)
    feature_dim = int(model.get_layer("head").input.shape[-1])
    assert metrics["epochs_run"] == 0
    assert metrics["params_trainable"] == 3 * (feature_dim + 1)  # the Dense layer alone
