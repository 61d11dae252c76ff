"""A seed study's findings: the sentences its section states beside the seed report's own
conclusions, each from the runs and the verdict's intervals.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from tlbench.analysis import selection
from tlbench.analysis.tables import mean_sd, ok_runs
from tlbench.report import seed_reference
from tlbench.report.pages.seed_checks import (
    PRETRAINED_STRATEGIES,
    cell_name,
    chosen_value,
)


def gap_sentence(df: pd.DataFrame, seed_table: pd.DataFrame) -> str:
    """Seed 000's largest train-test accuracy gap beside ours."""
    gaps = seed_table["Train accuracy"] - seed_table["Test accuracy"]
    worst = seed_table.loc[gaps.idxmax()]
    runs = ok_runs(df)
    if runs["test_accuracy"].isna().all():
        return "Pilot study: the test split is sealed, so no train-test gap is measured here."
    ours = runs["train_accuracy"] - runs["test_accuracy"]
    mine = runs.loc[ours.idxmax()]
    return (
        f"The seed's largest train-test gap is {float(worst['Train accuracy']):.4f} train vs "
        f"{float(worst['Test accuracy']):.4f} test ({worst['Model name']}); the largest gap "
        f"here is {float(mine['train_accuracy']):.4f} vs {float(mine['test_accuracy']):.4f} "
        f"({mine['backbone']}/{mine['strategy']}, seed {mine['seed']}), over "
        f"{len(runs)} runs with train accuracy measured in inference mode on the test split's "
        "preprocessing."
    )


def seed000_findings(df: pd.DataFrame, extra: Mapping[str, Any]) -> list[str]:
    table = seed_reference.table("000", "overall")
    out = [gap_sentence(df, table)]
    runs = ok_runs(df)
    if not (
        runs["strategy_name"].isin(PRETRAINED_STRATEGIES).any()
        and (runs["strategy_name"] == "scratch").any()
    ):
        return out
    chosen_p = selection.select_cell(df, strategies=PRETRAINED_STRATEGIES)
    chosen_s = selection.select_cell(df, strategies=["scratch"])
    best_p, p = chosen_p.cell, chosen_value(df, chosen_p, "test_accuracy")
    best_s, s = chosen_s.cell, chosen_value(df, chosen_s, "test_accuracy")
    if p is None or s is None:  # pilot study: the test split is sealed
        return out
    own = float(table.loc[table["Model name"] == "CNN_10_relu", "Test accuracy"].iloc[0])
    nasnet = table[table["Model name"] != "CNN_10_relu"]
    bugged = nasnet[nasnet["Train accuracy"] > 0.9]
    seed_view = (
        "The seed concluded that NASNetMobile, transferred or not, is no use on GTSRB (its "
        f"best NASNetMobile model: {nasnet['Test accuracy'].max():.4f} test accuracy, its own "
        f"CNN {own:.4f}), from runs whose test accuracy of "
        f"{bugged['Test accuracy'].min():.2f}-{bugged['Test accuracy'].max():.2f} beside "
        f"{bugged['Train accuracy'].min():.2f}-{bugged['Train accuracy'].max():.2f} train "
        "accuracy is the signature of a preprocessing or BatchNorm mismatch between training "
        "and test, not of the method."
    )
    ours = (
        f"Here the ImageNet-initialised cell chosen by {chosen_p.label} "
        f"({cell_name(best_p)}, {chosen_p.value:.4f}) reaches {p:.4f} test accuracy and "
        f"the cell from random init chosen the same way ({cell_name(best_s)}, "
        f"{chosen_s.value:.4f}) {s:.4f}"
    )
    if p > s:
        out.append(f"{seed_view} We disagree: {ours[0].lower()}{ours[1:]}: transfer helps.")
    else:
        out.append(
            f"{seed_view} {ours}: transfer does not beat training from scratch here either, "
            "but every model is far above the seed's."
        )
    return out


def seed002_findings(df: pd.DataFrame, extra: Mapping[str, Any]) -> list[str]:
    runs = ok_runs(df)
    out = []
    pretrained = runs[runs["weights"] != "none"]
    if "batchnorm" in pretrained:  # the default policy; the comparison has its own table
        pretrained = pretrained[pretrained["batchnorm"].fillna("frozen") != "train"]
    for backbone, group in pretrained.groupby("backbone", sort=False):
        auc = group.groupby("strategy_name")["test_roc_auc"].mean().sort_values(ascending=False)
        gap = (
            (group["train_accuracy"] - group["test_accuracy"])
            .groupby(group["strategy_name"])
            .mean()
        )
        seconds = group.groupby("strategy_name")["train_seconds"].mean()
        ranking = ", ".join(f"{s} {v:.4f}" for s, v in auc.items())
        fastest = seconds.idxmin()
        out.append(
            f"{backbone}: mean test ROC AUC {ranking}. The seed called feature extraction "
            f"(way 2) the best and fastest: here it ranks {list(auc.index).index('feature_extraction') + 1 if 'feature_extraction' in auc else 'n/a'} "
            f"of {len(auc)} by AUC, and the fastest way is {fastest} "
            f"({seconds[fastest]:.0f} s against {seconds.max():.0f} s for {seconds.idxmax()}). "
            f"Train-test accuracy gap of fine-tuning (the seed: 'overfitted'): "
            f"{gap.get('fine_tune', float('nan')):+.3f}, of feature extraction "
            f"{gap.get('feature_extraction', float('nan')):+.3f}."
        )
    return out


def pair_text(extra: Mapping[str, Any], a: str, b: str) -> str:
    """`` (difference [low, high]: outcome)`` of cell a against b from the page's
    pairwise table (:func:`tlbench.analysis.verdict.pairs.pairwise_table`: better / worse /
    equivalent / inconclusive, the interval simultaneous over the dataset's pairs), in
    accuracy points, with why an outcome was forced; empty without the table or the pair."""
    table = extra.get("pairwise")
    if table is None or not len(table):
        return ""
    row = table[(table["a"] == a) & (table["b"] == b)]
    if row.empty:
        return ""
    r = row.iloc[0]
    reason = r.get("reason")
    why = f", {reason}" if isinstance(reason, str) and reason else ""
    family = r.get("family")
    over = f", simultaneous over {int(family)} pairs" if family and family > 1 else ""
    return (
        f" [95 % interval of the difference{over} {100 * r['diff_low']:+.2f} to "
        f"{100 * r['diff_high']:+.2f} points: {r['verdict']}{why}]"
    )


def seed001_findings(df: pd.DataFrame, extra: Mapping[str, Any]) -> list[str]:
    runs = ok_runs(df)
    gains = seed_reference.table("001", "fine_tuning_vs_transfer").set_index("Quantity")
    gain = float(gains.loc["validation accuracy increase", "Value"])
    out = []
    for aug, group in runs.groupby("augmentation", sort=False):
        frozen_rows = group[group["strategy_name"] == "feature_extraction"]
        frozen = frozen_rows["test_accuracy"]
        phases = group[group["strategy_name"] == "two_phase"]
        if frozen.empty or phases.empty:
            continue
        base = "/".join(map(str, frozen_rows[["backbone", "strategy", "augmentation"]].iloc[0]))
        cells = "; ".join(
            f"{strategy} {mean_sd(cell['test_accuracy'])} "
            f"({100 * (cell['test_accuracy'].mean() - frozen.mean()):+.2f} points"
            + pair_text(
                extra, f"{cell['backbone'].iloc[0]}/{strategy}/{cell['augmentation'].iloc[0]}", base
            )
            + ")"
            for strategy, cell in phases.groupby("strategy", sort=False)
        )
        out.append(
            f"The seed kept fine-tuning at 1e-8 (last 10 layers) as its optimum for a validation "
            f"gain of {gain:.2f} points over the frozen model, one run each. Here, with "
            f"augmentation {aug}, the frozen model reaches {mean_sd(frozen)} test accuracy and "
            f"the two-phase cells: {cells}. The frozen model's run-to-run sd "
            f"({100 * frozen.std(ddof=1):.2f} points over {len(frozen)} seeds) is larger than "
            "the seed's gain, so one run per setting cannot show it."
        )
        by_seed = phases.pivot_table(index="seed", columns="strategy", values="test_accuracy")
        same = [
            (a, b)
            for i, a in enumerate(by_seed.columns)
            for b in by_seed.columns[i + 1 :]
            if np.allclose(by_seed[a], by_seed[b], atol=1e-9)
        ]
        for a, b in same:
            out.append(
                f"{a} and {b} give the same test accuracy in every seed: second phases this "
                "different (rates, unfrozen layers) make no measurable difference."
            )
    return out


def seed003_findings(df: pd.DataFrame, extra: Mapping[str, Any]) -> list[str]:
    table = seed_reference.table("003", "test_results")
    seed_with = float(table.loc[table["Model"] == "with data augmentation", "accuracy"].iloc[0])
    seed_without = float(
        table.loc[table["Model"] == "without data augmentation", "accuracy"].iloc[0]
    )
    runs = ok_runs(df)
    out = [
        f"The seed: {seed_with:.4f} with augmentation against {seed_without:.4f} without "
        f"({100 * (seed_with - seed_without):+.1f} points), one run each, with the learning "
        "rate lowered (1e-3 to 3e-4) in the same step. Here, mean ± sd over seeds:"
    ]
    plain = runs[runs["augmentation_name"] == "none"]
    augmented = runs[runs["augmentation_name"] != "none"]
    for (strategy, aug), cell in augmented.groupby(["strategy", "augmentation"], sort=False):
        for base_strategy, base in plain.groupby("strategy", sort=False):
            lr, base_lr = cell["learning_rate"].iloc[0], base["learning_rate"].iloc[0]
            same = (
                "the same learning rate"
                if lr == base_lr
                else f"learning rate {lr:g} vs {base_lr:g}"
            )
            diff = 100 * (cell["test_accuracy"].mean() - base["test_accuracy"].mean())
            out.append(
                f"{strategy} with {aug}: {mean_sd(cell['test_accuracy'])} against "
                f"{base_strategy} without augmentation: {mean_sd(base['test_accuracy'])} "
                f"({diff:+.1f} points, {same})."
            )
    return [" ".join(out)] if len(out) > 1 else []


def seed004_findings(df: pd.DataFrame, extra: Mapping[str, Any]) -> list[str]:
    conv = extra.get("convergence")
    if conv is None or conv.empty:
        return []
    ref = seed_reference.load("004")["hyperparameters"]
    seed_ae = float(seed_reference.table("004", "test_results")["Accuracy"].iloc[0])
    seed_base = float(seed_reference.table("004", "baseline_results")["accuracy"].iloc[0])
    out = []
    for strategy, group in conv.groupby("strategy", sort=False):
        reached = group["epochs to reach it"].dropna()
        out.append(
            f"{strategy}: reached the scratch run's best validation accuracy in "
            f"{len(reached)} of {len(group)} seeds"
            + (f" after {mean_sd(reached, 1)} classifier epochs" if len(reached) else "")
            + f" (scratch reached its best after {mean_sd(group['baseline epochs to its best'], 1)} epochs), plus "
            f"{int(group['pretraining epochs'].iloc[0])} autoencoder epochs; test accuracy "
            f"{mean_sd(group['test accuracy'])} against scratch "
            f"{mean_sd(group['baseline test accuracy'])}. The seed reported "
            f"{ref['classifier_epochs']} against {ref['baseline_epochs']} epochs and "
            f"{seed_ae:.4f} against {seed_base:.4f} test accuracy (one run each), and did not "
            f"count its {ref['autoencoder_stages']} x {ref['autoencoder_epochs']} autoencoder "
            "epochs."
        )
    return out
