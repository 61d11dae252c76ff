"""Helpers shared by the verdict's, the learning curves' and the results pages' tests:
run folders (metrics.json, predictions.npz) written with chosen correctness (inputs
written here, not results)."""

from __future__ import annotations

import json

import numpy as np

from tlbench.analysis import runs


def write_run(root, name, *, accuracy_per_seed, val, seconds, pretrained, classes=3, auc=None,
              images=200, dataset="digits", offset=0):  # fmt: skip
    """Write the run folders of one cell: metrics.json and predictions.npz per seed.

    Seed s is correct on images ``offset .. offset + accuracy * images`` (mod images).
    """
    backbone, strategy, augmentation = name.split("/")
    y_true = np.arange(images) % classes
    paths = []
    for seed, (accuracy, validation) in enumerate(zip(accuracy_per_seed, val, strict=True)):
        right = (np.arange(images) - offset) % images < round(accuracy * images)
        predicted = np.where(right, y_true, (y_true + 1) % classes)
        y_prob = np.full((images, classes), 0.1 / (classes - 1), np.float32)
        y_prob[np.arange(images), predicted] = 0.9
        folder = root / dataset / backbone / strategy / augmentation / f"seed{seed}"
        folder.mkdir(parents=True)
        np.savez_compressed(folder / "predictions.npz", y_true=y_true, y_prob=y_prob)
        metrics = {
            "status": "ok",
            "run": {"dataset": dataset, "backbone": backbone, "strategy": strategy,
                    "augmentation": augmentation, "seed": seed},
            "classes": [str(c) for c in range(classes)],
            "pretrained": pretrained,
            "train_seconds": seconds,
            "val": {"n": 50, "accuracy": validation, "loss": 1 - validation, "roc_auc": auc},
            "test": {"n": images, "accuracy": float(right.mean()), "loss": 0.5},
        }  # fmt: skip
        (folder / "metrics.json").write_text(json.dumps(metrics))
        paths.append(folder / "metrics.json")
    return paths


def write_budget_study(root, cells, *, images=200, groups=None):
    """A study table over label budgets from written run folders.

    ``cells``: ``{name: {budget: (per_class, accuracy_per_seed, offset)}}``; each run's
    metrics.json gets ``budget`` and ``budget_per_class_mean``, validation = test
    accuracy. ``groups``: test group ids written into every predictions.npz.
    """
    paths = []
    for name, budgets in cells.items():
        for label, (per_class, accuracies, offset) in budgets.items():
            new = write_run(root / label, name, accuracy_per_seed=accuracies, val=accuracies,
                            seconds=10, pretrained="scratch" not in name, images=images,
                            offset=offset)  # fmt: skip
            for path in new:
                metrics = json.loads(path.read_text())
                metrics.update(budget=label, budget_per_class_mean=float(per_class))
                path.write_text(json.dumps(metrics))
                if groups is not None:
                    npz = path.with_name("predictions.npz")
                    with np.load(npz) as data:
                        arrays = dict(data)
                    np.savez_compressed(npz, **arrays, groups=np.asarray(groups))
            paths += new
    return runs.collect_runs(paths)
