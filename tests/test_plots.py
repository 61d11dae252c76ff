"""Tests of tlbench.report.figures: every figure function writes a PNG from fabricated run folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from test_tables import fake_metrics

from tlbench.analysis import runs as analysis_runs
from tlbench.analysis import tables
from tlbench.analysis.reconstructions import load_reconstructions
from tlbench.report import render
from tlbench.report.figures import base, study
from tlbench.report.figures import runs as run_figures


def check_png(path: Path, min_width: int = 200, min_height: int = 150) -> tuple[int, int]:
    """The PNG exists, is non-empty and has plausible dimensions; returns (width, height)."""
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert width >= min_width and height >= min_height, (width, height)
    return width, height


def write_history(run_dir: Path, phases: list[str], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = len(phases)
    acc = np.linspace(0.4, 0.9, n) + rng.normal(0, 0.01, n)
    pd.DataFrame({
        "epoch": np.arange(n), "phase": phases, "loss": np.linspace(1.5, 0.3, n),
        "accuracy": acc, "val_loss": np.linspace(1.6, 0.5, n), "val_accuracy": acc - 0.05,
        "learning_rate": 1e-3, "seconds": 1.0,
    }).to_csv(run_dir / "history.csv", index=False)  # fmt: skip


def make_run(root: Path, name: str, metrics: dict, phases: list[str] | None = None) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if phases is not None:
        write_history(run_dir, phases)
    return run_dir


@pytest.fixture
def study_runs(tmp_path) -> tuple[pd.DataFrame, list[Path]]:
    """Six finished runs and one failed one of dataset 'ants' (2 classes)."""
    runs = []
    for backbone in ("mnv2", "mn1"):
        for strategy, acc, secs in (("feature_extraction", 0.7, 5), ("fine_tune", 0.85, 20)):
            for seed in (0, 1):
                metrics = fake_metrics(backbone=backbone, strategy=strategy, seed=seed,
                                       test=acc + 0.02 * seed + (backbone == "mn1") * 0.05,
                                       seconds=secs * (1 + seed))  # fmt: skip
                metrics["confusion_matrix"] = [[40, 10], [5, 45]]
                name = f"{backbone}_{strategy}_{seed}"
                phases = ["head"] * 3 + ["fine"] * 4 if strategy == "fine_tune" else ["head"] * 5
                runs.append(make_run(tmp_path / "runs", name, metrics, phases))
    runs.append(
        make_run(tmp_path / "runs", "failed", fake_metrics(strategy="scratch", status="failed"))
    )
    df = analysis_runs.collect_runs([r / "metrics.json" for r in runs])
    return df, runs


def test_phase_boundaries():
    assert base.phase_boundaries(["a", "a", "b", "b", "c"]) == [(2.5, "b"), (4.5, "c")]
    assert base.phase_boundaries(["a", "a"]) == []


def test_training_curves(study_runs, tmp_path):
    _, runs = study_runs
    out = run_figures.training_curves(runs[2], tmp_path / "fig" / "curves.png")
    width, height = check_png(out)
    assert width > height  # two panels side by side
    failed = run_figures.training_curves(runs[-1], tmp_path / "failed.png")
    check_png(failed, 100, 50)


def test_history_missing_column(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss\n0,1.0\n")
    with pytest.raises(ValueError, match="lacks column.*phase"):
        analysis_runs.read_history(tmp_path / "history.csv")


def test_dataset_curves(study_runs, tmp_path):
    _, runs = study_runs
    check_png(study.dataset_curves(runs, tmp_path / "all.png"), 600, 300)
    with pytest.raises(ValueError, match="at least one run"):
        study.dataset_curves([], tmp_path / "none.png")


def test_curves_with_autoencoder_stages(tmp_path):
    run = make_run(tmp_path, "ae", fake_metrics(strategy="autoencoder"),
                   ["ae_stage1"] * 2 + ["ae_stage2"] * 2 + ["classifier"] * 3)  # fmt: skip
    history = pd.read_csv(run / "history.csv")
    history.loc[:3, ["accuracy", "val_accuracy"]] = np.nan  # reconstruction phases: no accuracy
    history.to_csv(run / "history.csv", index=False)
    check_png(run_figures.training_curves(run, tmp_path / "ae.png"))
    check_png(study.dataset_curves([run], tmp_path / "ae_all.png"))


def test_accuracy_heatmaps_from_csv(study_runs, tmp_path):
    df, _ = study_runs
    csv = render.write_table(df, tmp_path / "study")[0]
    check_png(study.accuracy_heatmaps(csv, "ants", tmp_path / "heat.png"))
    with pytest.raises(ValueError, match="datasets in the study: ants"):
        study.accuracy_heatmaps(csv, "signs", tmp_path / "x.png")


def test_pareto_mask():
    cost = [1, 2, 3, 4, 2]
    value = [0.5, 0.7, 0.6, 0.9, 0.7]
    assert study.pareto_mask(cost, value).tolist() == [True, True, False, True, True]


def test_pareto_front(study_runs, tmp_path):
    df, _ = study_runs
    check_png(study.pareto_front(df, "ants", tmp_path / "pareto.png"))


def test_best_confusion_matrix(study_runs, tmp_path):
    df, _ = study_runs
    check_png(run_figures.best_confusion_matrix(df, "ants", tmp_path / "cm.png"))
    many = run_figures.confusion_figure(np.eye(43, dtype=int) * 5, [f"class {i}" for i in range(43)],
                                  tmp_path / "cm43.png")  # fmt: skip
    check_png(many, 800, 800)
    with pytest.raises(ValueError, match="expected \\(3, 3\\)"):
        run_figures.confusion_figure([[1, 0], [0, 1]], ["a", "b", "c"], tmp_path / "bad.png")


def test_confusion_matrix_is_of_the_run_validation_chose(study_runs, tmp_path, monkeypatch):
    df, _ = study_runs
    # the run with the highest test accuracy gets the lowest validation figures
    top = df["test_accuracy"].idxmax()
    df.loc[top, ["val_roc_auc", "val_accuracy"]] = 0.1
    df.loc[df.index[0], "val_roc_auc"] = 0.99  # the first run: the best validation ROC AUC
    shown = {}

    def capture(matrix, classes, path, title=None):
        shown["title"] = title
        return Path(path)

    monkeypatch.setattr(run_figures, "confusion_figure", capture)
    run_figures.best_confusion_matrix(df, "ants", tmp_path / "cm.png")
    first = df.iloc[0]
    label = f"{first['backbone']}/{first['strategy']}/{first['augmentation']}/seed{first['seed']}"
    assert label in shown["title"]
    assert "chosen by validation ROC AUC 0.9900 (n = 20)" in shown["title"]
    assert f"test accuracy {first['test_accuracy']:.4f}" in shown["title"]


def test_reconstructions(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 16, 16, 3), dtype=np.uint8)
    ok = make_run(tmp_path, "ae", fake_metrics(strategy="autoencoder"))
    np.savez(ok / "reconstructions.npz", images=images, stage2=images * 0.5, stage1=images * 0.9,
             stage10=images * 0.1)  # fmt: skip
    loaded, stages = load_reconstructions(ok / "reconstructions.npz")
    assert [name for name, _ in stages] == ["stage1", "stage2", "stage10"]
    failed = make_run(tmp_path, "ae_failed", fake_metrics(strategy="autoencoder", seed=1,
                                                          status="failed"))  # fmt: skip
    width, height = check_png(
        run_figures.reconstructions([ok, failed], tmp_path / "rec.png"), 300, 300
    )
    assert height > 300  # 4 rows: original + 3 stages


def test_reconstructions_bad_file(tmp_path):
    run = make_run(tmp_path, "ae", fake_metrics(strategy="autoencoder"))
    np.savez(
        run / "reconstructions.npz", images=np.zeros((2, 8, 8, 3)), stage1=np.zeros((2, 4, 4, 3))
    )
    with pytest.raises(ValueError, match="'stage1' has shape"):
        run_figures.reconstructions([run], tmp_path / "x.png")
    np.savez(
        run / "reconstructions.npz", images=np.zeros((2, 8, 8, 3)), recon=np.zeros((2, 8, 8, 3))
    )
    with pytest.raises(ValueError, match="unexpected key.*recon"):
        load_reconstructions(run / "reconstructions.npz")


def test_prediction_grid(study_runs, tmp_path):
    df, _ = study_runs
    best = tables.best_run(df, "ants")
    rng = np.random.default_rng(0)
    n = 20
    images = rng.integers(0, 256, size=(n, 24, 24, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, size=n)
    probs = rng.dirichlet([1, 1], size=n)
    np.savez(Path(best.path) / "predictions.npz", y_true=labels, y_prob=probs)
    prepared = tmp_path / "prepared"
    prepared.mkdir()
    np.save(prepared / "test_x.npy", images)
    np.save(prepared / "test_y.npy", labels)
    (prepared / "classes.json").write_text(json.dumps(["ants", "bees"]))
    out = run_figures.prediction_grid(df, prepared, "ants", tmp_path / "pred.png")
    width, height = check_png(out, 600, 600)
    np.save(prepared / "test_y.npy", 1 - labels)
    with pytest.raises(ValueError, match="does not match"):
        run_figures.prediction_grid(df, prepared, "ants", tmp_path / "pred2.png")


def test_prediction_figure_shape_errors(tmp_path):
    with pytest.raises(ValueError, match="same length"):
        run_figures.prediction_figure(np.zeros((3, 8, 8, 3)), [0, 1], np.full((2, 2), 0.5), ["a", "b"],
                                tmp_path / "x.png")  # fmt: skip
    with pytest.raises(ValueError, match="N x 3"):
        run_figures.prediction_figure(np.zeros((2, 8, 8, 3)), [0, 1], np.full((2, 2), 0.5),
                                ["a", "b", "c"], tmp_path / "x.png")  # fmt: skip


def test_training_curves_folder_one_job_per_dataset(study_runs, tmp_path):
    """All runs' curves of a dataset in one call, at RUN/curves.png, replaced atomically."""
    _, runs = study_runs
    nested = []
    for i, run in enumerate([runs[0], runs[2], runs[-1]]):  # the last one failed
        target = tmp_path / f"results/runs/ants/b{i}/fine_tune/none/seed{i}"
        shutil.copytree(run, target)
        nested.append(target)
    out = tmp_path / "results/figures/runs/ants"

    def pngs() -> list[str]:
        return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))

    run_figures.training_curves_folder(nested, out)
    assert pngs() == [f"b{i}/fine_tune/none/seed{i}/curves.png" for i in range(3)]
    for path in out.rglob("*.png"):
        check_png(path, 100, 50)
    first = (out / pngs()[0]).read_bytes()
    # a run that cannot be drawn: the error, and the folder as it was (b0 not redrawn)
    write_history(nested[0], ["head"] * 9, seed=5)
    (nested[1] / "history.csv").write_text("epoch,loss\n0,1.0\n")
    with pytest.raises(ValueError, match="lacks column"):
        run_figures.training_curves_folder(nested, out)
    assert (out / pngs()[0]).read_bytes() == first and len(pngs()) == 3
    # the folder is replaced as a whole: a run no longer listed leaves no figure
    run_figures.training_curves_folder([nested[0], nested[2]], out)
    assert pngs() == ["b0/fine_tune/none/seed0/curves.png", "b2/fine_tune/none/seed2/curves.png"]
    assert (out / pngs()[0]).read_bytes() != first
    assert sorted(p.name for p in out.parent.iterdir()) == ["ants"]  # no temporary left
    other = tmp_path / "results/runs/bees/b0/fine_tune/none/seed0"
    shutil.copytree(nested[0], other)
    with pytest.raises(ValueError, match="more than one dataset"):
        run_figures.training_curves_folder([nested[0], other], out)


def test_figures_of_a_budget_study_show_one_budget():
    df = pd.DataFrame(
        {
            "dataset": ["a", "a", "a", "b", "b"],
            "budget": ["n5", "all", "n10", "n5", "n10"],
            "budget_per_class_mean": [5.0, 80.0, 10.0, 5.0, 10.0],
        }
    )
    kept, words = study.whole_budget(df, "a")
    assert list(kept["budget"]) == ["all", "n5", "n10"]  # a's 'all' and b's rows untouched
    assert "label budget 'all'" in words
    kept, words = study.whole_budget(df, "b")  # no 'all': the largest budget
    assert list(kept[kept["dataset"] == "b"]["budget"]) == ["n10"] and "'n10'" in words
    assert study.whole_budget(df.drop(columns="budget"), "a")[1] == ""


def test_confusion_matrix_of_a_budget_study_is_of_the_whole_split(
    study_runs, tmp_path, monkeypatch
):
    df, _ = study_runs
    df = df.assign(budget="all", budget_per_class_mean=100.0)
    small = df.assign(budget="n5", budget_per_class_mean=5.0, val_roc_auc=1.0, val_accuracy=1.0)
    shown = {}

    def capture(matrix, classes, path, title=None):
        shown["title"] = title
        return Path(path)

    monkeypatch.setattr(run_figures, "confusion_figure", capture)
    # the budget-5 runs have the best validation figures, but are not what the figure shows
    run_figures.best_confusion_matrix(pd.concat([small, df]), "ants", tmp_path / "cm.png")
    assert "label budget 'all'" in shown["title"]
    assert "chosen by validation ROC AUC 1.0000" not in shown["title"]
