"""Runs that did not learn are shown and set aside (tlbench.analysis.set_aside): the
reproduction of the digits scratch baseline at chance that made a transfer gain of
+0.83 "better", and the rules on hand-made run folders (inputs written here)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from tlbench.analysis import runs
from tlbench.analysis.set_aside import at_chance, did_not_learn, set_aside, with_set_aside
from tlbench.report.pages import verdict as verdict_page
from tlbench.report.pages.results import verdict_blocks
from tlbench.report.pages.studies import budget_blocks

CLASSES = 10
IMAGES = 200


def matrix(labels: np.ndarray, predicted: np.ndarray) -> list[list[int]]:
    out = np.zeros((CLASSES, CLASSES), int)
    np.add.at(out, (labels, predicted), 1)
    return out.tolist()


def write_cell(root, name, accuracies, *, pretrained, seconds=10.0, constant=False,
               losses=(2.3, 0.5), budget=None):  # fmt: skip
    """One cell of the digits dataset: per seed, train, validation and test accuracy
    ``accuracies[s]`` (a constant guess of class 0 when ``constant``)."""
    backbone, strategy, augmentation = name.split("/")
    labels = np.arange(IMAGES) % CLASSES
    paths = []
    for seed, accuracy in enumerate(accuracies):
        if constant:
            predicted = np.zeros(IMAGES, int)
        else:
            right = (np.arange(IMAGES) + seed) % IMAGES < round(accuracy * IMAGES)
            predicted = np.where(right, labels, (labels + 1) % CLASSES)
        prob = np.full((IMAGES, CLASSES), 0.01, np.float32)
        prob[np.arange(IMAGES), predicted] = 0.91
        split = {
            "n": IMAGES,
            "accuracy": float(np.mean(predicted == labels)),
            "loss": 1.0,
            "confusion_matrix": matrix(labels, predicted),
        }
        folder = (
            root / (budget or "") / "digits" / backbone / strategy / augmentation / f"seed{seed}"
        )
        folder.mkdir(parents=True)
        np.savez_compressed(folder / "predictions.npz", y_true=labels, y_prob=prob)
        (folder / "history.csv").write_text(
            "epoch,phase,loss\n" + "".join(f"{e},train,{v}\n" for e, v in enumerate(losses, 1))
        )
        metrics = {
            "status": "ok",
            "run": {"dataset": "digits", "backbone": backbone, "strategy": strategy,
                    "augmentation": augmentation, "seed": seed},
            "classes": [str(c) for c in range(CLASSES)],
            "pretrained": pretrained,
            "train_seconds": seconds,
            "train": split, "val": split, "test": split,
        }  # fmt: skip
        if budget is not None:
            metrics.update(budget=budget, budget_per_class_mean=int(budget[1:]))
        (folder / "metrics.json").write_text(json.dumps(metrics))
        paths.append(folder / "metrics.json")
    return paths


@pytest.fixture
def digits(tmp_path) -> pd.DataFrame:
    """The across-datasets digits page: pretrained cells near 0.93, the MobileNet scratch
    baseline at chance (train, validation and test accuracy 0.100)."""
    paths = [
        *write_cell(tmp_path, "mobilenet_025/fine_tune/none", [0.93, 0.92, 0.94],
                    pretrained=True),
        *write_cell(tmp_path, "mobilenet_025/two_phase/none", [0.83, 0.82, 0.84],
                    pretrained=True),
        *write_cell(tmp_path, "mobilenet_025_scratch/scratch/none", [0.1, 0.1, 0.1],
                    pretrained=False, constant=True),
    ]  # fmt: skip
    return runs.collect_runs(paths)


def test_transfer_gain_never_rests_on_a_scratch_baseline_at_chance(digits, tmp_path):
    """The reproduction: before, the verdict said transfer gained +0.83, 'better', from a
    scratch cell that never learned; now the cell is set aside and the page says why."""
    out = tmp_path / "out"
    verdicts = verdict_page.write_verdict(
        digits, out / "verdict", out / "ranking", out / "front.rst", reps=200
    )
    row = verdicts.iloc[0]
    assert not row["best_scratch"], row["transfer_gain"]
    assert math.isnan(row["transfer_gain"])
    assert "mobilenet_025_scratch/scratch/none" in row["set_aside"]
    assert "seeds 0, 1, 2 of 3 did not learn" in row["set_aside"]
    assert row["gain_note"].startswith("no transfer gain: every cell without pretrained")
    front = (out / "front.rst").read_text()
    assert "Set aside (did not learn" in front and "Transfer gain: none" in front
    assert "mobilenet_025_scratch" not in (out / "ranking.csv").read_text()
    # every results page renders the verdict table from its CSV
    table = dict(verdict_blocks(pd.read_csv(out / "verdict.csv")))["table"].iloc[0]
    assert "mobilenet_025_scratch" in table["set aside (did not learn)"]
    assert table["transfer gain [95 %]"].startswith("no transfer gain")


def test_the_rules_of_did_not_learn(digits):
    aside = set_aside(digits)
    assert set(aside.runs["backbone"]) == {"mobilenet_025_scratch"}
    reason = aside.runs["reason"].iloc[0]
    assert "at chance" in reason and "training 0.1000 vs 0.1000" in reason
    assert "predicts one class for every training and validation image" in reason
    # one class on validation only, while the training images are told apart: it learned
    # something (it overfits), so the rule does not apply
    collapsed = pd.Series({"num_classes": 3, "val_classes_predicted": 1})
    assert "one class" in did_not_learn(collapsed)[0]
    assert not did_not_learn(pd.Series({**collapsed, "train_classes_predicted": 3}))
    assert len(aside.kept) == 6 and list(aside.cells["pretrained"]) == [False]
    # the majority share: a constant guess on 3:1 binary data scores 0.75, still chance
    row = pd.Series({"train_accuracy": 0.75, "train_n": 400, "train_majority_share": 0.75,
                     "val_accuracy": 0.74, "val_n": 100, "val_majority_share": 0.75,
                     "num_classes": 2})  # fmt: skip
    assert did_not_learn(row)
    assert not did_not_learn(pd.Series({**row, "train_accuracy": 0.9, "val_accuracy": 0.85}))
    # fits its training images but not validation: it learned (overfits); kept
    assert not did_not_learn(pd.Series({**row, "train_accuracy": 0.95}))
    # a diverged training loss
    diverged = pd.Series({"history_loss_first": 1.0, "history_loss_last": 150.0})
    assert "diverged" in did_not_learn(diverged)[0]
    assert at_chance(0.12, 100, 0.1) and not at_chance(0.2, 100, 0.1)


def test_one_failed_seed_sets_the_cell_aside_and_a_gain_says_what_it_left_out(tmp_path):
    paths = [
        *write_cell(tmp_path, "m/fine_tune/none", [0.93, 0.92, 0.94], pretrained=True),
        *write_cell(tmp_path, "m/feature_extraction/none", [0.9, 0.9], pretrained=True,
                    losses=(1.0, 500.0)),
        *write_cell(tmp_path, "cnn/scratch/none", [0.6, 0.6, 0.6], pretrained=False),
    ]  # fmt: skip
    study = runs.collect_runs(paths)
    aside = set_aside(study)
    assert list(aside.cells["strategy"]) == ["feature_extraction"]
    assert "training loss diverged" in aside.cells["reason"].iloc[0]
    verdicts = pd.DataFrame([{"dataset": "digits", "selected": "m/fine_tune/none",
                              "best_pretrained": "m/fine_tune/none"}])  # fmt: skip
    row = with_set_aside(verdicts, aside).iloc[0]
    assert row["gain_note"] == (
        "the transfer gain leaves out cells that did not learn: m/feature_extraction/none"
    )


def test_budget_crossovers_leave_out_a_cell_that_did_not_learn(tmp_path):
    paths = []
    for label, scratch in (("n5", [0.1, 0.1, 0.1]), ("n20", [0.95, 0.96, 0.95])):
        paths += write_cell(tmp_path, "m/fine_tune/none", [0.9, 0.91, 0.9], pretrained=True,
                            budget=label)  # fmt: skip
        paths += write_cell(tmp_path, "cnn/scratch/none", scratch, pretrained=False,
                            constant=label == "n5", budget=label)  # fmt: skip
    blocks = budget_blocks(runs.collect_runs(paths))
    texts = [text for kind, text in blocks if kind in ("p", "ul")]
    assert any("Set aside from the crossovers" in str(t) and "cnn/scratch/none" in str(t)
               for t in texts)  # fmt: skip
    # at chance at 5 per class, better at 20: no crossover is said from a failed cell
    assert not any("then" in str(t) or "from 20" in str(t) for t in texts), texts


def test_a_study_whose_every_cell_did_not_learn_gets_a_front_page_naming_them(tmp_path):
    """Reproduction (CI, a new user's two-epoch study at chance): with every cell set
    aside the verdict table has no ``margin`` column, and the front section failed with
    KeyError 'margin'. It names the cells and states no method for comparisons it did
    not make."""
    study = runs.collect_runs(
        write_cell(tmp_path, "cnn/scratch/none", [0.1, 0.1, 0.1], pretrained=False)
    )
    aside = set_aside(study)
    assert aside.kept.empty and len(aside.cells) == 1
    verdicts = with_set_aside(pd.DataFrame(columns=["dataset", "selected"]), aside)
    text = verdict_page.front_section(verdicts)
    assert "cnn/scratch/none" in text and "*Outcomes*" not in text
