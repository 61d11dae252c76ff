"""Seed studies beside their seed reports: the sections of ``docs/results.md``.

A study config with a ``seed_study`` block (``configs/measured/seed00N_*.yaml``)
names the seed report it reproduces (:mod:`tlbench.seed_reference`) and the
substitutions this machine forced. From the study's runs (``tables/study.csv``
and each run's ``history.csv``) the rule ``seed_results`` writes one section:

* the seed's own result tables, as printed in the report;
* ours: one row per cell, mean ± sd over seeds of test / train accuracy and
  loss, training time, ROC AUC (binary tasks) and epochs;
* epochs to converge where the study compares a pretraining strategy with
  ``scratch`` (seed 004): epochs until the scratch run's best validation
  accuracy is reached, per seed;
* the study's wall time (first run start to last run end) and code version;
* the acceptance checks of the seed (:data:`SEED_PAGES`), each with its
  target and what was measured;
* findings: where the evidence agrees or disagrees with the seed's conclusions,
  as sentences filled from the measured numbers.

The rule ``results_page`` joins the sections of every measured study into
``docs/results.md``. Nothing on the page is typed by hand: numbers come from
the runs, the seed's numbers from its transcription.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlbench import seed_reference, selection
from tlbench.registry import Registry
from tlbench.tables import mean_sd, render

CELL = ["dataset", "backbone", "strategy", "augmentation"]
#: strategies that train the network by gradient steps (``direct`` trains nothing;
#: ``linear_probe`` fits a logistic regression on frozen features, in seconds): the
#: strategies the seed studies' "every training strategy" checks ask for
TRAINING_STRATEGIES = tuple(sorted(seed_reference.STRATEGY_NAMES - {"direct", "linear_probe"}))
PRETRAINED_STRATEGIES = tuple(s for s in TRAINING_STRATEGIES if s not in ("scratch", "autoencoder"))


# --------------------------------------------------------------------------- measurements


def ok_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Finished runs only (failed runs are listed separately on the page)."""
    return df[df["status"] == "ok"]


def cell_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (dataset, backbone, strategy, augmentation): mean ± sd over seeds.

    A pilot study (test split sealed) shows validation figures in place of test ones.
    """
    from tlbench.tables import SPLIT_LABELS, reported_split

    split = reported_split(df)
    shown = SPLIT_LABELS[split]
    runs = ok_runs(df)
    binary = bool((runs["num_classes"] == 2).all()) if len(runs) else False
    rows = []
    for keys, group in runs.groupby(CELL, sort=False):
        first = group.iloc[0]
        row = dict(zip(CELL, keys, strict=True))
        row.update(
            {
                "architecture": first["backbone_arch"],
                "weights": first["weights"],
                "px": first["input_size"],
                "seeds": len(group),
                f"{shown} accuracy": mean_sd(group[f"{split}_accuracy"]),
                f"{shown} loss": mean_sd(group[f"{split}_loss"]),
                "train accuracy": mean_sd(group["train_accuracy"]),
                "train loss": mean_sd(group["train_loss"]),
            }
        )
        if binary:
            row[f"{shown} ROC AUC"] = mean_sd(group[f"{split}_roc_auc"])
        row["train time (s)"] = mean_sd(group["train_seconds"], 1)
        row["epochs"] = mean_sd(group["epochs_run"], 1)
        rows.append(row)
    return pd.DataFrame(rows)


def wall_time(df: pd.DataFrame) -> dict[str, Any]:
    """The study's wall time: first run start to last run end (``metrics.json`` times)."""
    if "started_utc" not in df or df["started_utc"].isna().all():
        return {"seconds": None, "start": None, "end": None, "runs_seconds": None}
    start = min(datetime.fromisoformat(t) for t in df["started_utc"].dropna())
    end = max(datetime.fromisoformat(t) for t in df["finished_utc"].dropna())
    spans = [
        (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()
        for a, b in zip(df["started_utc"], df["finished_utc"], strict=True)
        if isinstance(a, str) and isinstance(b, str)
    ]
    return {
        "seconds": (end - start).total_seconds(),
        "start": start.isoformat(),
        "end": end.isoformat(),
        "runs_seconds": float(sum(spans)),
    }


def format_seconds(seconds: float | None) -> str:
    """``1 h 02 min 05 s`` style."""
    if seconds is None or not math.isfinite(seconds):
        return "not recorded"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    return f"{minutes} min {secs:02d} s"


def read_history(run_path: str | Path) -> pd.DataFrame:
    """A run's ``history.csv``."""
    return pd.read_csv(Path(run_path) / "history.csv")


def epochs_to_reach(
    df: pd.DataFrame,
    method: str,
    baseline: str = "scratch",
    history: Callable[[str], pd.DataFrame] = read_history,
) -> pd.DataFrame:
    """Epochs each ``method`` run needs to reach its seed's ``baseline`` best val accuracy.

    Runs pair up by (dataset, backbone, augmentation, seed). Only classifier
    epochs count; pretraining epochs (phases ``ae_stage*``) are given apart.
    """
    runs = ok_runs(df)
    rows = []
    base_runs = runs[runs["strategy_name"] == baseline]
    for _, run in runs[runs["strategy_name"] == method].iterrows():
        match = base_runs[
            (base_runs["dataset"] == run["dataset"])
            & (base_runs["backbone"] == run["backbone"])
            & (base_runs["augmentation"] == run["augmentation"])
            & (base_runs["seed"] == run["seed"])
        ]
        if match.empty:
            continue
        base = history(match.iloc[0]["path"])
        target = float(base["val_accuracy"].max())
        base_epochs = int(np.argmax(base["val_accuracy"].to_numpy() >= target)) + 1
        hist = history(run["path"])
        pretraining = hist["phase"].astype(str).str.startswith("ae_stage")
        classifier = hist[~pretraining]["val_accuracy"].to_numpy()
        reached = np.nonzero(classifier >= target)[0]
        rows.append(
            {
                "strategy": run["strategy"],
                "baseline": match.iloc[0]["strategy"],
                "seed": run["seed"],
                "baseline best val accuracy": target,
                "baseline epochs to its best": base_epochs,
                "epochs to reach it": int(reached[0]) + 1 if len(reached) else None,
                "classifier epochs run": len(classifier),
                "pretraining epochs": int(pretraining.sum()),
                "test accuracy": run["test_accuracy"],
                "baseline test accuracy": match.iloc[0]["test_accuracy"],
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- checks and findings


@dataclass
class Check:
    """An acceptance check: what, the target, and a function measuring it.

    ``measure`` returns ``(measured text, met)``; a check that chooses a run or a
    cell returns ``(text, met, selection)`` (a :class:`tlbench.selection.Selection`,
    or None when nothing could be chosen) and has ``selected_by`` set: how it chose
    (``"validation"``) or why it names runs without choosing them.
    """

    what: str
    target: str
    measure: Callable[[pd.DataFrame, Mapping[str, Any]], tuple]
    selected_by: str | None = None


@dataclass
class SeedPage:
    """What the page says about one seed beyond the tables: checks and findings."""

    checks: list[Check] = field(default_factory=list)
    findings: Callable[[pd.DataFrame, Mapping[str, Any]], list[str]] = lambda df, extra: []
    convergence: tuple[str, str] | None = None  # (method, baseline) strategy names


SEED_PAGES: Registry[SeedPage] = Registry("seed page")


def _cell_name(cell: Sequence[str] | None) -> str:
    return "none" if cell is None else "/".join(str(c) for c in cell[1:])


def _chosen_value(df: pd.DataFrame, chosen: selection.Selection, column: str) -> float | None:
    """``column`` of the chosen run, or its mean over the chosen cell's finished runs."""
    runs = ok_runs(df)
    mask = np.ones(len(runs), dtype=bool)
    for key, value in zip(CELL, chosen.cell, strict=True):
        mask &= (runs[key] == value).to_numpy()
    if chosen.seed is not None:
        mask &= (runs["seed"] == chosen.seed).to_numpy()
    values = pd.to_numeric(runs.loc[mask, column], errors="coerce").dropna()
    return float(values.mean()) if len(values) else None


def _selected_check(kind: str, column: str, label: str, target: float, strategies) -> Check:
    def measure(df, extra):
        choose = selection.select_run if kind == "run" else selection.select_cell
        try:
            chosen = choose(df, strategies=strategies)
        except ValueError as error:
            return f"nothing to choose: {error}", False, None
        value = _chosen_value(df, chosen, column)
        where = _cell_name(chosen.cell) + (
            f", seed {chosen.seed}" if chosen.seed is not None else ", mean over seeds"
        )
        basis = (
            f"chosen by {'mean ' if kind == 'cell' and chosen.seeds > 1 else ''}"
            f"{chosen.label} {chosen.value:.4f}, validation n = {chosen.val_n}, "
            f"among {chosen.candidates}"
        )
        warning = f"; {chosen.warning}" if chosen.warning else ""
        if value is None:
            return f"test split sealed (pilot) ({where}; {basis}){warning}", False, chosen
        return f"{value:.4f} ({where}; {basis}){warning}", value >= target, chosen

    what = "run" if kind == "run" else "cell"
    mean = "" if kind == "run" else "mean "
    return Check(
        f"validation-selected {what}'s {mean}{label}", f">= {target}", measure, "validation"
    )


def selected_run_check(column: str, label: str, target: float, strategies=None) -> Check:
    """The ``column`` (a test figure) of the run chosen by validation
    (:func:`tlbench.selection.select_run`) reaches ``target``."""
    return _selected_check("run", column, label, target, strategies)


def selected_cell_check(column: str, label: str, target: float, strategies=None) -> Check:
    """The mean ``column`` (a test figure) over seeds of the cell chosen by validation
    (:func:`tlbench.selection.select_cell`) reaches ``target``."""
    return _selected_check("cell", column, label, target, strategies)


def every_run_check(target: float, strategies: Sequence[str]) -> Check:
    """Every finished run of the given strategies reaches ``target`` test accuracy."""

    def measure(df, extra):
        runs = ok_runs(df)
        runs = runs[runs["strategy_name"].isin(strategies)]
        failed = df[(df["status"] != "ok") & df["strategy_name"].isin(strategies)]
        if runs.empty:
            return "no runs", False
        if runs["test_accuracy"].isna().all():
            return "test split sealed (pilot study): no test accuracy", False
        worst = runs.loc[runs["test_accuracy"].idxmin()]
        present = sorted(set(runs["strategy_name"]))
        text = (
            f"lowest {float(worst['test_accuracy']):.4f} ({worst['strategy']}, seed {worst['seed']}); "
            f"strategies run: {', '.join(present)}"
        )
        missing = [s for s in strategies if s not in present]
        if missing:
            text += f"; not run: {', '.join(missing)}"
        if len(failed):
            text += f"; {len(failed)} failed runs"
        return text, float(worst["test_accuracy"]) >= target and not missing and not len(failed)

    return Check(
        "every run of every training strategy: test accuracy",
        f">= {target}",
        measure,
        "none: every run is checked, none chosen (the lowest is named)",
    )


def seeds_check(strategies: Sequence[str], minimum: int = 3) -> Check:
    """Each of ``strategies`` has at least ``minimum`` seeds in every cell."""

    def measure(df, extra):
        runs = ok_runs(df)
        runs = runs[runs["strategy_name"].isin(strategies)]
        counts = runs.groupby(CELL, sort=False)["seed"].nunique()
        present = set(runs["strategy_name"])
        missing = [s for s in strategies if s not in present]
        text = f"{len(counts)} cells, seeds per cell {int(counts.min()) if len(counts) else 0}"
        if missing:
            text += f"; not run: {', '.join(missing)}"
        return text, not missing and len(counts) > 0 and int(counts.min()) >= minimum

    return Check(f"{', '.join(strategies)} compared", f">= {minimum} seeds each", measure)


def wall_time_check(limit_minutes: float) -> Check:
    def measure(df, extra):
        seconds = extra["wall_time"]["seconds"]
        if seconds is None:
            return "not recorded", False
        return format_seconds(seconds), seconds <= limit_minutes * 60

    return Check("study wall time on 2 CPU cores", f"<= {limit_minutes:g} min", measure)


def present_check(what: str, predicate: Callable[[pd.DataFrame], bool]) -> Check:
    def measure(df, extra):
        ok = bool(predicate(ok_runs(df)))
        return ("reported below" if ok else "missing"), ok

    return Check(what, "reported", measure)


def _gap_sentence(df: pd.DataFrame, seed_table: pd.DataFrame) -> str:
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


def _seed000_findings(df: pd.DataFrame, extra: Mapping[str, Any]) -> list[str]:
    table = seed_reference.table("000", "overall")
    out = [_gap_sentence(df, table)]
    runs = ok_runs(df)
    if not (
        runs["strategy_name"].isin(PRETRAINED_STRATEGIES).any()
        and (runs["strategy_name"] == "scratch").any()
    ):
        return out
    chosen_p = selection.select_cell(df, strategies=PRETRAINED_STRATEGIES)
    chosen_s = selection.select_cell(df, strategies=["scratch"])
    best_p, p = chosen_p.cell, _chosen_value(df, chosen_p, "test_accuracy")
    best_s, s = chosen_s.cell, _chosen_value(df, chosen_s, "test_accuracy")
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
        f"({_cell_name(best_p)}, {chosen_p.value:.4f}) reaches {p:.4f} test accuracy and "
        f"the cell from random init chosen the same way ({_cell_name(best_s)}, "
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


def _seed002_findings(df: pd.DataFrame, extra: Mapping[str, Any]) -> list[str]:
    runs = ok_runs(df)
    out = []
    for backbone, group in runs[runs["weights"] != "none"].groupby("backbone", sort=False):
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


def _seed001_findings(df: pd.DataFrame, extra: Mapping[str, Any]) -> list[str]:
    runs = ok_runs(df)
    gains = seed_reference.table("001", "fine_tuning_vs_transfer").set_index("Quantity")
    gain = float(gains.loc["validation accuracy increase", "Value"])
    out = []
    for aug, group in runs.groupby("augmentation", sort=False):
        frozen = group[group["strategy_name"] == "feature_extraction"]["test_accuracy"]
        phases = group[group["strategy_name"] == "two_phase"]
        if frozen.empty or phases.empty:
            continue
        cells = "; ".join(
            f"{strategy} {mean_sd(cell['test_accuracy'])} "
            f"({100 * (cell['test_accuracy'].mean() - frozen.mean()):+.2f} points)"
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


def _seed003_findings(df: pd.DataFrame, extra: Mapping[str, Any]) -> list[str]:
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


def _seed004_findings(df: pd.DataFrame, extra: Mapping[str, Any]) -> list[str]:
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


SEED_PAGES.add(
    "000",
    SeedPage(
        checks=[
            selected_cell_check("test_accuracy", "test accuracy", 0.98),
            every_run_check(0.80, TRAINING_STRATEGIES),
            wall_time_check(90),
        ],
        findings=_seed000_findings,
    ),
)
SEED_PAGES.add(
    "001",
    SeedPage(
        checks=[selected_cell_check("test_accuracy", "test accuracy", 0.90, PRETRAINED_STRATEGIES)],
        findings=_seed001_findings,
    ),
)
SEED_PAGES.add(
    "002",
    SeedPage(
        checks=[
            selected_cell_check("test_roc_auc", "test ROC AUC", 0.95),
            seeds_check(["fine_tune", "feature_extraction", "freeze_bottom", "discriminative_lr"]),
        ],
        findings=_seed002_findings,
    ),
)
SEED_PAGES.add(
    "003",
    SeedPage(
        checks=[
            present_check(
                "seed 003's CNN with and without its augmentation",
                lambda runs: {"none", "seed003"} <= set(runs["augmentation_name"]),
            )
        ],
        findings=_seed003_findings,
    ),
)
SEED_PAGES.add(
    "004",
    SeedPage(
        checks=[
            present_check(
                "autoencoder pretraining against scratch: epochs to reach scratch's best",
                lambda runs: {"autoencoder", "scratch"} <= set(runs["strategy_name"]),
            )
        ],
        findings=_seed004_findings,
        convergence=("autoencoder", "scratch"),
    ),
)


# --------------------------------------------------------------------------- the page


Block = tuple[str, Any]  # ("h2" | "h3" | "p", text), ("ul", [texts]), ("table", DataFrame)


def study_header(
    df: pd.DataFrame,
    study: Mapping[str, Any],
    wall: Mapping[str, Any],
    looks: pd.DataFrame | None,
) -> tuple[list[Block], dict[str, int] | None]:
    """The paragraphs that open a measured study's section: config, runs, wall time on
    the CPU that ran it, code version and library versions; the pilot notice; the looks
    at each dataset's test split (the ledger, :func:`tlbench.ledger.looks`). Returns the
    blocks and the looks per dataset (None without a ledger)."""
    from tlbench.tables import is_pilot

    commits = sorted(set(df["env_git_commit"].dropna().astype(str)))
    dirty = bool(df["env_git_dirty"].fillna(False).astype(bool).any())
    blocks: list[Block] = [
        (
            "p",
            f"Config: {study['config']} (results in {study['results']}). "
            f"Runs: {len(df)} ({int((df['status'] == 'ok').sum())} finished). "
            f"Wall time on {_cores(df)}: {format_seconds(wall['seconds'])} "
            f"(first run start {wall['start']} to last run end {wall['end']}; the runs "
            f"themselves {format_seconds(wall['runs_seconds'])}). "
            f"Code: {', '.join(commits) or 'unknown'}"
            f"{' (with uncommitted changes)' if dirty else ''}; {_versions(df)}.",
        ),
    ]
    if is_pilot(df):
        blocks.append(
            (
                "p",
                "**Pilot study: the test split is sealed.** Every run trained and was "
                "evaluated on the train and validation splits only; the figures below are "
                "validation figures, and no check on test is measured.",
            )
        )
    evaluations = None
    if looks is not None:
        from tlbench.ledger import looks_sentence

        datasets = [str(d) for d in dict.fromkeys(df["dataset"])]
        evaluations = {str(r["dataset"]): int(r["distinct run specs"]) for _, r in looks.iterrows()}
        blocks.append(
            (
                "p",
                "Looks at the test split (the study's ledger, "
                f"{study['results']}/test_evaluations.jsonl: distinct run specs ever "
                f"evaluated on each dataset's test split): {looks_sentence(looks, datasets)}.",
            )
        )
    return blocks, evaluations


def seed_section(
    df: pd.DataFrame,
    study: Mapping[str, Any],
    history: Callable[[str], pd.DataFrame] = read_history,
    looks: pd.DataFrame | None = None,
) -> tuple[list[Block], dict[str, Any]]:
    """One seed study's section (blocks, see :func:`to_markdown`) and its summary.

    ``study``: ``{"reference": "002", "config": path, "substitutions": [...],
    "results": folder}`` (the config's ``seed_study`` block plus where it ran).
    ``looks``: the study's test-split ledger counts (:func:`tlbench.ledger.looks`),
    shown per dataset and recorded as the summary's ``test_evaluations``.
    """
    seed_id = seed_reference.normalize_id(study["reference"])
    ref = seed_reference.load(seed_id)
    page = SEED_PAGES.get(seed_id)
    extra: dict[str, Any] = {"wall_time": wall_time(df)}
    if page.convergence is not None:
        extra["convergence"] = epochs_to_reach(df, *page.convergence, history=history)
    checks = []
    for check in page.checks:
        measured, met, *chosen = check.measure(df, extra)
        record = {"check": check.what, "target": check.target, "measured": measured,
                  "met": "yes" if met else "NO"}  # fmt: skip
        if check.selected_by is not None:
            record["selected_by"] = check.selected_by
        if chosen and chosen[0] is not None:
            record["selected"] = chosen[0].as_dict()
        checks.append(record)
    blocks: list[Block] = [("h2", f"Seed {seed_id}: {ref['title']}")]
    header, evaluations = study_header(df, study, extra["wall_time"], looks)
    blocks += header
    if study.get("substitutions"):
        blocks += [("p", "Substitutions forced by this machine:"), ("ul", study["substitutions"])]
    shown = ["check", "target", "measured", "met", "selected_by"]
    table = pd.DataFrame(checks).reindex(columns=shown)
    blocks += [("h3", "Acceptance"), ("table", table.dropna(axis=1, how="all"))]
    blocks.append(("h3", "The seed's own numbers"))
    tables = [
        t for t in seed_reference.tables(seed_id) if t.attrs["kind"] in ("results", "from_text")
    ]
    overall = [t for t in tables if t.attrs["id"] == "overall"]
    for table in overall or tables:  # an overall table repeats the others
        blocks += [("p", f"{table.attrs['title']} ({table.attrs['id']})"), ("table", table)]
    blocks += [("h3", "Ours (mean ± sd over seeds)"), ("table", cell_table(df))]
    conv = extra.get("convergence")
    if conv is not None and not conv.empty:
        blocks += [("h3", "Epochs to converge"), ("table", conv)]
    failed = df[df["status"] != "ok"]
    if len(failed):
        blocks += [("h3", "Failed runs"), ("table", failed[[*CELL, "seed", "reason"]])]
    findings = page.findings(df, extra)
    if findings:
        blocks += [("h3", "Against the seed's conclusions"), ("ul", findings)]
    summary = {
        "seed": seed_id,
        "title": ref["title"],
        "config": study["config"],
        "runs": len(df),
        "wall_seconds": extra["wall_time"]["seconds"],
        "checks": checks,
    }
    if evaluations is not None:
        summary["test_evaluations"] = evaluations
    return blocks, summary


def to_markdown(blocks: Sequence[Block]) -> str:
    """Markdown of a section's blocks."""
    out = []
    for kind, content in blocks:
        if kind == "h2":
            out.append(f"## {content}\n")
        elif kind == "h3":
            out.append(f"### {content}\n")
        elif kind == "p":
            out.append(f"{content}\n")
        elif kind == "ul":
            out.append("".join(f"- {item}\n" for item in content))
        elif kind == "table":
            out.append(render(content, "md"))
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    return "\n".join(out)


def to_html(blocks: Sequence[Block]) -> str:
    """A standalone HTML page of a section's blocks (for the Snakemake report)."""
    import html

    out = ['<html><head><meta charset="utf-8"></head><body>']
    for kind, content in blocks:
        if kind in ("h2", "h3", "p"):
            tag = {"p": "p"}.get(kind, kind)
            out.append(f"<{tag}>{html.escape(str(content))}</{tag}>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in content) + "</ul>")
        elif kind == "table":
            out.append(render(content, "html"))
        else:
            raise ValueError(f"unknown block kind {kind!r}")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _cores(df: pd.DataFrame) -> str:
    """``2 CPU cores (AMD EPYC, avx2)``: wall times differ several-fold between CPUs."""
    cores = sorted({int(c) for c in df["env_cpu_count"].dropna()})
    gpus = sorted({str(g) for g in df["env_gpu"].dropna() if str(g)})
    text = f"{'/'.join(map(str, cores)) or '?'} CPU cores"
    columns = [c for c in ("env_cpu", "env_cpu_simd") if c in df.columns]
    cpus = {
        ", ".join(str(v) for v in row if pd.notna(v)) for row in df[columns].itertuples(index=False)
    }
    cpus = sorted(cpus - {""})
    if cpus:
        text += f" ({'; '.join(cpus)})"
    return text + (f" and {', '.join(gpus)}" if gpus else "")


def _versions(df: pd.DataFrame) -> str:
    first = df.iloc[0]
    return (
        f"Keras {first['env_keras']} on {first['env_backend']}, TensorFlow "
        f"{first['env_tensorflow']}, Python {first['env_python']}"
    )


def results_page(summaries: Sequence[Mapping[str, Any]], sections: Sequence[str]) -> str:
    """``docs/results.md``: an overview of every seed (measured or not yet) and of the other
    measured studies (``results_section``: :mod:`tlbench.study_results`), then the
    sections: the seeds' first, in seed order, then the others in the order given."""
    order = sorted(range(len(summaries)), key=lambda i: "seed" not in summaries[i])
    summaries = [summaries[i] for i in order]
    sections = [sections[i] for i in order]
    others = [s for s in summaries if "seed" not in s]
    summaries = [s for s in summaries if "seed" in s]
    measured = {s["seed"]: s for s in summaries}
    rows = []
    for seed in seed_reference.SEED_IDS:
        s = measured.get(seed)
        if s is None:
            title = seed_reference.load(seed)["title"]
            rows.append({"seed": seed, "study": title, "runs": None,
                         "wall time": "not measured yet", "checks met": "",
                         "test looks": ""})  # fmt: skip
            continue
        met = sum(c["met"] == "yes" for c in s["checks"])
        looks = s.get("test_evaluations")
        rows.append(
            {
                "seed": seed,
                "study": s["title"],
                "runs": s["runs"],
                "wall time": format_seconds(s["wall_seconds"]),
                "checks met": f"{met} of {len(s['checks'])}",
                "test looks": "not recorded"
                if looks is None
                else ", ".join(f"{d}: {n}" for d, n in looks.items()) or "0",
            }
        )
    # sections written before the ledger existed have no test_evaluations: no column then
    recorded = any("test_evaluations" in s for s in summaries)
    overview = pd.DataFrame(rows)
    if not recorded:
        overview = overview.drop(columns="test looks")
    head = [
        "# Results: the seed studies reproduced, and the other measured studies",
        "",
        "Generated by the workflow's `results_page` rule from the measured studies' outputs "
        "(`configs/measured/`); do not edit by hand. Each section is written by the rule "
        "`seed_results` of its study (`docs/results/seedNNN.md`); the seed reports' own "
        "numbers come from `src/tlbench/seed_reference/`. Wall times are on this project's "
        "2-CPU machines."
        + (
            " Checks that name a run or a cell chose it by validation (`selected_by`); its "
            "test figure is reported. *test looks*: per dataset, the distinct run specs ever "
            "evaluated on its test split (the study's ledger, `test_evaluations.jsonl`)."
            if recorded
            else ""
        ),
        "",
        render(overview, "md"),
    ]
    if others:
        rows = [
            {
                "study": f"[{o['title']}](results/{Path(o['page']).name})",
                "config": o["config"],
                "runs": o["runs"],
                "wall time": format_seconds(o["wall_seconds"]),
            }
            for o in others
        ]
        head += [
            "",
            "Other measured studies (each section written by the rule `study_results` of its "
            "study, `docs/results/<name>.md`):",
            "",
            render(pd.DataFrame(rows), "md"),
        ]
    return "\n".join(head) + "\n" + "\n".join(sections)


def page_from_files(summary_files: Sequence[str | Path]) -> str:
    """``docs/results.md`` from section summaries (``seedNNN.json`` and the other studies'
    ``<name>.json``, each beside its ``.md``)."""
    import json

    summaries, sections = [], []
    for path in sorted(map(Path, summary_files)):
        summaries.append(json.loads(path.read_text()))
        sections.append(path.with_suffix(".md").read_text())
    return results_page(summaries, sections)
