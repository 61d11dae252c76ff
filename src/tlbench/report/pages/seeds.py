"""Seed studies beside their seed reports: their sections of ``docs/results.md``.

A study config with a ``seed_study`` block (``configs/measured/seed00N_*.yaml``)
names the seed report it reproduces (:mod:`tlbench.seed_reference`) and the
substitutions this machine forced. From the study's runs (``tables/study.csv``,
each run's ``history.csv``) and its verdict (``tables/verdict.csv``) the rule
``seed_results`` writes one section (:func:`seed_section`):

* the header of every measured study's section (:func:`tlbench.results.study_header`);
* the acceptance checks of the seed (:data:`SEED_PAGES`), each with its
  target and what was measured;
* the verdict (:func:`tlbench.results.verdict_blocks`): the cell chosen by
  validation, its test accuracy with its interval, the cells tied with it;
* the seed's own result tables, as printed in the report;
* ours: one row per cell, mean ± sd over seeds (:func:`tlbench.results.cell_table`);
* BatchNorm frozen against trained where the study runs both policies for the
  same cells (:func:`tlbench.results.batchnorm_blocks`);
* epochs to converge where the study compares a pretraining strategy with
  ``scratch`` (seed 004): epochs until the scratch run's best validation
  accuracy is reached, per seed;
* findings: where the evidence agrees or disagrees with the seed's conclusions,
  as sentences filled from the measured numbers.

Nothing on the page is typed by hand: numbers come from the runs, the seed's
numbers from its transcription.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlbench.analysis import selection
from tlbench.analysis.tables import mean_sd
from tlbench.core.registry import Registry
from tlbench.report import seed_reference
from tlbench.report.pages.results import (
    CELL,
    Block,
    batchnorm_blocks,
    cell_table,
    format_seconds,
    ok_runs,
    study_header,
    verdict_blocks,
    wall_time,
)

#: strategies that train the network by gradient steps (``direct`` trains nothing;
#: ``linear_probe`` fits a logistic regression on frozen features, in seconds): the
#: strategies the seed studies' "every training strategy" checks ask for
TRAINING_STRATEGIES = tuple(sorted(seed_reference.STRATEGY_NAMES - {"direct", "linear_probe"}))
PRETRAINED_STRATEGIES = tuple(s for s in TRAINING_STRATEGIES if s not in ("scratch", "autoencoder"))


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


def _pair_text(extra: Mapping[str, Any], a: str, b: str) -> str:
    """`` (difference [low, high]: verdict)`` of cell a against b from the page's
    pairwise table (:func:`tlbench.verdict.pairwise_table`), in accuracy points; empty
    without the table or the pair."""
    table = extra.get("pairwise")
    if table is None or not len(table):
        return ""
    row = table[(table["a"] == a) & (table["b"] == b)]
    if row.empty:
        return ""
    r = row.iloc[0]
    return (
        f" [95 % interval of the difference {100 * r['diff_low']:+.2f} to "
        f"{100 * r['diff_high']:+.2f} points: {r['verdict']}]"
    )


def _seed001_findings(df: pd.DataFrame, extra: Mapping[str, Any]) -> list[str]:
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
            + _pair_text(
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
            wall_time_check(120),  # issue 17: seed 000 within 2 hours on 2 cores
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


def seed_section(
    df: pd.DataFrame,
    study: Mapping[str, Any],
    history: Callable[[str], pd.DataFrame] = read_history,
    looks: pd.DataFrame | None = None,
    verdict: pd.DataFrame | None = None,
    batchnorm: pd.DataFrame | None = None,
    pairwise: pd.DataFrame | None = None,
) -> tuple[list[Block], dict[str, Any]]:
    """One seed study's section (blocks, see :func:`to_markdown`) and its summary.

    ``study``: ``{"reference": "002", "config": path, "substitutions": [...],
    "results": folder}`` (the config's ``seed_study`` block plus where it ran).
    ``looks``: the study's test-split ledger counts (:func:`tlbench.ledger.looks`),
    shown per dataset and recorded as the summary's ``test_evaluations``.
    ``verdict``: the study's verdict table (``tables/verdict.csv``,
    :func:`tlbench.verdict.verdict_table`), shown after the checks; ``batchnorm``:
    BatchNorm frozen against trained (:func:`tlbench.verdict.batchnorm_table`),
    shown after our cells; ``pairwise``: every pair of cells with the interval of
    their difference (:func:`tlbench.verdict.pairwise_table`), for the findings that
    compare two cells (``extra["pairwise"]``).
    """
    seed_id = seed_reference.normalize_id(study["reference"])
    ref = seed_reference.load(seed_id)
    page = SEED_PAGES.get(seed_id)
    extra: dict[str, Any] = {"wall_time": wall_time(df), "pairwise": pairwise}
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
    shown = ["check", "target", "measured", "met", "selected_by"]
    table = pd.DataFrame(checks).reindex(columns=shown)
    blocks += [("h3", "Acceptance"), ("table", table.dropna(axis=1, how="all"))]
    if verdict is not None and len(verdict):
        blocks += verdict_blocks(verdict)
    blocks.append(("h3", "The seed's own numbers"))
    tables = [
        t for t in seed_reference.tables(seed_id) if t.attrs["kind"] in ("results", "from_text")
    ]
    overall = [t for t in tables if t.attrs["id"] == "overall"]
    for table in overall or tables:  # an overall table repeats the others
        blocks += [("p", f"{table.attrs['title']} ({table.attrs['id']})"), ("table", table)]
    blocks += [("h3", "Ours (mean ± sd over seeds)"), ("table", cell_table(df))]
    blocks += batchnorm_blocks(batchnorm)
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
